//! A local Lambda Runtime API: what the Lambda service offers a custom runtime (`bootstrap`), so
//! the real function binaries run on this machine without Docker. It serves, on 127.0.0.1, the
//! endpoints `lambda_runtime` calls: `GET /2018-06-01/runtime/invocation/next` (held until an
//! event is invoked), `POST .../invocation/{id}/response`, `POST .../invocation/{id}/error` and
//! `POST .../init/error`. [`Function`] starts a binary against it with the variables Lambda sets.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

const PREFIX: &str = "/2018-06-01/runtime";
/// The account and region the emulated functions report in their context.
const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The handler's result (`POST .../response`).
    Response(Value),
    /// The handler failed (`POST .../error`): `errorType` and `errorMessage`.
    Error(Value),
}

struct Invocation {
    id: String,
    function_arn: String,
    deadline_ms: u64,
    payload: Bytes,
}

struct Shared {
    /// The events waiting for the function's next poll.
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    /// The invocations handed out and not answered yet.
    pending: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<Value>>,
}

/// One emulated Runtime API, serving one function at a time.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Invocation>,
    server: tokio::task::JoinHandle<()>,
    invocations: std::sync::atomic::AtomicU64,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let (events, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(queue),
            pending: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(&format!("{PREFIX}/invocation/{{id}}/response"), post(response))
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi { addr, shared, events, server, invocations: Default::default() })
    }

    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` wants it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Invokes `function` with `payload` (the event's JSON bytes, passed on as they are) and
    /// waits for its answer. Fails if the function exits or reports an init error first, or
    /// if it does not answer within `timeout`.
    pub async fn invoke(&self, function: &mut Function, payload: Vec<u8>, timeout: Duration) -> Result<Answer, String> {
        let n = self.invocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("{:08x}-0000-4000-8000-{n:012x}", std::process::id());
        let (tx, mut rx) = oneshot::channel();
        self.shared.pending.lock().expect("pending").insert(id.clone(), tx);
        let deadline_ms = (SystemTime::now() + timeout).duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let invocation = Invocation {
            id: id.clone(),
            function_arn: format!("{ARN_PREFIX}{}", function.name),
            deadline_ms: deadline_ms as u64,
            payload: payload.into(),
        };
        self.events.send(invocation).map_err(|_| "the Runtime API has stopped".to_string())?;
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout(Duration::from_millis(200), &mut rx).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(_)) => return Err("the invocation was dropped".into()),
                Err(_) => {}
            }
            if let Some(e) = self.shared.init_error.lock().expect("init error").clone() {
                return Err(format!("{} reported an init error: {e}", function.name));
            }
            if let Some(status) = function.exited() {
                return Err(format!("{} exited ({status}) before answering invocation {id}", function.name));
            }
            if tokio::time::Instant::now() > give_up {
                return Err(format!("{} did not answer invocation {id} within {timeout:?}", function.name));
            }
        }
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Result<(HeaderMap, Bytes), StatusCode> {
    // One poller at a time, as Lambda runs one invocation per instance.
    let invocation = shared.queue.lock().await.recv().await.ok_or(StatusCode::GONE)?;
    let mut headers = HeaderMap::new();
    let header = |v: &str| HeaderValue::from_str(v).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR);
    headers.insert("lambda-runtime-aws-request-id", header(&invocation.id)?);
    headers.insert("lambda-runtime-deadline-ms", header(&invocation.deadline_ms.to_string())?);
    headers.insert("lambda-runtime-invoked-function-arn", header(&invocation.function_arn)?);
    headers.insert("lambda-runtime-trace-id", header("Root=1-00000000-000000000000000000000000;Sampled=0")?);
    headers.insert("content-type", header("application/json")?);
    Ok((headers, invocation.payload))
}

fn answer(shared: &Shared, id: &str, answer: Answer) -> StatusCode {
    match shared.pending.lock().expect("pending").remove(id) {
        Some(tx) => {
            let _ = tx.send(answer);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

fn json_or_text(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    answer(&shared, &id, Answer::Response(json_or_text(&body)))
}

async fn error(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    answer(&shared, &id, Answer::Error(json_or_text(&body)))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().expect("init error") = Some(json_or_text(&body));
    StatusCode::ACCEPTED
}

/// A function binary running against a [`RuntimeApi`], its output going to a log file.
pub struct Function {
    pub name: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Function {
    /// Starts `exe` as function `name` with `variables` (the function's configuration, as in
    /// `infra/env.json`) on top of what Lambda itself sets. Nothing else of this process's
    /// environment is passed on, so no local AWS profile or setting leaks in.
    pub fn start(
        exe: &Path,
        name: &str,
        api: &RuntimeApi,
        variables: &BTreeMap<String, String>,
    ) -> std::io::Result<Function> {
        let log = std::env::temp_dir().join(format!("{name}-{}-{}.log", std::process::id(), api.addr.port()));
        let out = std::fs::File::create(&log)?;
        let mut cmd = std::process::Command::new(exe);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/02/[$LATEST]local")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TZ", ":UTC")
            .envs(variables)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn()?;
        Ok(Function { name: name.to_string(), child, log })
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything it printed so far (its logs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
