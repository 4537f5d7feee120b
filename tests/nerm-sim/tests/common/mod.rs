//! Shared helpers for the simulator's HTTP-level tests: one [`Harness`] per test, owning a
//! simulator on a free port and a reqwest client that speaks to it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use nerm_sim::{Faults, Running, Seed, SimConfig};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{Value, json};

/// The token every harness accepts.
pub const TOKEN: &str = "t";

/// One HTTP answer: status, headers and the body parsed as JSON (`Null` when empty, a JSON
/// string when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the status and hands back the body; the message shows the body on failure.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status, body: {}", self.body);
        self.body
    }

    /// Asserts 200 and hands back the body.
    #[track_caller]
    pub fn ok(self) -> Value {
        self.expect(200)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The config the tests start from: one token, no rate limit, no faults.
pub fn quiet_config() -> SimConfig {
    SimConfig {
        tokens: vec![TOKEN.into()],
        faults: Faults { rate_limit: None, ..Default::default() },
        ..Default::default()
    }
}

pub fn client_with_timeout(timeout: Option<Duration>) -> Client {
    // Plain HTTP only: skipping the platform root store saves ~50 ms per client.
    let mut b = Client::builder().no_proxy().tls_certs_only(Vec::<reqwest::Certificate>::new());
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().expect("reqwest client")
}

/// A running simulator plus a client for it.
pub struct Harness {
    pub running: Running,
    pub client: Client,
    pub token: String,
    /// `http://127.0.0.1:P/api`
    pub api: String,
    /// `http://127.0.0.1:P`
    pub root: String,
}

impl Harness {
    /// The demo tenant, no rate limit, no faults.
    pub async fn start() -> Harness {
        Harness::with(quiet_config(), &Seed::demo()).await
    }

    /// An empty tenant, no rate limit, no faults.
    pub async fn empty() -> Harness {
        Harness::with(quiet_config(), &Seed::default()).await
    }

    pub async fn with(config: SimConfig, seed: &Seed) -> Harness {
        let token = config.tokens.first().cloned().unwrap_or_default();
        let running = nerm_sim::start(config, seed, 0).await.expect("simulator starts");
        let api = running.api_url();
        let root = running.root_url();
        Harness { running, client: client_with_timeout(Some(Duration::from_secs(30))), token, api, root }
    }

    /// `path` relative to `/api` (`"/users?login=x"`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api, path)
    }

    /// Sends an authorised API request with `client`; `Err` when no HTTP answer arrived.
    pub async fn try_send_with(
        &self,
        client: &Client,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, reqwest::Error> {
        let mut req = client.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        read_reply(req.send().await?).await
    }

    pub async fn try_send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, reqwest::Error> {
        self.try_send_with(&self.client, method, path, body).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let what = format!("{method} {path}");
        self.try_send(method, path, body).await.unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// An API request with a hand-made `Authorization` header (or none) and a raw body.
    pub async fn raw(&self, method: Method, path: &str, authorization: Option<&str>, body: Option<&str>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        read_reply(req.send().await.expect("an answer")).await.expect("a body")
    }

    // ----- /_sim ------------------------------------------------------------------------

    pub async fn sim(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}/_sim{path}", self.root));
        if let Some(b) = body {
            req = req.json(&b);
        }
        read_reply(req.send().await.expect("an answer from /_sim")).await.expect("a body")
    }

    pub async fn sim_post(&self, path: &str, body: Value) -> Reply {
        self.sim(Method::POST, path, Some(body)).await
    }

    /// `GET /_sim/state`.
    pub async fn state(&self) -> Value {
        self.sim(Method::GET, "/state", None).await.ok()
    }

    /// `GET /_sim/stats`.
    pub async fn stats(&self) -> Value {
        self.sim(Method::GET, "/stats", None).await.ok()
    }

    /// `PATCH /_sim/config` with a JSON merge patch.
    pub async fn patch_config(&self, patch: Value) -> Reply {
        self.sim(Method::PATCH, "/config", Some(patch)).await
    }

    /// `PATCH /_sim/config`, asserting it was accepted.
    pub async fn configure(&self, patch: Value) {
        self.patch_config(patch).await.ok();
    }

    // ----- domain shortcuts ---------------------------------------------------------------

    /// The id of the role with this uid (`sponsor`, `employee`, ...).
    pub async fn role_id(&self, uid: &str) -> String {
        let roles = self.get("/roles?limit=500").await.ok();
        roles["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["uid"] == uid)
            .unwrap_or_else(|| panic!("no role {uid}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The id of the profile type with this uid (`employee`, `contractor`).
    pub async fn type_id(&self, uid: &str) -> String {
        self.get(&format!("/profile_types/{uid}")).await.ok()["profile_type"]["id"].as_str().unwrap().to_string()
    }

    /// `POST /user` of a NeprofileUser, `extra` merged into the body; returns the user.
    pub async fn create_user(&self, login: &str, extra: Value) -> Value {
        let mut user = json!({
            "name": format!("User {login}"), "email": format!("{login}@example.com"),
            "type": "NeprofileUser", "login": login,
        });
        for (k, v) in extra.as_object().expect("extra is an object") {
            user[k] = v.clone();
        }
        self.post("/user", json!({ "user": user })).await.ok()["user"].clone()
    }

    /// `POST /profile` of an Employee with these attributes; returns the profile.
    pub async fn create_employee(&self, attributes: Value) -> Value {
        let type_id = self.type_id("employee").await;
        let body = json!({ "profile": { "profile_type_id": type_id, "status": "Active", "attributes": attributes } });
        self.post("/profile", body).await.ok()["profile"].clone()
    }

    /// The uids of the roles a user holds, sorted (via `GET /user_roles?user_id=`).
    pub async fn role_uids_of(&self, user_id: &str) -> Vec<String> {
        let links = self.get(&format!("/user_roles?user_id={user_id}&limit=500")).await.ok();
        let roles = self.get("/roles?limit=500").await.ok();
        let mut uids: Vec<String> = links["user_roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                roles["roles"].as_array().unwrap().iter().find(|r| r["id"] == l["role_id"]).expect("role exists")["uid"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        uids.sort();
        uids
    }

    /// The stored user (hidden fields included) from `/_sim/state`.
    pub async fn stored_user(&self, login: &str) -> Option<Value> {
        let state = self.state().await;
        state["users"].as_array().unwrap().iter().find(|u| u["login"] == login).cloned()
    }
}

/// Reads a response into a [`Reply`]; `Err` when the body could not be read.
pub async fn read_reply(resp: reqwest::Response) -> Result<Reply, reqwest::Error> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Reply { status, headers, body })
}

/// The array under `key`, or a panic naming the body.
#[track_caller]
pub fn items<'a>(body: &'a Value, key: &str) -> &'a Vec<Value> {
    body[key].as_array().unwrap_or_else(|| panic!("no array {key:?} in {body}"))
}

/// The values of `field` of each item of the array under `key`.
#[track_caller]
pub fn field_of(body: &Value, key: &str, field: &str) -> Vec<String> {
    items(body, key).iter().map(|v| v[field].as_str().unwrap_or_default().to_string()).collect()
}
