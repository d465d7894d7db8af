//! Embeds the built-in plugins: `wasmq-plugin-artifacts` (a build-dependency) has compiled
//! `plugins/acl-sql` for wasm32-wasip2; src/plugins/builtin.rs includes the bytes.

fn main() {
    let acl_sql = wasmq_plugin_artifacts::ACL_SQL;
    println!("cargo:rerun-if-changed={acl_sql}");
    println!("cargo:rustc-env=WASMQ_BUILTIN_ACL_SQL={acl_sql}");
}
