//! The errors of the host: building it, loading a plugin, and calling one.

use std::path::PathBuf;

/// The host could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The wasmtime engine or linker refused the configuration.
    #[error("plugin engine: {0}")]
    Engine(String),
    /// The compiled-component cache directory cannot be used.
    #[error("plugin cache {0}: {1}")]
    Cache(PathBuf, std::io::Error),
}

/// A plugin could not be loaded; the previous version (if any) keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// Not a valid WebAssembly component, or it failed to compile.
    #[error("not a valid component: {0}")]
    Compile(String),
    /// A valid component that is not a Wasmq plugin (missing exports,
    /// unknown imports, wrong contract version).
    #[error("not a usable plugin: {0}")]
    Invalid(String),
    /// The plugin imports a capability its configuration does not grant.
    #[error("imports the `{0}` capability, which is not granted to it")]
    NotGranted(&'static str),
    /// The plugin's imports cannot be satisfied by this host.
    #[error("cannot link: {0}")]
    Link(String),
    /// The plugin failed while starting (trap, timeout or memory limit).
    #[error("failed at start: {0}")]
    Start(#[from] Fault),
}

impl LoadError {
    /// Wasmtime refused to compile the bytes: its error and causes on one line (they
    /// are shown by `wasmq plugin check` and logged; wasmparser's are several lines, and
    /// a `{:?}` would add a backtrace when `RUST_BACKTRACE` is set).
    pub(crate) fn compile(error: &wasmtime::Error) -> LoadError {
        let text = format!("{error:#}");
        LoadError::Compile(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// A hook call that did not produce an answer. Never a panic: the chain turns
/// it into deny (authentication, authorization) or keep/drop (transform).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The call ran past its deadline and was interrupted.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The plugin tried to grow its memory past its cap.
    #[error("memory limit of {0} bytes exceeded")]
    MemoryLimit(usize),
    /// The plugin trapped (a panic, an `unreachable`, an out-of-bounds access).
    #[error("trapped: {0}")]
    Trap(String),
    /// No instance could be created (the host is at its instance limit, or
    /// instantiation failed for a reason that is not the plugin's fault).
    #[error("no instance available: {0}")]
    Unavailable(String),
    /// The plugin failed too many times in a row and is disabled until its retry.
    #[error("disabled after repeated faults")]
    Disabled,
}

impl Fault {
    /// Whether the plugin itself is to blame (counts towards disabling it).
    pub fn is_plugins_fault(&self) -> bool {
        matches!(
            self,
            Fault::Timeout(_) | Fault::MemoryLimit(_) | Fault::Trap(_)
        )
    }
}
