//! Scenario 6: cold start — the time from process start to the first Runtime API poll
//! (`GET /2018-06-01/runtime/invocation/next`) of each Lambda's release binary, with a tiny
//! listener standing in for the Lambda Runtime API, and the environment Lambda would give
//! (dummy credentials; nothing reaches AWS). Optionally, one extra run under `strace` lists
//! every `connect()` the process makes before that poll, to show there is no network call.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{self, Measurement};

const POLL: &str = "GET /2018-06-01/runtime/invocation/next";

/// Starts a listener; the receiver gets the instant the first poll's request line arrives
/// (or the first request line when it is something else, as an error).
fn runtime_api() -> Result<(u16, mpsc::Receiver<Result<Instant, String>>), String> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let mut line = String::new();
        let read = BufReader::new(&stream).read_line(&mut line);
        let at = Instant::now();
        let result = match read {
            Ok(_) if line.starts_with(POLL) => Ok(at),
            Ok(_) => Err(format!("the first request was {:?}, not the poll", line.trim_end())),
            Err(e) => Err(format!("reading the first request failed: {e}")),
        };
        let _ = tx.send(result);
        // Keep the connection open (the poll stays pending) until the process is killed.
        std::thread::sleep(Duration::from_secs(30));
        drop(stream);
    });
    Ok((port, rx))
}

/// The Lambda-like environment: the Runtime API address, the function's own settings
/// (`functions/*/src/config.rs`), region and dummy credentials, an empty HOME (no ~/.aws).
fn command(program: &Path, port: u16, home: &Path, name: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCHMARKDUMMY00")
        .env("AWS_SECRET_ACCESS_KEY", "bench-dummy-secret-key")
        .env("AWS_SESSION_TOKEN", "bench-dummy-session-token")
        .env("BUCKET_NAME", "bench-bucket")
        .env("QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/bench-work")
        .env("SUMMARY_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:bench-summary")
        .env("NERM_SECRET_ID", "bench/nerm")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One start: milliseconds from spawn to the first poll.
fn once(program: &Path, home: &Path, name: &str) -> Result<f64, String> {
    let (port, rx) = runtime_api()?;
    let t = Instant::now();
    let child = command(program, port, home, name).spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
    let got = rx.recv_timeout(Duration::from_secs(20));
    stop(child);
    match got {
        Ok(Ok(at)) => Ok(at.duration_since(t).as_secs_f64() * 1000.0),
        Ok(Err(e)) => Err(format!("{name}: {e}")),
        Err(_) => Err(format!("{name}: no Runtime API poll within 20 s")),
    }
}

/// One run under `strace -f -e trace=connect`: every connect() before the poll's.
fn connects_before_poll(program: &Path, home: &Path, name: &str, trace: &Path) -> Result<Vec<String>, String> {
    let (port, rx) = runtime_api()?;
    let inner = command(program, port, home, name);
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=connect", "-o"]).arg(trace).arg(program);
    cmd.env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run strace: {e}"))?;
    let got = rx.recv_timeout(Duration::from_secs(30));
    stop(child);
    got.map_err(|_| "no poll under strace within 30 s".to_string())??;
    let text = std::fs::read_to_string(trace).map_err(|e| format!("no strace output: {e}"))?;
    let poll_port = format!("htons({port})");
    let mut before = Vec::new();
    for line in text.lines().filter(|l| l.contains("connect(")) {
        if line.contains(&poll_port) {
            return Ok(before);
        }
        before.push(line.split_once(' ').map_or(line, |(_, rest)| rest).to_string());
    }
    Err(format!("strace saw no connect() to the Runtime API port {port}"))
}

pub fn run(results: &Path, work: &Path, bin_dir: &Path, runs: usize, verify: bool) -> Result<(), String> {
    let home = work.join("lambda-home");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let s = "6. cold start: process start → first Runtime API poll (release binaries, x86_64 host)";
    let mut m = Vec::new();
    for name in ["csv-ingest", "nerm-provisioner"] {
        let program: PathBuf = bin_dir.join(name);
        if !program.exists() {
            return Err(format!("{} is missing: build it with cargo build --release", program.display()));
        }
        // One unmeasured start first, so the binary is in the page cache like a warm Lambda host.
        once(&program, &home, name)?;
        let mut ms = Vec::new();
        for _ in 0..runs {
            ms.push(once(&program, &home, name)?);
        }
        let size = std::fs::metadata(&program).map_err(|e| e.to_string())?.len();
        let mut row = Measurement::over(s, &format!("{name}: time to first poll"), "ms", &ms);
        if verify {
            let trace = work.join(format!("{name}.strace"));
            row = row.note(match connects_before_poll(&program, &home, name, &trace) {
                Ok(before) if before.is_empty() => "strace: no connect() before the poll".to_string(),
                Ok(before) => format!("strace: connect() before the poll: {}", before.join(" | ")),
                Err(e) => format!("strace check not possible here: {e}"),
            });
        }
        println!("scenario 6: {name}: {}", row.note);
        m.push(row);
        m.push(
            Measurement::one(
                s,
                &format!("{name}: binary size (x86_64 host, release, stripped, LTO)"),
                "bytes",
                size as f64,
            )
            .note("the arm64 Lambda build is smaller: see \"Binary sizes\" above"),
        );
    }
    util::save(results, "6-coldstart", &m)
}
