//! `wasmq plugin new NAME --hook HOOK --lang LANG`: writes a plugin project from the
//! templates in `plugins/templates/` (embedded here), which builds at once with
//! `wasmq plugin build` and passes its own `cases.toml` with `wasmq plugin test`.
//!
//! A project carries what it builds against, copied from this binary: the contract
//! (`wit/plugin.wit`), and for Rust the SDK (`plugin-sdk/` as `wasmq-plugin-sdk/`, whose
//! `../wit/plugin.wit` is the project's copy) and the repository's
//! `rust-toolchain.toml`. So it builds outside a Wasmq checkout, against the contract
//! of the broker that made it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The hooks a template exists for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `wasmq:plugin/authn`, once per CONNECT.
    Authn,
    /// `wasmq:plugin/authz`, per PUBLISH and SUBSCRIBE.
    Authz,
    /// `wasmq:plugin/transform`, per PUBLISH.
    Transform,
    /// `wasmq:plugin/auth`, MQTT 5 enhanced authentication: per step of the AUTH
    /// exchange after a CONNECT that names the plugin's method.
    Auth,
}

impl Hook {
    /// Every hook, in the order of the contract.
    pub const ALL: [Hook; 4] = [Hook::Authn, Hook::Authz, Hook::Transform, Hook::Auth];

    /// The interface's name in the contract.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Authn => "authn",
            Hook::Authz => "authz",
            Hook::Transform => "transform",
            Hook::Auth => "auth",
        }
    }

    /// The host capabilities its template calls: the only imports its Python or
    /// JavaScript world may have (componentize-py and -js keep every import).
    fn imports(self) -> &'static [&'static str] {
        match self {
            Hook::Authn => &["config"],
            Hook::Authz => &["log"],
            Hook::Transform => &["config"],
            Hook::Auth => &["config"],
        }
    }

    /// Its template's settings in `NAME.toml`, commented.
    fn settings(self) -> &'static str {
        match self {
            Hook::Authn => "# superuser = \"root\"\n# superuser_password = \"change me\"\n",
            Hook::Authz => "",
            Hook::Transform => "drop_prefix = \"private/\"\n",
            Hook::Auth => "# secret_alice = \"change me\"   # one secret_USER per user\n",
        }
    }

    /// What its Rust template needs besides the SDK, as `Cargo.toml` lines.
    fn rust_dependencies(self) -> &'static str {
        match self {
            Hook::Auth => {
                "# The nonce: getrandom reads wasi:random, which the broker's sandbox provides.\n\
                 getrandom = \"0.3\"\n"
            }
            Hook::Authn | Hook::Authz | Hook::Transform => "",
        }
    }
}

/// The languages a template exists for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// The SDK (`plugin-sdk/`), built by cargo for `wasm32-wasip2`.
    Rust,
    /// componentize-py.
    Python,
    /// componentize-js.
    Js,
}

impl Lang {
    /// Every language.
    pub const ALL: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];

    /// `rust`, `python` or `js`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// Embeds `plugins/templates/PATH`.
macro_rules! template {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../plugins/templates/",
            $path
        ))
    };
}

/// Embeds a file of the repository, from its root.
macro_rules! repo_file {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../", $path))
    };
}

/// The contract, `wasmq:plugin@0.2.0`.
const CONTRACT: &str = repo_file!("wit/plugin.wit");

fn source(lang: Lang, hook: Hook) -> &'static str {
    match (lang, hook) {
        (Lang::Rust, Hook::Authn) => template!("rust/authn.rs"),
        (Lang::Rust, Hook::Authz) => template!("rust/authz.rs"),
        (Lang::Rust, Hook::Transform) => template!("rust/transform.rs"),
        (Lang::Rust, Hook::Auth) => template!("rust/auth.rs"),
        (Lang::Python, Hook::Authn) => template!("python/authn.py"),
        (Lang::Python, Hook::Authz) => template!("python/authz.py"),
        (Lang::Python, Hook::Transform) => template!("python/transform.py"),
        (Lang::Python, Hook::Auth) => template!("python/auth.py"),
        (Lang::Js, Hook::Authn) => template!("js/authn.js"),
        (Lang::Js, Hook::Authz) => template!("js/authz.js"),
        (Lang::Js, Hook::Transform) => template!("js/transform.js"),
        (Lang::Js, Hook::Auth) => template!("js/auth.js"),
    }
}

/// What the README says of the hook's template, before "What is here" (only the
/// auth template has something to say: its method, and where a hash comes from).
fn about(lang: Lang, hook: Hook) -> &'static str {
    match (lang, hook) {
        (Lang::Rust, Hook::Auth) => template!("rust/readme-auth.md"),
        (Lang::Python, Hook::Auth) => template!("python/readme-auth.md"),
        (Lang::Js, Hook::Auth) => template!("js/readme-auth.md"),
        (_, Hook::Authn | Hook::Authz | Hook::Transform) => "",
    }
}

fn cases(hook: Hook) -> &'static str {
    match hook {
        Hook::Authn => template!("cases/authn.toml"),
        Hook::Authz => template!("cases/authz.toml"),
        Hook::Transform => template!("cases/transform.toml"),
        Hook::Auth => template!("cases/auth.toml"),
    }
}

/// WIT keywords: a plugin's name is its world's and its package's name.
const WIT_KEYWORDS: &[&str] = &[
    "as",
    "async",
    "bool",
    "borrow",
    "char",
    "constructor",
    "enum",
    "export",
    "f32",
    "f64",
    "flags",
    "from",
    "func",
    "future",
    "import",
    "include",
    "interface",
    "list",
    "option",
    "own",
    "package",
    "record",
    "resource",
    "result",
    "s16",
    "s32",
    "s64",
    "s8",
    "static",
    "stream",
    "string",
    "tuple",
    "type",
    "u16",
    "u32",
    "u64",
    "u8",
    "use",
    "variant",
    "with",
    "world",
];

/// A plugin name is the file stem in the plugin folder, the crate name, the npm name
/// and the WIT world's name: lowercase words of letters and digits, each starting with
/// a letter, joined by `-` (`readonly-acl`).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let words_ok = !name.is_empty()
        && name.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !words_ok {
        bail!(
            "bad plugin name {name:?}: lowercase words of letters and digits, each starting \
             with a letter, joined by `-` (for example `readonly-acl`); it is the file name \
             in the plugin folder and the name of the crate, package or WIT world"
        );
    }
    if WIT_KEYWORDS.contains(&name) {
        bail!("bad plugin name {name:?}: a WIT keyword (the name is the plugin's WIT world's)");
    }
    Ok(())
}

/// One file of a project: its path in the project and its text.
#[derive(Debug)]
pub struct File {
    /// Relative to the project's folder.
    pub path: PathBuf,
    /// What it holds.
    pub text: String,
}

/// The memory cap of Python and JavaScript plugins: their interpreter starts with tens
/// of MB of linear memory, over the default 16 MiB.
const INTERPRETER_MEMORY_BYTES: u64 = 128 << 20;

/// The files of a new project, rendered (nothing written).
pub fn render(name: &str, hook: Hook, lang: Lang) -> anyhow::Result<Vec<File>> {
    check_name(name)?;
    let crate_name = name.replace('-', "_");
    let imports: String = hook
        .imports()
        .iter()
        .map(|capability| format!("    import wasmq:plugin/{capability}@0.2.0;\n"))
        .collect();
    let limits = |table: &str| match lang {
        Lang::Rust => String::new(),
        Lang::Python | Lang::Js => format!(
            "[{table}limits]\nmemory_bytes_max = {INTERPRETER_MEMORY_BYTES}   \
             # 128 MiB: the interpreter's instances start with tens of MB\n"
        ),
    };
    let fill = |text: &str, limits: &str| {
        text.replace("{{about}}", about(lang, hook))
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{hook}}", hook.name())
            .replace("{{imports}}", &imports)
            .replace("{{settings}}", hook.settings())
            .replace("{{dependencies}}", hook.rust_dependencies())
            .replace("{{limits}}", limits)
    };
    let file = |path: &str, text: &str| File {
        path: PathBuf::from(path),
        text: fill(text, ""),
    };
    let mut files = vec![
        File {
            path: PathBuf::from(format!("{name}.toml")),
            text: fill(template!("plugin.toml"), &limits("")),
        },
        File {
            path: PathBuf::from("cases.toml"),
            text: fill(cases(hook), &limits("plugin.")),
        },
    ];
    match lang {
        Lang::Rust => files.extend([
            file("Cargo.toml", template!("rust/Cargo.toml")),
            file("README.md", template!("rust/README.md")),
            file(".gitignore", template!("rust/gitignore")),
            file("src/lib.rs", source(lang, hook)),
            // Verbatim, not filled in: the SDK and the contract as the binary has them.
            verbatim("rust-toolchain.toml", repo_file!("rust-toolchain.toml")),
            verbatim(
                "wasmq-plugin-sdk/Cargo.toml",
                repo_file!("plugin-sdk/Cargo.toml"),
            ),
            verbatim(
                "wasmq-plugin-sdk/src/lib.rs",
                repo_file!("plugin-sdk/src/lib.rs"),
            ),
            verbatim("wit/plugin.wit", CONTRACT),
        ]),
        Lang::Python => files.extend([
            file("README.md", template!("python/README.md")),
            file(".gitignore", template!("python/gitignore")),
            file("app.py", source(lang, hook)),
            file("wit/world.wit", template!("world.wit")),
            verbatim("wit/deps/plugin.wit", CONTRACT),
            verbatim(
                "requirements.txt",
                repo_file!("plugins/examples/python/requirements.txt"),
            ),
        ]),
        Lang::Js => files.extend([
            file("README.md", template!("js/README.md")),
            file(".gitignore", template!("js/gitignore")),
            file("package.json", template!("js/package.json")),
            file("plugin.js", source(lang, hook)),
            file("wit/world.wit", template!("world.wit")),
            verbatim("wit/deps/plugin.wit", CONTRACT),
        ]),
    }
    Ok(files)
}

fn verbatim(path: &str, text: &str) -> File {
    File {
        path: PathBuf::from(path),
        text: text.to_string(),
    }
}

/// Writes the project into `dir` (which must not exist, or be empty), and returns the
/// files written.
pub fn write(dir: &Path, name: &str, hook: Hook, lang: Lang) -> anyhow::Result<Vec<PathBuf>> {
    let files = render(name, hook, lang)?;
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        bail!(
            "{} exists and is not empty: choose another folder with --dir",
            dir.display()
        );
    }
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(file.path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_with_nothing_left_to_fill() {
        for lang in Lang::ALL {
            for hook in Hook::ALL {
                let files = render("my-plugin", hook, lang).unwrap();
                for file in &files {
                    assert!(
                        !file.text.contains("{{"),
                        "{} {}: {} keeps a placeholder",
                        lang.name(),
                        hook.name(),
                        file.path.display()
                    );
                }
                let cases = files.iter().find(|f| f.path == Path::new("cases.toml"));
                crate::plugin_tools::test_cases::Cases::parse(&cases.unwrap().text)
                    .unwrap_or_else(|e| panic!("{} {}: {e:#}", lang.name(), hook.name()));
                let settings = files.iter().find(|f| f.path == Path::new("my-plugin.toml"));
                crate::plugins::plugin_toml::PluginToml::parse(&settings.unwrap().text)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", lang.name(), hook.name()));
            }
        }
    }

    #[test]
    fn python_and_js_worlds_import_only_what_the_hook_uses() {
        let files = render("p", Hook::Authz, Lang::Python).unwrap();
        let world = files
            .iter()
            .find(|f| f.path == Path::new("wit/world.wit"))
            .unwrap();
        assert!(world.text.contains("package local:p;"), "{}", world.text);
        assert!(world.text.contains("world p {"), "{}", world.text);
        assert!(world.text.contains("import wasmq:plugin/log@0.2.0;"));
        assert!(!world.text.contains("import wasmq:plugin/config"));
        assert!(!world.text.contains("import wasmq:plugin/sql"));
        assert!(world.text.contains("export wasmq:plugin/authz@0.2.0;"));
    }

    /// The auth template's README says what its method is, and why it has no hash; the
    /// Rust one depends on getrandom for its nonce. The other hooks' have neither.
    #[test]
    fn the_auth_readme_explains_its_method_in_every_language() {
        let file = |files: &[File], path: &str| {
            files
                .iter()
                .find(|f| f.path == Path::new(path))
                .unwrap()
                .text
                .clone()
        };
        for lang in Lang::ALL {
            let files = render("p", Hook::Auth, lang).unwrap();
            let readme = file(&files, "README.md");
            assert!(
                readme.contains("## The method\n\n`demo-challenge`"),
                "{readme}"
            );
            assert!(readme.contains("It uses no hash"), "{readme}");
            assert!(readme.contains("(`p.toml`, `[settings]`)"), "{readme}");
            let other = render("p", Hook::Authn, lang).unwrap();
            assert!(!file(&other, "README.md").contains("## The method"));
        }
        let cargo = |hook| file(&render("p", hook, Lang::Rust).unwrap(), "Cargo.toml");
        assert!(cargo(Hook::Auth).contains("getrandom = \"0.3\""));
        assert!(!cargo(Hook::Authz).contains("getrandom"));
    }

    /// The JavaScript template pins the toolchain the examples are built with.
    #[test]
    fn the_js_template_pins_the_examples_toolchain() {
        let pins = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains("\"@bytecodealliance/"))
                .map(|l| l.trim().trim_end_matches(',').to_string())
                .collect()
        };
        let examples = pins(repo_file!("plugins/examples/js/package.json"));
        assert!(!examples.is_empty());
        assert_eq!(pins(template!("js/package.json")), examples);
    }

    #[test]
    fn names_are_kebab_case_words_and_not_wit_keywords() {
        for good in ["a", "readonly-acl", "acl2", "my-acl-v2"] {
            check_name(good).unwrap();
        }
        for bad in [
            "", "Acl", "my_acl", "-a", "a-", "a--b", "2fa", "a-2b", "world", "a b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_project_is_not_written_over_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep"), "x").unwrap();
        let error = write(dir.path(), "p", Hook::Authz, Lang::Rust).unwrap_err();
        assert!(error.to_string().contains("not empty"), "{error}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep")).unwrap(),
            "x"
        );
    }
}
