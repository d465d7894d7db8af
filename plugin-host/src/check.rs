//! Inspecting a component without running it: which hook interfaces it
//! exports, which host capabilities and WASI interfaces it imports, and what
//! is wrong with it. Used by loading (a plugin with problems does not load)
//! and by `wasmq plugin check FILE` ([`crate::check`]).

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::types::{Capabilities, HookSet};

/// The newest contract version this host speaks (what plugins are built against today).
pub const CONTRACT_VERSION: &str = Contract::V0_2.version();
const PACKAGE: &str = "wasmq:plugin/";

/// A version of the plugin contract (`wasmq:plugin@VERSION`) that this host loads.
/// A component is built against one: all its `wasmq:plugin` imports and exports
/// carry the same version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Contract {
    /// `0.1.0`, frozen in `wit/deps/plugin-0.1.0/`: its client has no listener
    /// kind, certificate or CONNECT user properties.
    V0_1,
    /// `0.2.0`, `wit/plugin.wit`.
    #[default]
    V0_2,
}

impl Contract {
    /// Every version the host loads, newest first.
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The package version, `0.2.0`.
    pub const fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    fn from_version(version: &str) -> Option<Contract> {
        Contract::ALL.into_iter().find(|c| c.version() == version)
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wasmq:plugin@{}", self.version())
    }
}

/// The versions the host loads, for messages: `0.2.0 or 0.1.0`.
fn versions() -> String {
    Contract::ALL.map(Contract::version).join(" or ")
}

/// What a component exports and imports, or what is wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The contract version it was built against (`None` when that is not known:
    /// it did not compile, or it names no version this host loads).
    pub contract: Option<Contract>,
    /// The hook interfaces it exports.
    pub hooks: HookSet,
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
        if let Some(contract) = self.contract {
            writeln!(f, "contract: {contract}")?;
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
    /// The version of every `wasmq:plugin` item it names (when it names one, and
    /// only one).
    pub contract: Option<Contract>,
    pub hooks: HookSet,
    /// How the transform hook is exported: `transform` (one message a call) and/or
    /// `transform-batch` (0.2.0: a batch a call). `hooks.transform` is either.
    pub transform_exports: TransformExports,
    pub capabilities: Capabilities,
    pub wasi_imports: Vec<String>,
    pub problems: Vec<String>,
}

/// Which transform interfaces a component exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TransformExports {
    /// `transform`: `on-publish`, one message a call.
    pub per_message: bool,
    /// `transform-batch` (0.2.0): `on-publish-batch`.
    pub batch: bool,
}

/// Splits `wasmq:plugin/NAME@VERSION` into `(NAME, VERSION)`.
fn wasmq_item(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PACKAGE)?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

pub(crate) fn inspect(engine: &Engine, component: &Component) -> Inspection {
    let ty = component.component_type();
    let mut hooks = HookSet::default();
    let mut transform_exports = TransformExports::default();
    let mut capabilities = Capabilities::default();
    let mut wasi_imports = Vec::new();
    let mut problems = Vec::new();
    // The version of the first `wasmq:plugin` item; every other one must agree: the
    // host calls a component through the bindings of one version.
    let mut contract: Option<Contract> = None;
    let mut version_of = |what: &str, name: &str, version: &str, problems: &mut Vec<String>| {
        let Some(this) = Contract::from_version(version) else {
            problems.push(format!(
                "{what} `{name}`, but this host speaks wasmq:plugin@{}",
                versions()
            ));
            return false;
        };
        match contract {
            None => contract = Some(this),
            Some(first) if first != this => {
                problems.push(format!(
                    "{what} `{name}`, but also items of {first}: a plugin is built against one contract version"
                ));
                return false;
            }
            Some(_) => {}
        }
        true
    };

    for (name, _) in ty.exports(engine) {
        let Some((item, version)) = wasmq_item(name) else {
            continue;
        };
        if !version_of("exports", name, version, &mut problems) {
            continue;
        }
        match item {
            "authn" => hooks.authn = true,
            "authz" => hooks.authz = true,
            // Only in 0.2.0: a `deliver@0.1.0` is no interface of 0.1.0.
            "deliver" if version != Contract::V0_1.version() => hooks.deliver = true,
            "transform" => {
                hooks.transform = true;
                transform_exports.per_message = true;
            }
            "auth" if version != Contract::V0_1.version() => hooks.auth = true,
            // Only in 0.2.0, like `deliver`; the same hook as `transform` (the
            // operator enables both with `transform`).
            "transform-batch" if version != Contract::V0_1.version() => {
                hooks.transform = true;
                transform_exports.batch = true;
            }
            _ => problems.push(format!("exports `{name}`, which is not a hook")),
        }
    }
    if hooks.is_empty() && problems.is_empty() {
        problems.push(format!(
            "exports no hook: a plugin exports at least one of {PACKAGE}authn, authz, deliver, transform or auth @{}",
            versions()
        ));
    }

    for (name, _) in ty.imports(engine) {
        if let Some((item, version)) = wasmq_item(name) {
            if !version_of("imports", name, version, &mut problems) {
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
        contract,
        hooks,
        transform_exports,
        capabilities,
        wasi_imports,
        problems,
    }
}
