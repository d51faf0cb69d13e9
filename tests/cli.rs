//! The `rapport` binary end to end: real processes, a real server on 127.0.0.1 (port chosen by the
//! OS), bounded waits. Every command runs with an empty environment and its working directory in a
//! temporary folder, so nothing reaches the repository's models/ or the caller's settings.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `Command::spawn`, retried while the binary is "text file busy": a test that has just copied the
/// binary may still have it open for writing in a process another test forked at that moment (the
/// fork holds the descriptor until its exec), which makes exec fail with ETXTBSY for a moment.
trait SpawnRetrying {
    fn spawn_retrying(&mut self) -> std::io::Result<Child>;
}

impl SpawnRetrying for Command {
    fn spawn_retrying(&mut self) -> std::io::Result<Child> {
        let mut attempts = 0;
        loop {
            match self.spawn() {
                Err(error)
                    if error.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 =>
                {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                result => return result,
            }
        }
    }
}

/// The binary cargo built for these tests.
fn built_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rapport"))
}

/// `rapport ARGS` with an empty environment, run in `cwd`.
fn rapport(binary: &Path, cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command.args(args).current_dir(cwd).env_clear();
    command
}

/// Runs to completion with `stdin` as input, within 60 s.
fn run_with_input(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_retrying()
        .expect("rapport starts");
    // A command that exits before reading its input closes the pipe: not an error here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    wait_bounded(child, Duration::from_secs(60))
}

/// Waits for `child` at most `limit`, killing it past that (the test then fails).
fn wait_bounded(child: Child, limit: Duration) -> Output {
    let id = child.id();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(limit) {
        Ok(output) => output.expect("rapport ran"),
        Err(_) => {
            let _ = Command::new("kill").arg(id.to_string()).status();
            panic!("rapport (pid {id}) did not finish within {limit:?}");
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `rapport serve` process on 127.0.0.1, killed when dropped.
struct ServerProcess {
    child: Child,
    /// `127.0.0.1:PORT`, as the server logged it.
    grpc_addr: String,
}

impl ServerProcess {
    /// Starts `binary serve` in `cwd` on OS-chosen loopback ports and waits (at most 30 s) for
    /// its "serving" log line.
    fn start(binary: &Path, cwd: &Path, extra_args: &[&str]) -> ServerProcess {
        let mut args = vec![
            "--log-json",
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra_args);
        let mut child = rapport(binary, cwd, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn_retrying()
            .expect("rapport serve starts");
        let log = BufReader::new(child.stderr.take().unwrap());
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines_seen = Vec::new();
            for line in log.lines().map_while(Result::ok) {
                let addr = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|record| {
                        record["fields"]["grpc_addr"]
                            .as_str()
                            .map(ToString::to_string)
                    });
                match addr {
                    Some(addr) => {
                        let _ = addr_tx.send(Ok(addr));
                    }
                    None => lines_seen.push(line),
                }
            }
            // The log ended without the line: the server exited.
            let _ = addr_tx.send(Err(lines_seen.join("\n")));
        });
        match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(grpc_addr)) => ServerProcess { child, grpc_addr },
            Ok(Err(log)) => panic!("rapport serve exited:\n{log}"),
            Err(_) => {
                let _ = child.kill();
                panic!("rapport serve logged no address within 30 s");
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of the built binary alone in a temporary folder, and another folder to run it from.
struct CopiedBinary {
    _folders: (tempfile::TempDir, tempfile::TempDir),
    binary: PathBuf,
    cwd: PathBuf,
}

fn copied_binary() -> CopiedBinary {
    let bin_folder = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let binary = bin_folder.path().join("rapport");
    std::fs::copy(built_binary(), &binary).expect("copy the binary");
    CopiedBinary {
        binary,
        cwd: cwd.path().to_path_buf(),
        _folders: (bin_folder, cwd),
    }
}

/// A release binary copied elsewhere, run from a folder without models/, classifies with its
/// built-in models and serves (health SERVING); `--models-dir` still reads files.
#[test]
fn copied_binary_classifies_and_serves_without_the_source_tree() {
    let copy = copied_binary();
    let texts = "I love this, thank you so much!\nworst service ever, I hate this\n";
    for backend in ["fast", "fast-gold", "vader"] {
        let output = run_with_input(
            rapport(
                &copy.binary,
                &copy.cwd,
                &["classify", "--sentiment", backend],
            ),
            texts,
        );
        assert!(output.status.success(), "{backend}: {}", stderr(&output));
        let labels: Vec<String> = stdout(&output)
            .lines()
            .map(|line| line.split('\t').next().unwrap().to_string())
            .collect();
        assert_eq!(labels, ["positive", "negative"], "{backend}");
    }

    // An explicit --models-dir is read from disk: an empty one has no model.
    let empty = tempfile::tempdir().unwrap();
    let output = run_with_input(
        rapport(
            &copy.binary,
            &copy.cwd,
            &["classify", "--models-dir", empty.path().to_str().unwrap()],
        ),
        "hello\n",
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot read model"),
        "{}",
        stderr(&output)
    );

    let server = ServerProcess::start(&copy.binary, &copy.cwd, &[]);
    let health = wait_bounded(
        rapport(
            &copy.binary,
            &copy.cwd,
            &["health", "--server", &server.url()],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_retrying()
        .unwrap(),
        Duration::from_secs(30),
    );
    assert!(health.status.success(), "{}", stderr(&health));
    assert_eq!(stdout(&health).trim(), "SERVING");
}

/// A tiny labelled file in `dir`: `label<TAB>text` with a header.
fn labelled_file(dir: &Path) -> PathBuf {
    let path = dir.join("labelled.tsv");
    std::fs::write(
        &path,
        "label\ttext\npositive\tI love this, thank you!\nnegative\tworst service ever\n\
         neutral\tthe store opens at nine\n",
    )
    .unwrap();
    path
}

/// `eval` names the backend as `--sentiment` spells it.
#[test]
fn eval_prints_the_backend_asked_for() {
    let copy = copied_binary();
    let file = labelled_file(&copy.cwd);
    let output = run_with_input(
        rapport(
            &copy.binary,
            &copy.cwd,
            &["eval", file.to_str().unwrap(), "--sentiment", "fast-gold"],
        ),
        "",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("backend         fast-gold\n"),
        "{}",
        stdout(&output)
    );
}

/// `train fast` does not overwrite an existing model without `--force`.
#[test]
fn train_fast_refuses_to_overwrite_without_force() {
    let copy = copied_binary();
    let file = labelled_file(&copy.cwd);
    let out = copy.cwd.join("model.bin");
    std::fs::write(&out, b"keep me").unwrap();
    let train = |force: bool| {
        let file = file.to_str().unwrap();
        let mut args = vec![
            "train",
            "fast",
            "--train",
            file,
            "--val",
            file,
            "--out",
            out.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        run_with_input(rapport(&copy.binary, &copy.cwd, &args), "")
    };
    let refused = train(false);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");

    let forced = train(true);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(std::fs::metadata(&out).unwrap().len() > 1000);
}

/// `rapport ARGS` against `server`, with its output, within 60 s.
fn client(server: &ServerProcess, cwd: &Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--server", &server.grpc_addr]);
    run_with_input(rapport(&built_binary(), cwd, &all), "")
}

/// An interaction line for `send`.
fn event_line(event_id: &str, customer_id: &str, occurred_at: &str, text: &str) -> String {
    serde_json::json!({
        "event_id": event_id,
        "tenant_id": "acme",
        "customer_id": customer_id,
        "channel": "twitter",
        "kind": "mention",
        "direction": "inbound",
        "occurred_at": occurred_at,
        "text": text,
        "author_followers": 51000,
    })
    .to_string()
}

/// An error for people: one line, naming the server, no tonic dump, no repeated cause.
fn assert_one_line_error(output: &Output, address: &str) {
    let message = stderr(output);
    assert!(!output.status.success(), "exit 0: {message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    assert!(
        message.trim_end().chars().count() <= 80,
        "over 80 columns: {message}"
    );
    assert!(message.starts_with("error: "), "{message}");
    assert!(message.contains(address), "{message}");
    for dump in ["MetadataMap", "details:", "Status {", "tcp connect error"] {
        assert!(!message.contains(dump), "{message}");
    }
}

/// `send` reports bad lines by their 1-based line number and sends the rest, names the lines the
/// server rejected, and exits non-zero; `--strict` sends nothing.
#[test]
fn send_reports_bad_lines_and_goes_on() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&built_binary(), cwd.path(), &[]);
    let file = cwd.path().join("events.jsonl");
    let lines = [
        event_line("e1", "ann", "2026-11-23T08:00:00Z", "worst service ever"),
        "{\"event_id\": \"e2\", not json".to_string(),
        String::new(),
        event_line("e4", "", "2026-11-23T08:00:00Z", "no customer"),
        event_line("e5", "bob", "2026-11-23T09:00:00Z", "thanks, all good"),
        event_line("e6", "cat", "yesterday", "bad time"),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let file_arg = "events.jsonl"; // relative to cwd, as people type it

    let strict = client(&server, cwd.path(), &["send", "--strict", file_arg]);
    assert!(!strict.status.success());
    assert!(
        stderr(&strict).contains("events.jsonl:2: "),
        "{}",
        stderr(&strict)
    );
    let nobody = client(&server, cwd.path(), &["top", "--tenant", "acme"]);
    assert!(!nobody.status.success(), "--strict sent something");

    let sent = client(&server, cwd.path(), &["send", file_arg]);
    let (out, err) = (stdout(&sent), stderr(&sent));
    assert!(!sent.status.success(), "exit 0 with rejections: {out}{err}");
    assert!(err.contains("events.jsonl:2: "), "{err}");
    assert!(err.contains("events.jsonl:6: occurred_at"), "{err}");
    assert!(err.contains("occurred_at"), "{err}");
    assert!(
        out.starts_with("accepted 2  duplicates 0  rejected 1"),
        "{out}"
    );
    assert!(out.contains("line 4 (e4): customer_id"), "{out}");
    assert!(err.contains("3 of 5 lines"), "{err}");
    for line in out.lines().chain(err.lines()) {
        assert!(line.chars().count() <= 80, "over 80 columns: {line}");
    }
}

/// `--relative-to-now` moves the latest event to now; `top` and `customer` take HOST:PORT,
/// print two labelled groups of reasons, and `--json`.
#[test]
fn top_and_customer_read_well_and_as_json() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&built_binary(), cwd.path(), &[]);
    let file = cwd.path().join("tour.jsonl");
    let lines = [
        event_line(
            "e1",
            "ann",
            "2020-01-01T08:00:00Z",
            "lost my order AGAIN. Worst ever!!",
        ),
        event_line("e2", "bob", "2020-01-01T07:00:00Z", "love it, thanks"),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let sent = client(
        &server,
        cwd.path(),
        &["send", "--relative-to-now", file.to_str().unwrap()],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));

    let top = client(&server, cwd.path(), &["top", "--tenant", "acme"]);
    assert!(top.status.success(), "{}", stderr(&top));
    let text = stdout(&top);
    assert!(text.starts_with("ann "), "{text}");
    assert!(text.contains("  priority reasons"), "{text}");
    assert!(text.contains("  risk factors"), "{text}");
    assert!(
        text.contains("for 0 s") || text.contains("for 1 s"),
        "{text}"
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "over 80 columns: {line}");
    }

    let json = client(
        &server,
        cwd.path(),
        &[
            "top",
            "--tenant",
            "acme",
            "--json",
            "--min-retention-risk",
            "0.3",
        ],
    );
    assert!(json.status.success(), "{}", stderr(&json));
    let scores: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let scores = scores.as_array().unwrap();
    assert!(!scores.is_empty());
    assert!(scores
        .iter()
        .all(|s| s["retention_risk"].as_f64().unwrap() >= 0.3));
    assert_eq!(scores[0]["customer_id"], "ann");
    assert_eq!(scores[0]["action"], "RESPOND");
    assert!(!scores[0]["priority_reasons"].as_array().unwrap().is_empty());
    assert!(!scores[0]["risk_factors"].as_array().unwrap().is_empty());

    let as_of_before = client(
        &server,
        cwd.path(),
        &["top", "--tenant", "acme", "--as-of", "2020-01-01T00:00:00Z"],
    );
    assert_one_line_error(&as_of_before, &server.grpc_addr);

    let customer = client(
        &server,
        cwd.path(),
        &["customer", "--tenant", "acme", "bob", "--json"],
    );
    assert!(customer.status.success(), "{}", stderr(&customer));
    let score: serde_json::Value = serde_json::from_str(&stdout(&customer)).unwrap();
    assert_eq!(score["customer_id"], "bob");
    assert_eq!(score["interactions_total"], 1);

    let unknown = client(
        &server,
        cwd.path(),
        &["customer", "--tenant", "acme", "zed"],
    );
    assert_one_line_error(&unknown, &server.grpc_addr);
    assert!(stderr(&unknown).contains("\"zed\""), "{}", stderr(&unknown));

    let nobody = client(&server, cwd.path(), &["top", "--tenant", "nobody"]);
    assert_one_line_error(&nobody, &server.grpc_addr);
    assert!(
        stderr(&nobody).contains("\"nobody\""),
        "{}",
        stderr(&nobody)
    );
}

/// A closed port: every client command says so in one line with the address and a hint.
#[test]
fn unreachable_server_is_one_line_with_a_hint() {
    let cwd = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let events = cwd.path().join("events.jsonl");
    std::fs::write(
        &events,
        event_line("e1", "ann", "2026-11-23T08:00:00Z", "hi"),
    )
    .unwrap();
    let events = events.to_str().unwrap();
    for args in [
        vec!["top", "--tenant", "acme"],
        vec!["customer", "--tenant", "acme", "ann"],
        vec!["watch", "--tenant", "acme"],
        vec!["send", events],
        vec!["health"],
    ] {
        let mut all = args.clone();
        let url = format!("http://{address}");
        all.extend_from_slice(&["--server", &url]);
        let output = run_with_input(rapport(&built_binary(), cwd.path(), &all), "");
        assert_one_line_error(&output, &address);
        assert!(
            stderr(&output).contains("rapport serve"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// `watch` says when it starts, and when the server goes away (exit non-zero).
#[test]
fn watch_says_when_it_starts_and_when_the_server_goes_away() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&built_binary(), cwd.path(), &[]);
    let address = server.grpc_addr.clone();
    let mut watch = rapport(
        &built_binary(),
        cwd.path(),
        &["watch", "--tenant", "acme", "--server", &address],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn_retrying()
    .unwrap();
    let (line_tx, line_rx) = mpsc::channel();
    let log = BufReader::new(watch.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let started = line_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a start line");
    assert!(
        started.starts_with("watching tenant \"acme\" at "),
        "{started}"
    );
    assert!(started.contains(&address), "{started}");

    drop(server); // killed
    let gone = line_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a goodbye line");
    assert!(gone.starts_with("error: "), "{gone}");
    assert!(gone.contains(&address), "{gone}");
    let status = wait_bounded(watch, Duration::from_secs(30)).status;
    assert!(!status.success());
}

/// Help wraps at 80 columns in an 80-column terminal (`COLUMNS` stands in for the terminal).
#[test]
fn help_fits_80_columns() {
    let cwd = tempfile::tempdir().unwrap();
    for command in [
        vec!["--help"],
        vec!["send", "--help"],
        vec!["top", "--help"],
        vec!["customer", "--help"],
        vec!["watch", "--help"],
        vec!["serve", "--help"],
        vec!["classify", "--help"],
    ] {
        let mut help = rapport(&built_binary(), cwd.path(), &command);
        help.env("COLUMNS", "80");
        let output = run_with_input(help, "");
        assert!(output.status.success(), "{command:?}");
        for line in stdout(&output).lines() {
            assert!(line.chars().count() <= 80, "{command:?}: {line}");
        }
    }
}

/// Issue 24 item 16: `rapport top … | head` panicked on the broken pipe (exit 101). A reader that
/// goes away ends the command quietly with exit 0.
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let cwd = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&built_binary(), cwd.path(), &[]);
    let file = cwd.path().join("events.jsonl");
    let lines: Vec<String> = (0..20)
        .map(|n| {
            event_line(
                &format!("e{n}"),
                &format!("c{n}"),
                "2020-01-01T08:00:00Z",
                "lost my order AGAIN. Worst ever!!",
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let sent = client(
        &server,
        cwd.path(),
        &["send", "--relative-to-now", file.to_str().unwrap()],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    for args in [
        &["top", "--tenant", "acme"][..],
        &["top", "--tenant", "acme", "--json"][..],
        &["customer", "--tenant", "acme", "c1"][..],
    ] {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--server", &server.grpc_addr]);
        let mut child = rapport(&built_binary(), cwd.path(), &all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_retrying()
            .expect("rapport starts");
        // The reader goes away before the command writes anything.
        drop(child.stdout.take());
        let output = wait_bounded(child, Duration::from_secs(60));
        assert!(
            output.status.success(),
            "{args:?}: {:?}\n{}",
            output.status,
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
}
