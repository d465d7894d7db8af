//! `wasmq plugin build [DIR]`: builds a plugin project, whatever its language, found
//! by what the folder holds: `Cargo.toml` (Rust), `app.py` (Python) or `package.json`
//! (JavaScript).
//!
//! - Rust: `cargo build --target wasm32-wasip2 --release`; the component is the
//!   `.wasm` cargo reports (its `compiler-artifact` message), wherever the target
//!   folder is.
//! - Python and JavaScript: the repository's `scripts/build-plugins --project DIR`,
//!   the script that installs componentize-py and componentize-js into the
//!   repository's `.cache/` and builds the examples with them: one place knows how to
//!   run those tools. The repository is `WASMQ_REPO`, or else the checkout this binary
//!   was built from.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// What a project is written in, from the files in its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Cargo.toml`.
    Rust,
    /// `app.py`.
    Python,
    /// `package.json`.
    Js,
}

/// The language of the project in `dir`.
pub fn detect(dir: &Path) -> anyhow::Result<Kind> {
    if !dir.is_dir() {
        bail!("{}: no such folder", dir.display());
    }
    for (file, kind) in [
        ("Cargo.toml", Kind::Rust),
        ("app.py", Kind::Python),
        ("package.json", Kind::Js),
    ] {
        if dir.join(file).is_file() {
            return Ok(kind);
        }
    }
    bail!(
        "{}: not a plugin project: no Cargo.toml (Rust), app.py (Python) or package.json \
         (JavaScript); `wasmq plugin new` writes one",
        dir.display()
    )
}

/// Builds the project in `dir`; returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    match detect(dir)? {
        Kind::Rust => build_rust(dir),
        Kind::Python | Kind::Js => build_with_script(dir),
    }
}

/// The Wasmq checkout whose `scripts/build-plugins` and `.cache/` build Python and
/// JavaScript plugins: `WASMQ_REPO`, or the one this binary was built from.
pub fn checkout() -> anyhow::Result<PathBuf> {
    let script = |repo: &Path| repo.join("scripts/build-plugins");
    if let Some(repo) = std::env::var_os("WASMQ_REPO") {
        let repo = PathBuf::from(repo);
        if !script(&repo).is_file() {
            bail!(
                "WASMQ_REPO is {}, which has no scripts/build-plugins: it must name a \
                 Wasmq checkout",
                repo.display()
            );
        }
        return Ok(repo);
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if script(&built_from).is_file() {
        return Ok(built_from.canonicalize().unwrap_or(built_from));
    }
    bail!(
        "no Wasmq checkout found: Python and JavaScript plugins are built with the \
         toolchains that a checkout's scripts/build-plugins installs into its .cache/; \
         set WASMQ_REPO to one"
    )
}

fn build_with_script(dir: &Path) -> anyhow::Result<PathBuf> {
    let repo = checkout()?;
    let script = repo.join("scripts/build-plugins");
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{}: no such folder", dir.display()))?;
    // stderr is the script's progress and errors, shown as they come; stdout is the
    // path of the component.
    let output = Command::new(&script)
        .arg("--project")
        .arg(&dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} --project {} failed ({})",
            script.display(),
            dir.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .last()
        .filter(|line| !line.is_empty())
        .with_context(|| format!("{} printed no component path", script.display()))?;
    Ok(PathBuf::from(path))
}

const TARGET: &str = "wasm32-wasip2";

fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    check_rust_target(dir)?;
    let mut child = Command::new("cargo")
        .current_dir(dir)
        .args(["build", "--target", TARGET, "--release"])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| not_found(e, "cargo"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut wasm = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            for file in files.iter().filter_map(|f| f.as_str()) {
                if file.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(file));
                }
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build --target {TARGET} --release failed ({status})");
    }
    wasm.context("cargo built no .wasm: is the package a library with crate-type = [\"cdylib\"]?")
}

/// The target must be installed for the toolchain the project uses (its
/// `rust-toolchain.toml`, when it has one): say how, rather than let rustc say
/// "can't find crate for `core`".
fn check_rust_target(dir: &Path) -> anyhow::Result<()> {
    let output = Command::new("rustc")
        .current_dir(dir)
        .args(["--print", "target-libdir", "--target", TARGET])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| not_found(e, "rustc"))?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || libdir.is_empty() || !Path::new(&libdir).is_dir() {
        bail!(
            "the {TARGET} target is not installed for the Rust toolchain of {}: run \
             `rustup target add {TARGET}` there (the Wasmq repository's scripts/setup-rust \
             installs it for the toolchain it pins){}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .next()
                .map(|l| format!("; rustc said: {l}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn not_found(error: std::io::Error, tool: &str) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "{tool} not found: install Rust with rustup (https://rustup.rs); the Wasmq \
             repository's scripts/setup-rust then installs its toolchain and the {TARGET} \
             target"
        )
    } else {
        anyhow::Error::new(error).context(format!("cannot run {tool}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_what_the_folder_holds() {
        let dir = tempfile::tempdir().unwrap();
        let error = detect(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a plugin project"), "{error}");
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Kind::Js);
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Kind::Python);
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Kind::Rust);
        let missing = dir.path().join("nope");
        assert!(
            detect(&missing)
                .unwrap_err()
                .to_string()
                .contains("no such folder")
        );
    }
}
