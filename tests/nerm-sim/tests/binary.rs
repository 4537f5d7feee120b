//! The `nerm-sim` binary: starts on a free port, prints its URL first, serves, stops when killed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{client_with_timeout, read_reply};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nerm-sim");

/// A spawned simulator, killed (by its own handle) when dropped.
struct Spawned {
    child: Child,
    api: String,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the binary with `args` and waits (a few seconds at most) for its first stdout line.
fn spawn(args: &[&str]) -> Spawned {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("NERM_SIM_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nerm-sim");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut spawned = Spawned { child, api: String::new() };
    let line = rx.recv_timeout(Duration::from_secs(10)).expect("a first stdout line within 10 s");
    let line = line.trim_end();
    let api = line.strip_prefix("nerm-sim listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(api.starts_with("http://127.0.0.1:") && api.ends_with("/api"), "{api}");
    let port: u16 = api["http://127.0.0.1:".len()..api.len() - "/api".len()].parse().expect("a port number");
    assert_ne!(port, 0, "port 0 is replaced by the real one");
    spawned.api = api.to_string();
    spawned
}

async fn get(api: &str, path: &str, token: &str) -> (u16, Value) {
    let client = client_with_timeout(Some(Duration::from_secs(10)));
    let resp = client.get(format!("{api}{path}")).bearer_auth(token).send().await.expect("an answer");
    let r = read_reply(resp).await.expect("a body");
    (r.status, r.body)
}

#[tokio::test]
async fn the_binary_prints_its_url_first_and_serves_the_demo_tenant() {
    let sim = spawn(&["--port", "0", "--token", "t"]);

    let (status, body) = get(&sim.api, "/profile_types", "t").await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> =
        body["profile_types"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["Employee", "Contractor"]);
    // the token given on the command line is the only one accepted
    assert_eq!(get(&sim.api, "/profile_types", "sim-token").await.0, 401);
}

#[tokio::test]
async fn with_empty_the_binary_starts_with_no_profile_types() {
    let sim = spawn(&["--port", "0", "--token", "t", "--empty"]);
    let (status, body) = get(&sim.api, "/profile_types", "t").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"profile_types": []}));
    assert_eq!(get(&sim.api, "/users", "t").await.1, serde_json::json!({"users": []}));
}

#[tokio::test]
async fn the_binary_takes_fault_flags() {
    let sim = spawn(&["--port", "0", "--token", "t", "--rate-limit", "2/60"]);
    assert_eq!(get(&sim.api, "/roles", "t").await.0, 200);
    assert_eq!(get(&sim.api, "/roles", "t").await.0, 200);
    assert_eq!(get(&sim.api, "/roles", "t").await.0, 429);
}

#[test]
fn the_binary_refuses_to_start_without_a_token() {
    let out = Command::new(BIN)
        .args(["--port", "0"])
        .env_remove("NERM_SIM_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run nerm-sim");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"), "{out:?}");
}

#[test]
fn the_binary_refuses_a_bad_rate_limit() {
    let out = Command::new(BIN)
        .args(["--port", "0", "--token", "t", "--rate-limit", "lots"])
        .env_remove("NERM_SIM_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run nerm-sim");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate-limit"), "{out:?}");
}

#[tokio::test]
async fn the_binary_serves_a_pat_token_endpoint_without_a_static_token() {
    let sim = spawn(&["--port", "0", "--client-id", "cid", "--client-secret", "csecret", "--token-lifetime-s", "30"]);
    let token_url = sim.api.replace("/api", "/oauth/token");
    let client = client_with_timeout(Some(Duration::from_secs(10)));
    let form = [("grant_type", "client_credentials"), ("client_id", "cid"), ("client_secret", "csecret")];
    let resp = client.post(&token_url).form(&form).send().await.expect("an answer");
    let body: Value = read_reply(resp).await.expect("a body").body;
    assert_eq!(body["expires_in"], 30, "{body}");
    let token = body["access_token"].as_str().expect("an access token");
    assert_eq!(get(&sim.api, "/roles", token).await.0, 200);
    assert_eq!(get(&sim.api, "/roles", "sim-token").await.0, 401);
}
