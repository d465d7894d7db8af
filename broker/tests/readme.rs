//! The README checked against the binary. Its quick start is run as written: every `sh`
//! block of the "Quick start" section, line by line, against the real `wasmq` on a free
//! port, with `scripts/run` standing for the binary (run in the broker's folder, as
//! `scripts/run` runs it in the current one) and the port given to `mosquitto_pub` /
//! `mosquitto_sub` with `-p`, as the README itself says to when 1883 is taken. So a
//! changed command, a changed default rule or a changed message shows up here, not in a
//! new user's first hour. The other half, the table of the binary's commands, is checked
//! against `--help`. (The configuration reference is checked in `config.rs`.)
//!
//! What the README says a command shows is checked too: a trailing comment in quotes
//! (`mosquitto_pub ...   # "not authorized"`) is text its output must contain (any
//! case), and "The subscriber prints `...`" is a line the first subscriber must print.
//! Subscribers (`mosquitto_sub`) run in the background until the end, and each must print
//! at least one message; other commands must exit 0 unless they carry such a comment.
//!
//! Needs Debian's `mosquitto-clients` (which `scripts/test` installs): without them the
//! test fails, since a quick start that was not run proves nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");
const README: &str = include_str!("../../README.md");
const WAIT: Duration = Duration::from_secs(20);

/// The text of the README section under `## {title}`, up to the next `## ` heading.
fn section(title: &str) -> &'static str {
    let heading = format!("\n## {title}\n");
    let start = README
        .find(&heading)
        .unwrap_or_else(|| panic!("the README has no `## {title}` section"))
        + heading.len();
    let rest = &README[start..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The lines of the ```` ```sh ```` blocks in `text`, in order.
fn sh_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() => lines.push(l),
            _ => {}
        }
    }
    lines
}

/// One quick start line: the shell command, and the text its output must show if the
/// README says (a trailing `# "..."`).
struct Step {
    command: String,
    shows: Option<String>,
}

impl Step {
    /// Splits off a trailing comment (`#` after whitespace; a `#` inside a filter such
    /// as `'sensors/#'` follows a `/`).
    fn parse(line: &str) -> Step {
        let comment = line
            .char_indices()
            .find(|&(i, c)| c == '#' && line[..i].ends_with(char::is_whitespace))
            .map(|(i, _)| i);
        let (command, comment) = match comment {
            Some(i) => (line[..i].trim(), Some(line[i + 1..].trim())),
            None => (line.trim(), None),
        };
        let shows = comment
            .and_then(|c| c.strip_prefix('"'))
            .and_then(|c| c.strip_suffix('"'))
            .map(str::to_string);
        Step {
            command: command.to_string(),
            shows,
        }
    }

    fn program(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or("")
    }

    /// The command as the test runs it: `scripts/run` is the binary (`$WASMQ`), and the
    /// MQTT clients get the test broker's port.
    fn runnable(&self, port: u16) -> String {
        let mut words: Vec<String> = self
            .command
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        match words[0].as_str() {
            "scripts/run" => words[0] = "\"$WASMQ\"".into(),
            "mosquitto_pub" | "mosquitto_sub" => match words.iter().position(|w| w == "-p") {
                Some(i) => words[i + 1] = port.to_string(),
                None => words
                    .splice(1..1, ["-p".to_string(), port.to_string()])
                    .for_each(drop),
            },
            other => panic!("the quick start runs `{other}`: teach this test what it is"),
        }
        words.join(" ")
    }
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sh -c COMMAND` in `dir`, with `$WASMQ` the binary, output to `out`.
fn shell(dir: &Path, command: &str, out: &Path) -> Child {
    let file = std::fs::File::create(out).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("WASMQ", WASMQ)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Waits until `check(contents of out)` or [`WAIT`]; the contents.
fn wait_for(out: &Path, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}, in {WAIT:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// What `mosquitto_sub -v -d` printed, without its debug lines: one `topic payload` a
/// message.
fn messages(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed"))
        .collect()
}

fn tools_present() {
    for tool in ["mosquitto_pub", "mosquitto_sub", "stdbuf"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .status
            .success();
        assert!(
            found,
            "{tool} is missing: apt-get install mosquitto-clients (scripts/test does)"
        );
    }
}

#[test]
fn the_quick_start_works_as_written() {
    tools_present();
    let text = section("Quick start");
    let steps: Vec<Step> = sh_lines(text).into_iter().map(Step::parse).collect();
    assert!(
        steps.len() >= 5,
        "the quick start lost its commands: {text}"
    );
    let promised = text
        .split("The subscriber prints `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the quick start says what the subscriber prints");

    // The broker, as `scripts/run --listen 127.0.0.1:PORT` starts it: built-in defaults,
    // state in its folder.
    let dir = tempfile::tempdir().unwrap();
    let port = wasmq_tests::free_loopback_addr().port();
    let log = dir.path().join("broker.log");
    let _broker = Killed(shell(
        dir.path(),
        &format!("exec \"$WASMQ\" --listen 127.0.0.1:{port}"),
        &log,
    ));
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "wasmq does not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut subscribers: Vec<(String, PathBuf, Killed)> = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let command = step.runnable(port);
        let out = dir.path().join(format!("step-{n}.out"));
        if step.program() == "mosquitto_sub" {
            // In the background, its debug output (-d) saying when it is subscribed;
            // stdbuf: a redirected mosquitto_sub buffers its stdout.
            let child = shell(dir.path(), &format!("exec stdbuf -oL {command} -d"), &out);
            wait_for(&out, &format!("`{command}` got no SUBACK"), |t| {
                t.contains("received SUBACK")
            });
            subscribers.push((command, out, Killed(child)));
            continue;
        }
        let mut child = Killed(shell(dir.path(), &command, &out));
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "`{command}` did not finish");
            std::thread::sleep(Duration::from_millis(25));
        };
        let output = std::fs::read_to_string(&out).unwrap();
        match &step.shows {
            Some(shows) => assert!(
                output.to_lowercase().contains(&shows.to_lowercase()),
                "the README says `{}` shows {shows:?}; it printed:\n{output}",
                step.command
            ),
            None => assert!(
                status.success(),
                "`{}` (run as `{command}`): {status}\n{output}",
                step.command
            ),
        }
    }

    // Every subscriber got messages; the first one the README's line.
    for (i, (command, out, _)) in subscribers.iter().enumerate() {
        let output = wait_for(out, &format!("`{command}` received nothing"), |t| {
            !messages(t).is_empty() && (i > 0 || messages(t).contains(&promised))
        });
        if i == 0 {
            assert!(messages(&output).contains(&promised), "{output}");
        }
    }
    // "a subscriber that arrives later gets it at once": the retained message.
    let topic = promised.split(' ').next().unwrap();
    let out = dir.path().join("retained.out");
    let mut later = Killed(shell(
        dir.path(),
        &format!("mosquitto_sub -h 127.0.0.1 -p {port} -t {topic} -v -C 1 -W 10"),
        &out,
    ));
    let output = wait_for(&out, "no retained message for a later subscriber", |t| {
        t.lines().any(|l| l == promised)
    });
    assert!(later.0.wait().unwrap().success(), "{output}");
}

/// Every `wasmq ...` of the README's table of commands exists, with the options it shows.
#[test]
fn the_readme_command_table_matches_the_binary() {
    let mut checked = 0;
    for row in section("The two commands")
        .lines()
        .filter(|l| l.starts_with("| `wasmq"))
    {
        let cell = row.split('`').nth(1).unwrap();
        // The subcommand: the words before the first option or placeholder (NAME, FILE).
        let words: Vec<&str> = cell
            .split_whitespace()
            .skip(1)
            .take_while(|w| {
                w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
            })
            .collect();
        let help = Command::new(WASMQ)
            .args(&words)
            .arg("--help")
            .output()
            .unwrap();
        let help_text = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.status.success(),
            "`wasmq {}`: {help:?}",
            words.join(" ")
        );
        // Every option the row shows (`--allow\|--deny` is two).
        for option in row
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
        {
            assert!(
                help_text.contains(option),
                "the README shows `wasmq {} {option}`, which --help does not list:\n{help_text}",
                words.join(" ")
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "the README's command table was not found");
}
