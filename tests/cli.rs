//! The `rapport` binary end to end: real processes, a real server on 127.0.0.1 (port chosen by the
//! OS), bounded waits. Every command runs with an empty environment and its working directory in a
//! temporary folder, so nothing reaches the repository's models/ or the caller's settings.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
        .spawn()
        .expect("rapport starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
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
            .spawn()
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
        .spawn()
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
