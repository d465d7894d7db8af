//! Inspecting a component without running it: which hook interfaces it
//! exports, which host capabilities and WASI interfaces it imports, and what
//! is wrong with it. Used by loading (a plugin with problems does not load)
//! and by `wasmq plugin check FILE` ([`crate::check`]).

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::types::{Capabilities, Hooks};

/// The contract version this host speaks.
pub const CONTRACT_VERSION: &str = "0.1.0";
const PACKAGE: &str = "wasmq:plugin/";

/// What a component exports and imports, or what is wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The hook interfaces it exports.
    pub hooks: Hooks,
    /// The Wasmq capabilities it imports.
    pub capabilities: Capabilities,
    /// The WASI interfaces it imports (all provided, with nothing granted:
    /// no files, no network, no environment).
    pub wasi_imports: Vec<String>,
    /// Why it cannot be loaded; empty when it can.
    pub problems: Vec<String>,
    /// Whether the file compiled as a component. When it did not (not WebAssembly, a
    /// core module, a corrupt file), nothing is known of its hooks and imports: only
    /// `problems` says anything.
    pub compiled: bool,
}

impl Report {
    /// Whether the component can be loaded as a plugin.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A file that did not compile: `problem` is all there is to say.
    pub(crate) fn broken(problem: String) -> Report {
        Report {
            problems: vec![problem],
            compiled: false,
            ..Report::default()
        }
    }
}

/// A component that compiled: its hooks, capabilities and WASI imports, then its problems
/// (which refer to them) and `ok` or `not loadable`. A file that did not compile: its
/// problem alone (an empty inventory would read as a component that exports nothing).
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.compiled {
            for p in &self.problems {
                writeln!(f, "problem: {p}")?;
            }
            return write!(f, "not loadable");
        }
        writeln!(f, "hooks: {}", self.hooks)?;
        writeln!(f, "capabilities: {}", self.capabilities)?;
        writeln!(
            f,
            "wasi: {}",
            if self.wasi_imports.is_empty() {
                "none".into()
            } else {
                self.wasi_imports.join(", ")
            }
        )?;
        if self.problems.is_empty() {
            write!(f, "ok")
        } else {
            for p in &self.problems {
                writeln!(f, "problem: {p}")?;
            }
            write!(f, "not loadable")
        }
    }
}

pub(crate) struct Inspection {
    pub hooks: Hooks,
    pub capabilities: Capabilities,
    pub wasi_imports: Vec<String>,
    pub problems: Vec<String>,
}

/// Splits `wasmq:plugin/NAME@VERSION` into `(NAME, VERSION)`.
fn wasmq_item(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PACKAGE)?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

pub(crate) fn inspect(engine: &Engine, component: &Component) -> Inspection {
    let ty = component.component_type();
    let mut hooks = Hooks::default();
    let mut capabilities = Capabilities::default();
    let mut wasi_imports = Vec::new();
    let mut problems = Vec::new();

    for (name, _) in ty.exports(engine) {
        let Some((item, version)) = wasmq_item(name) else {
            continue;
        };
        if version != CONTRACT_VERSION {
            problems.push(format!(
                "exports `{name}`, but this host speaks wasmq:plugin@{CONTRACT_VERSION}"
            ));
            continue;
        }
        match item {
            "authn" => hooks.authn = true,
            "authz" => hooks.authz = true,
            "transform" => hooks.transform = true,
            _ => problems.push(format!("exports `{name}`, which is not a hook")),
        }
    }
    if hooks.is_empty() && problems.is_empty() {
        problems.push(format!(
            "exports no hook: a plugin exports at least one of {PACKAGE}authn, authz or transform @{CONTRACT_VERSION}"
        ));
    }

    for (name, _) in ty.imports(engine) {
        if let Some((item, version)) = wasmq_item(name) {
            if version != CONTRACT_VERSION {
                problems.push(format!(
                    "imports `{name}`, but this host speaks wasmq:plugin@{CONTRACT_VERSION}"
                ));
                continue;
            }
            match item {
                "types" => {}
                "log" => capabilities.log = true,
                "config" => capabilities.config = true,
                "sql" => capabilities.sql = true,
                _ => problems.push(format!(
                    "imports `{name}`, which this host does not provide"
                )),
            }
        } else if name.starts_with("wasi:") {
            // Provided by wasmtime-wasi with nothing granted; an interface it
            // does not know shows up when linking.
            wasi_imports.push(name.to_string());
        } else {
            problems.push(format!(
                "imports `{name}`, which this host does not provide"
            ));
        }
    }

    Inspection {
        hooks,
        capabilities,
        wasi_imports,
        problems,
    }
}
