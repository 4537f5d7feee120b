//! Where the Bearer token of each NERM request comes from: a port filled by a fixed API key
//! (CLI: environment or file) or by [`super::auth::AccessTokens`] (Secrets Manager, ISC PATs).
//! The token itself never prints.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use super::error::NermError;

/// A credential whose `Debug`/`Display` never reveal it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(token: impl Into<String>) -> Self {
        SecretToken(token.into())
    }
    /// The raw value, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(***)")
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<SecretToken, NermError>> + Send + 'a>>;

/// Supplies the token; after a 401 the client reports it with [`TokenProvider::refused`] and asks
/// again, twice at most.
pub trait TokenProvider: Send + Sync {
    fn token(&self) -> TokenFuture<'_>;
    /// NERM answered 401 to `token`: the next [`TokenProvider::token`] must not return it.
    /// `again`: a token fetched after an earlier 401 was refused too, so the credentials
    /// themselves may have rotated and must be read afresh.
    fn refused(&self, token: &SecretToken, again: bool);
}

/// A fixed token (CLI: `NERM_TOKEN` or `--token-file`); a refresh re-reads the file if any.
pub struct StaticToken {
    token: std::sync::RwLock<SecretToken>,
    file: Option<std::path::PathBuf>,
}

impl StaticToken {
    pub fn new(token: SecretToken) -> Self {
        StaticToken { token: std::sync::RwLock::new(token), file: None }
    }

    /// Reads the token from a file (trimmed); re-read after a 401 so a rotated file is picked up.
    pub fn from_file(path: impl Into<std::path::PathBuf>) -> Result<Self, NermError> {
        let path = path.into();
        let token = read_token_file(&path)?;
        Ok(StaticToken { token: std::sync::RwLock::new(token), file: Some(path) })
    }
}

fn read_token_file(path: &std::path::Path) -> Result<SecretToken, NermError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NermError::Setup(format!("cannot read the token file {}: {e}", path.display())))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(NermError::Setup(format!("the token file {} is empty", path.display())));
    }
    Ok(SecretToken::new(t))
}

impl TokenProvider for StaticToken {
    fn token(&self) -> TokenFuture<'_> {
        let t = self.token.read().unwrap_or_else(|e| e.into_inner()).clone();
        Box::pin(async move { Ok(t) })
    }
    fn refused(&self, _token: &SecretToken, _again: bool) {
        if let Some(path) = &self.file
            && let Ok(t) = read_token_file(path)
        {
            *self.token.write().unwrap_or_else(|e| e.into_inner()) = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_token_never_prints_its_value() {
        let t = SecretToken::new("s3cr3t-value");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert!(!format!("{t}").contains("s3cr3t"));
        assert_eq!(t.expose(), "s3cr3t-value");
    }
}
