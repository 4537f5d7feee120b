//! How the client authenticates: a legacy NERM API key sent as it is, or an ISC personal access
//! token (client id and secret) exchanged at the tenant's `/oauth/token` for short-lived access
//! tokens. Tenants created after June 2025 accept only the second.
//!
//! [`AccessTokens`] is the [`TokenProvider`] for both. For a PAT it keeps one access token for
//! as long as the provider lives (a CLI run, a Lambda instance across warm invocations), renews
//! it ahead of expiry, lets concurrent requests wait for one renewal instead of each starting
//! its own, and re-reads the credentials when they are refused (the secret may have rotated).
//! Neither the client secret nor an access token ever reaches a message.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::error::NermError;
use super::token::{SecretToken, TokenFuture, TokenProvider};

/// What the client authenticates with: one typed choice.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Credentials {
    /// A legacy NERM API key, sent as the Bearer token.
    ApiKey(SecretToken),
    /// An ISC personal access token, exchanged for access tokens.
    Pat(PatCredentials),
}

/// An ISC personal access token: where to exchange it, and its client id and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PatCredentials {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: SecretToken,
}

impl PatCredentials {
    /// Checks the token URL (see [`check_token_url`]) and that id and secret are not blank.
    pub fn new(token_url: &str, client_id: &str, client_secret: SecretToken) -> Result<Self, NermError> {
        let token_url = check_token_url(token_url)?;
        if client_id.trim().is_empty() {
            return Err(NermError::Setup("the ISC client id is empty".into()));
        }
        if client_secret.expose().trim().is_empty() {
            return Err(NermError::Setup("the ISC client secret is empty".into()));
        }
        Ok(PatCredentials { token_url, client_id: client_id.trim().to_string(), client_secret })
    }
}

impl fmt::Debug for PatCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatCredentials")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// Whether a URL points at this machine (plain http is allowed only there).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks the ISC token URL: https (plain http only to a loopback host), no user info. Errors
/// never repeat the URL: a pasted secret might sit in it.
pub fn check_token_url(raw: &str) -> Result<Url, NermError> {
    let url = Url::parse(raw.trim()).map_err(|e| NermError::Setup(format!("the token URL is invalid: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        other => {
            return Err(NermError::Setup(format!(
                "the token URL must use https (plain http is allowed only for loopback hosts), got {other}://"
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NermError::Setup("the token URL must not carry credentials".into()));
    }
    Ok(url)
}

pub type CredentialsFuture<'a> = Pin<Box<dyn Future<Output = Result<Credentials, NermError>> + Send + 'a>>;

/// Where the credentials are kept (a Secrets Manager secret, the CLI's environment and files).
pub trait CredentialSource: Send + Sync {
    /// The current credentials; `fresh` bypasses any cache, after they were refused.
    fn credentials(&self, fresh: bool) -> CredentialsFuture<'_>;
}

/// Where a CLI run's PAT secret comes from: a value (environment), or a file re-read when the
/// secret is refused, so a rotated file is picked up mid-run.
#[derive(Clone)]
pub enum SecretOrigin {
    Value(SecretToken),
    File(PathBuf),
}

/// A PAT given on the command line: token URL and client id fixed, the secret from its origin.
pub struct PatSource {
    token_url: Url,
    client_id: String,
    secret: SecretOrigin,
}

impl PatSource {
    /// Checks everything once, so a bad flag fails before any request.
    pub fn new(token_url: &str, client_id: &str, secret: SecretOrigin) -> Result<Self, NermError> {
        let source = PatSource { token_url: check_token_url(token_url)?, client_id: client_id.to_string(), secret };
        source.read()?;
        Ok(source)
    }

    fn read(&self) -> Result<PatCredentials, NermError> {
        let secret = match &self.secret {
            SecretOrigin::Value(s) => s.clone(),
            SecretOrigin::File(path) => read_secret_file(path)?,
        };
        PatCredentials::new(self.token_url.as_str(), &self.client_id, secret)
    }
}

fn read_secret_file(path: &std::path::Path) -> Result<SecretToken, NermError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NermError::Setup(format!("cannot read the client secret file {}: {e}", path.display())))?;
    Ok(SecretToken::new(text.trim()))
}

impl CredentialSource for PatSource {
    fn credentials(&self, _fresh: bool) -> CredentialsFuture<'_> {
        Box::pin(async move {
            let secret = match &self.secret {
                SecretOrigin::Value(s) => s.clone(),
                // A file read blocks: off the async workers, like any disk access.
                SecretOrigin::File(path) => {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || read_secret_file(&path))
                        .await
                        .map_err(|e| NermError::Setup(format!("reading the client secret file failed: {e}")))??
                }
            };
            PatCredentials::new(self.token_url.as_str(), &self.client_id, secret).map(Credentials::Pat)
        })
    }
}

/// An access token and when to stop using it (`Debug` shows no token: [`SecretToken`]).
#[derive(Clone, Debug)]
struct Issued {
    token: SecretToken,
    renew_at: Instant,
}

/// When to renew a token that lives `life`: before its last fifth, or a minute before it
/// expires, whichever is earlier — but never later than half-way, so a short-lived token is
/// not renewed on every request.
pub fn renewal_margin(life: Duration) -> Duration {
    (life / 5).max(Duration::from_secs(60).min(life / 2))
}

/// The token endpoint's answer (ISC sends more fields; only these matter).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Seconds; ISC's sample says 749. Missing means "assume five minutes".
    expires_in: Option<f64>,
}

/// The [`TokenProvider`] for a [`CredentialSource`]: API keys pass through, PATs are exchanged.
pub struct AccessTokens {
    source: Arc<dyn CredentialSource>,
    http: reqwest::Client,
    cached: Mutex<Option<Issued>>,
    /// Held while exchanging, so concurrent requests wait for one renewal.
    flight: tokio::sync::Mutex<()>,
    /// The next read of the source bypasses its cache (set when a token was refused).
    reread: AtomicBool,
    /// Credentials the token endpoint refused: asked again only once they change.
    refused: Mutex<Option<PatCredentials>>,
    exchanges: AtomicU64,
}

impl AccessTokens {
    pub fn new(source: Arc<dyn CredentialSource>, timeout: Duration) -> Result<Self, NermError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("nerm-employee-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NermError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(AccessTokens {
            source,
            http,
            cached: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            reread: AtomicBool::new(false),
            refused: Mutex::new(None),
            exchanges: AtomicU64::new(0),
        })
    }

    /// How many times a PAT was exchanged at the token endpoint (each attempt counts).
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<SecretToken> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached.as_ref().filter(|i| Instant::now() < i.renew_at).map(|i| i.token.clone())
    }

    async fn fetch(&self) -> Result<SecretToken, NermError> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let fresh = self.reread.swap(false, Ordering::SeqCst);
        let pat = match self.source.credentials(fresh).await? {
            Credentials::ApiKey(key) => return Ok(key),
            Credentials::Pat(pat) => pat,
        };
        let _flight = self.flight.lock().await;
        // Another request may have renewed the token while this one waited.
        if let Some(t) = self.current() {
            return Ok(t);
        }
        self.renew(pat).await
    }

    /// Exchanges `pat`; when it is refused, reads the source afresh once, in case it rotated.
    /// Credentials refused before are not sent again (no retry storm after a refusal).
    async fn renew(&self, pat: PatCredentials) -> Result<SecretToken, NermError> {
        if self.refused.lock().unwrap_or_else(|e| e.into_inner()).as_ref() == Some(&pat) {
            return Err(refused(&pat, None));
        }
        let first = self.exchange_and_keep(&pat).await;
        let Err(NermError::CredentialsRefused { .. }) = &first else { return first };
        match self.source.credentials(true).await? {
            Credentials::ApiKey(key) => Ok(key),
            Credentials::Pat(rotated) if rotated != pat => self.exchange_and_keep(&rotated).await,
            Credentials::Pat(_) => first,
        }
    }

    async fn exchange_and_keep(&self, pat: &PatCredentials) -> Result<SecretToken, NermError> {
        let issued = match self.exchange(pat).await {
            Ok(i) => i,
            Err(e) => {
                if let NermError::CredentialsRefused { .. } = e {
                    *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(pat.clone());
                }
                return Err(e);
            }
        };
        let token = issued.token.clone();
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(issued);
        Ok(token)
    }

    /// One `POST token_url` with the client credentials, form-encoded.
    async fn exchange(&self, pat: &PatCredentials) -> Result<Issued, NermError> {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", pat.client_id.as_str()),
            ("client_secret", pat.client_secret.expose()),
        ];
        let asked = Instant::now();
        let sent =
            self.http.post(pat.token_url.clone()).header(reqwest::header::ACCEPT, "application/json").form(&form);
        let resp = sent.send().await.map_err(|e| unavailable(pat, transport_cause(&e), None))?;
        let status = resp.status();
        let retry_after = super::client::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| unavailable(pat, transport_cause(&e), None))?;
        match status {
            s if s.is_success() => read_answer(pat, &bytes, asked),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(refused(pat, Some(status)))
            }
            s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                Err(unavailable(pat, s.to_string(), retry_after))
            }
            s => {
                Err(NermError::Protocol { route: route(pat), detail: format!("answered {s}; is the token URL right?") })
            }
        }
    }
}

fn route(pat: &PatCredentials) -> String {
    format!("POST {}", pat.token_url)
}

fn refused(pat: &PatCredentials, status: Option<StatusCode>) -> NermError {
    NermError::CredentialsRefused { token_url: pat.token_url.to_string(), status: status.map(|s| s.as_u16()) }
}

fn unavailable(pat: &PatCredentials, cause: String, retry_after: Option<Duration>) -> NermError {
    NermError::TokenUnavailable { token_url: pat.token_url.to_string(), cause, retry_after }
}

fn transport_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() { "timed out".into() } else { "no answer (connection failed or closed)".into() }
}

fn read_answer(pat: &PatCredentials, bytes: &[u8], asked: Instant) -> Result<Issued, NermError> {
    // serde's message names the missing field, never the token's value.
    let answer: TokenAnswer = serde_json::from_slice(bytes)
        .map_err(|e| NermError::Protocol { route: route(pat), detail: format!("not a token answer: {e}") })?;
    if answer.access_token.trim().is_empty() {
        return Err(NermError::Protocol { route: route(pat), detail: "the access token is empty".into() });
    }
    let secs = answer.expires_in.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(300.0).min(86_400.0);
    let life = Duration::from_secs_f64(secs);
    // Counted from before the request was sent: the token may have been issued any time since.
    let renew_at = asked + life - renewal_margin(life);
    Ok(Issued { token: SecretToken::new(answer.access_token.trim()), renew_at })
}

impl TokenProvider for AccessTokens {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(self.fetch())
    }

    fn refused(&self, token: &SecretToken, again: bool) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let ours = cached.as_ref().is_some_and(|i| &i.token == token);
        if ours {
            // Only the token that was refused: a 401 racing a renewal must not drop the new one.
            *cached = None;
        }
        // A refused API key, or a fresh access token refused too: the credentials may have rotated.
        if !ours || again {
            self.reread.store(true, Ordering::SeqCst);
            *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_at_four_fifths_or_a_minute_before_but_never_after_half_life() {
        let s = Duration::from_secs;
        assert_eq!(renewal_margin(s(720)), s(144), "12-minute ISC token: renewed after 576 s");
        assert_eq!(renewal_margin(s(200)), s(60), "a minute before is earlier than the last fifth");
        assert_eq!(renewal_margin(s(4)), s(2), "a 4 s token is renewed after 2 s, not on every request");
    }

    #[test]
    fn the_token_url_must_be_https_except_on_loopback_and_errors_do_not_echo_it() {
        assert!(check_token_url("https://acme.api.identitynow.com/oauth/token").is_ok());
        assert!(check_token_url("http://127.0.0.1:4010/oauth/token").is_ok());
        assert!(check_token_url("http://localhost/oauth/token").is_ok());
        let err = check_token_url("http://acme.api.identitynow.com/oauth/token?client_secret=s3cr3t").unwrap_err();
        assert!(err.to_string().contains("https") && !err.to_string().contains("s3cr3t"), "{err}");
        let err = check_token_url("https://id:s3cr3t@acme.api.identitynow.com/oauth/token").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn pat_credentials_never_print_the_client_secret() {
        let pat =
            PatCredentials::new("https://acme.api.identitynow.com/oauth/token", "cid", SecretToken::new("s3cr3t"))
                .unwrap();
        let shown = format!("{:?}", Credentials::Pat(pat));
        assert!(shown.contains("cid") && !shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn a_token_answer_without_expires_in_is_kept_five_minutes_less_the_margin() {
        let pat = PatCredentials::new("https://x.example/oauth/token", "cid", SecretToken::new("s")).unwrap();
        let asked = Instant::now();
        let issued = read_answer(&pat, br#"{"access_token":"abc","token_type":"bearer"}"#, asked).unwrap();
        assert_eq!(issued.renew_at, asked + Duration::from_secs(240));
        let err = read_answer(&pat, br#"{"token_type":"bearer"}"#, asked).unwrap_err();
        assert!(matches!(err, NermError::Protocol { .. }), "{err}");
    }
}
