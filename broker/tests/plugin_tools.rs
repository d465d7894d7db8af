//! `wasmq plugin new`, `build` and `test` as a plugin developer runs them: for each
//! language a project is written, built and tested against its own cases plus one
//! that is meant to fail (the exit code and the report are checked); every Rust
//! template builds and passes its cases; a bad cases file is reported by line and
//! field; the `sql` capability reaches the cases file's `[database]`; the `auth`
//! template is an exchange in each language, and its cases follow the broker's rules.
//!
//! Like the plugin host's language tests (`plugin-host/tests/languages.rs`), the Python
//! and JavaScript ones run `scripts/build-plugins` first, which installs componentize-py
//! and componentize-js into `.cache/` when they are missing: a language that cannot be
//! built is a failure, never a skip. They cost one componentize build each (5-30 s).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use wasmq_plugin_artifacts as artifacts;

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The Rust plugins of these tests share one target folder, kept between runs, so
/// the SDK's dependencies are compiled once.
fn rust_target_dir() -> PathBuf {
    std::env::temp_dir().join("wasmq-plugin-tools-tests-target")
}

fn wasmq(args: &[&str], cwd: &Path) -> Output {
    wasmq_command(args, cwd)
        .env_remove("WASMQ_REPO")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {WASMQ}: {e}"))
}

fn wasmq_command(args: &[&str], cwd: &Path) -> Command {
    let mut command = Command::new(WASMQ);
    command
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", rust_target_dir())
        .stdin(Stdio::null());
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `wasmq plugin new NAME --hook HOOK --lang LANG` in `parent`; the project's folder.
fn new_project(parent: &Path, name: &str, hook: &str, lang: &str) -> PathBuf {
    let output = wasmq(
        &["plugin", "new", name, "--hook", hook, "--lang", lang],
        parent,
    );
    assert!(output.status.success(), "plugin new: {}", text(&output));
    let dir = parent.join(name);
    for file in ["README.md", "cases.toml", &format!("{name}.toml")] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    dir
}

/// `wasmq plugin build` in the project's folder; the component it says it built.
fn build(dir: &Path) -> PathBuf {
    let output = wasmq(&["plugin", "build"], dir);
    assert!(output.status.success(), "plugin build: {}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let wasm = stdout
        .lines()
        .find_map(|l| l.strip_prefix("built: "))
        .unwrap_or_else(|| panic!("no `built: PATH` line: {}", text(&output)));
    let wasm = PathBuf::from(wasm);
    assert!(wasm.is_file(), "{} was not written", wasm.display());
    wasm
}

fn plugin_test(wasm: &Path, cases: &Path) -> Output {
    wasmq(
        &[
            "plugin",
            "test",
            wasm.to_str().unwrap(),
            cases.to_str().unwrap(),
        ],
        cases.parent().unwrap(),
    )
}

/// The project's own cases pass (exit 0, every one PASS); with `failing` appended, that
/// case fails with `why` in its report, the others still pass, and the exit code is 1.
fn check_cases(wasm: &Path, dir: &Path, passing: usize, failing: &str, why: &[&str]) {
    let cases = dir.join("cases.toml");
    let output = plugin_test(wasm, &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(
        report.contains(&format!("{passing} cases: {passing} passed, 0 failed")),
        "{report}"
    );
    assert_eq!(report.matches("\nPASS  ").count(), passing, "{report}");

    let mut text_of_cases = std::fs::read_to_string(&cases).unwrap();
    text_of_cases.push_str(failing);
    std::fs::write(&cases, text_of_cases).unwrap();
    let output = plugin_test(wasm, &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    let total = passing + 1;
    assert!(
        report.contains(&format!("{total} cases: {passing} passed, 1 failed")),
        "{report}"
    );
    assert!(report.contains("FAIL  meant to fail  ("), "{report}");
    for expected in why {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }
}

/// Installs the Python and JavaScript toolchains when they are missing (once per test
/// binary), as the plugin host's language tests do.
fn toolchains() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let root = repo_root();
        let output = Command::new(root.join("scripts/build-plugins"))
            .current_dir(&root)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/build-plugins");
        assert!(
            output.status.success(),
            "scripts/build-plugins failed: the Python and JavaScript toolchains are not \
             there, so those templates cannot be tested: {}",
            text(&output)
        );
    });
}

const AUTHZ_FAILING: &str = r#"
[[case]]
name = "meant to fail"
client = { client_id = "bob" }
action = "publish"
topic = "readonly/x"
expect = "allow"
"#;

#[test]
fn rust_authz_project_is_written_built_and_tested() {
    let parent = tempfile::tempdir().unwrap();
    let dir = new_project(parent.path(), "my-acl", "authz", "rust");
    // Outside any workspace, from its vendored SDK and contract.
    assert!(dir.join("wasmq-plugin-sdk/src/lib.rs").is_file());
    assert!(dir.join("wit/plugin.wit").is_file());
    let wasm = build(&dir);
    assert_eq!(wasm.file_name().unwrap(), "my_acl.wasm");
    check_cases(
        &wasm,
        &dir,
        3,
        AUTHZ_FAILING,
        &["expected: allow\n      got:      deny"],
    );
}

#[test]
fn rust_authn_and_transform_templates_build_and_pass_their_cases() {
    let parent = tempfile::tempdir().unwrap();
    for (hook, cases) in [("authn", 4), ("transform", 2)] {
        let name = format!("rust-{hook}");
        let dir = new_project(parent.path(), &name, hook, "rust");
        let wasm = build(&dir);
        let output = plugin_test(&wasm, &dir.join("cases.toml"));
        let report = text(&output);
        assert_eq!(output.status.code(), Some(0), "{hook}: {report}");
        assert!(
            report.contains(&format!("{cases} cases: {cases} passed, 0 failed")),
            "{hook}: {report}"
        );
        assert!(report.contains(&format!("hooks: {hook}")), "{report}");
    }
}

#[test]
fn python_authz_project_is_written_built_and_tested() {
    toolchains();
    let parent = tempfile::tempdir().unwrap();
    let dir = new_project(parent.path(), "py-acl", "authz", "python");
    let wasm = build(&dir);
    assert_eq!(wasm, dir.join("target/py-acl.wasm"));
    // Built in a copy: nothing of the toolchain's is left in the project.
    assert!(!dir.join("__pycache__").exists());
    check_cases(
        &wasm,
        &dir,
        3,
        AUTHZ_FAILING,
        &["expected: allow\n      got:      deny"],
    );
}

#[test]
fn js_transform_project_is_written_built_and_tested() {
    toolchains();
    let parent = tempfile::tempdir().unwrap();
    let dir = new_project(parent.path(), "js-stamp", "transform", "js");
    let wasm = build(&dir);
    assert_eq!(wasm, dir.join("target/js-stamp.wasm"));
    check_cases(
        &wasm,
        &dir,
        2,
        r#"
[[case]]
name = "meant to fail"
topic = "legacy/a"
expect = "replace"
expect_message = { topic = "v2/a", user_properties = [["via", "js-stamp"]] }
"#,
        &[
            "replace, but the message differs:",
            "topic\n          - expected \"v2/a\"\n          + got      \"legacy/a\"",
        ],
    );
}

/// The auth template's cases (`plugins/templates/cases/auth.toml`).
const AUTH_CASES: usize = 6;

/// A wrong answer and a wrong secret: the exchange fails at its second step, with the
/// answer the plugin gave.
const AUTH_FAILING: &str = r#"
[[case]]
name = "meant to fail"
client = { client_id = "c1", username = "alice" }
method = "demo-challenge"
steps = [
  { expect = "continue" },
  { data = "{challenge}:guess", expect = "success" },
]
"#;

const AUTH_WHY: &[&str] = &[
    "step 2 of 2 (data \"",
    ":guess\"):\n      expected: success\n      got:      failure (\"wrong secret for alice\")",
];

/// `--hook auth` in each language: a project that builds and passes its own exchange
/// cases (the nonce carried in the state from `start` to `step`), and a wrong
/// expectation is reported with the step and the answer the plugin gave.
fn auth_project_is_written_built_and_tested(lang: &str) {
    let parent = tempfile::tempdir().unwrap();
    let name = format!("{lang}-challenge");
    let dir = new_project(parent.path(), &name, "auth", lang);
    let wasm = build(&dir);
    let report = text(&plugin_test(&wasm, &dir.join("cases.toml")));
    assert!(
        report.contains("(hooks: auth; capabilities: config)"),
        "{report}"
    );
    check_cases(&wasm, &dir, AUTH_CASES, AUTH_FAILING, AUTH_WHY);
}

#[test]
fn rust_auth_project_is_written_built_and_tested() {
    auth_project_is_written_built_and_tested("rust");
}

#[test]
fn python_auth_project_is_written_built_and_tested() {
    toolchains();
    auth_project_is_written_built_and_tested("python");
}

#[test]
fn js_auth_project_is_written_built_and_tested() {
    toolchains();
    auth_project_is_written_built_and_tested("js");
}

/// The broker's rules are the runner's: a method the plugin does not list is ignored
/// without a call (CONNACK 0x8C); a challenge and a final answer that differ from what
/// is expected name the field.
#[test]
fn auth_cases_follow_the_brokers_rules() {
    let parent = tempfile::tempdir().unwrap();
    let dir = new_project(parent.path(), "rules", "auth", "rust");
    let wasm = build(&dir);
    let cases = dir.join("cases.toml");
    std::fs::write(
        &cases,
        r#"
[plugin.settings]
secret_alice = "wonderland"

[[case]]
name = "an unlisted method"
client = { client_id = "c", username = "alice" }
method = "KERBEROS"
steps = [{ expect = "continue" }, { data = "ticket", expect = "success" }]

[[case]]
name = "a challenge expected that was not sent"
client = { client_id = "c", username = "alice" }
method = "demo-challenge"
steps = [{ expect = "continue", expect_data = "a fixed nonce" }]

[[case]]
name = "alice is no superuser"
client = { client_id = "c", username = "alice" }
method = "demo-challenge"
steps = [{ expect = "continue" }, { data = "{challenge}:wonderland", expect = "success", superuser = true }]
"#,
    )
    .unwrap();
    let output = plugin_test(&wasm, &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("3 cases: 0 passed, 3 failed"), "{report}");
    assert!(
        report.contains(
            "step 1 of 2 (no data):\n      expected: continue\n      got:      ignore: \
             `methods` lists [\"demo-challenge\"] (the broker answers CONNACK 0x8C Bad \
             authentication method)"
        ),
        "{report}"
    );
    assert!(
        report.contains("continue, but\n        data\n          - expected \"a fixed nonce\"\n          + got      \""),
        "{report}"
    );
    assert!(
        report.contains(
            "success, but\n        superuser\n          - expected true\n          + got      false"
        ),
        "{report}"
    );
}

#[test]
fn a_bad_cases_file_is_reported_by_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "[[case]]\naction = \"publish\"\ntopc = \"x\"\nexpect = \"allow\"\n",
    )
    .unwrap();
    let output = plugin_test(Path::new(artifacts::READONLY_ACL), &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("cases.toml: bad cases file"), "{report}");
    assert!(report.contains("line 3"), "{report}");
    assert!(report.contains("unknown field `topc`"), "{report}");
    assert!(
        !report.contains("PASS") && !report.contains("FAIL"),
        "{report}"
    );

    std::fs::write(
        &cases,
        "[[case]]\nname = \"first\"\naction = \"publish\"\ntopic = \"a\"\nexpect = \"deny\"\n\n\
         [[case]]\nname = \"second\"\naction = \"publish\"\nexpect = \"deny\"\n",
    )
    .unwrap();
    let output = plugin_test(Path::new(artifacts::READONLY_ACL), &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("case 2 \"second\" (line 7): `topic` is missing"),
        "{report}"
    );
}

/// The sql capability reaches an in-memory SQLite database that the cases file sets
/// up; without the grant the plugin does not load, and the error says how to grant it.
#[test]
fn sql_plugins_query_the_cases_files_database() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    let case_table = r#"
[[case]]
name = "a client with a row is allowed"
client = { client_id = "known" }
action = "publish"
topic = "t"
expect = "allow"

[[case]]
name = "a client without one is left to the next plugin"
client = { client_id = "stranger" }
action = "publish"
topic = "t"
expect = "ignore"
"#;
    std::fs::write(
        &cases,
        format!(
            r#"
[plugin.capabilities]
sql = "read"
[plugin.sql.statements]
acl_by_client = "SELECT client FROM acl WHERE client = ?"

[database]
url = "sqlite::memory:"
setup = ["CREATE TABLE acl (client TEXT)", "INSERT INTO acl VALUES ('known')"]
{case_table}"#
        ),
    )
    .unwrap();
    let output = plugin_test(Path::new(artifacts::SQL_PROBE), &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(report.contains("2 cases: 2 passed, 0 failed"), "{report}");

    std::fs::write(&cases, case_table).unwrap();
    let output = plugin_test(Path::new(artifacts::SQL_PROBE), &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("does not load"), "{report}");
    assert!(report.contains("[plugin.capabilities] sql"), "{report}");
}

/// A checkout whose `.cache/` has no toolchain: `plugin build` says which is missing
/// and which script installs it, and installs nothing.
#[test]
fn a_missing_toolchain_is_named_with_the_script_that_installs_it() {
    let root = repo_root();
    let checkout = tempfile::tempdir().unwrap();
    for file in [
        "scripts/build-plugins",
        "plugins/examples/python/requirements.txt",
        "plugins/examples/js/package.json",
        "plugins/examples/js/package-lock.json",
    ] {
        let to = checkout.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(file), to).unwrap();
    }
    let projects = tempfile::tempdir().unwrap();
    for (lang, tool) in [("python", "componentize-py"), ("js", "componentize-js")] {
        let dir = new_project(projects.path(), &format!("{lang}-acl"), "authz", lang);
        let output = wasmq_command(&["plugin", "build"], &dir)
            .env("WASMQ_REPO", checkout.path())
            .output()
            .unwrap();
        let report = text(&output);
        assert_eq!(output.status.code(), Some(1), "{report}");
        assert!(report.contains(&format!("{tool} (")), "{report}");
        assert!(report.contains("is not installed in"), "{report}");
        assert!(
            report.contains("scripts/build-plugins once (without --project) to install it"),
            "{report}"
        );
        assert!(!dir.join("target").exists(), "{lang}: nothing built");
    }
    assert!(
        !checkout.path().join(".cache/py").exists(),
        "nothing installed"
    );
    assert!(
        !checkout.path().join(".cache/js").exists(),
        "nothing installed"
    );
}

/// A hook that traps fails its case (the fault is the report), and so does a case for
/// a hook the component does not export; the other cases still run.
#[test]
fn faults_and_hooks_not_exported_fail_their_case() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        r#"
[[case]]
name = "traps"
client = { client_id = "c" }
action = "publish"
topic = "t"
expect = "deny"

[[case]]
name = "traps too"
topic = "t"
expect = "keep"
"#,
    )
    .unwrap();
    let output = plugin_test(Path::new(artifacts::PANIC), &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("2 cases: 0 passed, 2 failed"), "{report}");
    assert!(
        report.contains("expected: deny\n      got:      a fault: trapped"),
        "{report}"
    );
    assert!(
        report.contains("authorize c on t refused to cooperate"),
        "{report}"
    );
    assert!(
        report.contains("expected: keep\n      got:      a fault: trapped"),
        "{report}"
    );

    std::fs::write(
        &cases,
        r#"
[[case]]
name = "not exported"
client = { client_id = "c", username = "u" }
expect = "allow"

[[case]]
name = "exported"
client = { client_id = "bob" }
action = "publish"
topic = "readonly/x"
expect = "deny"
"#,
    )
    .unwrap();
    let output = plugin_test(Path::new(artifacts::READONLY_ACL), &cases);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("the plugin does not export authn (it exports: authz, deliver)"),
        "{report}"
    );
    assert!(report.contains("PASS  exported"), "{report}");
}
