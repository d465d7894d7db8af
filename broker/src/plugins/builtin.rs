//! Plugins built into the `wasmq` binary, so a fresh install has its default policy
//! without a file to copy: `acl-sql`, the EMQX-style authentication and ACL plugin
//! (plugins/acl-sql, compiled for wasm32-wasip2 by build.rs). `[plugins] builtin` says
//! which are loaded; a file of the same name in the plugin folder takes precedence.

/// A plugin compiled into the binary, with its default `NAME.toml`.
#[derive(Debug)]
pub struct Builtin {
    /// The plugin's name, as `NAME` of `NAME.wasm`.
    pub name: &'static str,
    /// The component.
    pub wasm: &'static [u8],
    /// Its settings when the folder holds no `NAME.toml`.
    pub settings: &'static str,
}

/// Every built-in plugin.
pub const ALL: &[Builtin] = &[Builtin {
    name: "acl-sql",
    wasm: include_bytes!(env!("WASMQ_BUILTIN_ACL_SQL")),
    settings: include_str!("../../../plugins/acl-sql/acl-sql.toml"),
}];

/// The built-in plugin called `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    ALL.iter().find(|b| b.name == name)
}

/// The built-in plugins `[plugins] builtin` names, or which name is none of them.
pub fn resolve(names: &[String]) -> anyhow::Result<Vec<&'static Builtin>> {
    names
        .iter()
        .map(|name| {
            find(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "plugins.builtin: no built-in plugin {name:?} (there are: {})",
                    self::names().join(", ")
                )
            })
        })
        .collect()
}

/// The built-in plugins' names.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|b| b.name).collect()
}
