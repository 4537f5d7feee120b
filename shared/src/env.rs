//! Reading settings from the environment (the Lambdas' configuration), with errors that name
//! the variable.

/// Why a setting could not be read; the message names the variable (and the value, never a
/// secret: only numbers are parsed here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {name} is not set")]
    Missing { name: String },
    #[error("environment variable {name} must be a whole number, got {value:?}")]
    NotANumber { name: String, value: String },
}

/// Where settings come from: the process environment ([`Env::process`]) or, in tests, any
/// lookup ([`Env::from_fn`]), which also lets a test see every name a function asks for.
pub struct Env<'a> {
    lookup: Box<Lookup<'a>>,
}

/// A variable's value by name.
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

impl Env<'static> {
    /// The process environment (a Lambda's configuration).
    pub fn process() -> Env<'static> {
        Env::from_fn(|name| std::env::var(name).ok())
    }
}

impl<'a> Env<'a> {
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Env<'a> {
        Env { lookup: Box::new(lookup) }
    }

    /// A required, non-blank variable.
    pub fn var(&self, name: &str) -> Result<String, EnvError> {
        self.var_opt(name).ok_or_else(|| EnvError::Missing { name: name.to_string() })
    }

    /// An optional variable; blank counts as unset.
    pub fn var_opt(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    pub fn var_or(&self, name: &str, default: &str) -> String {
        self.var_opt(name).unwrap_or_else(|| default.to_string())
    }

    /// A whole number, `default` when unset.
    pub fn number(&self, name: &str, default: u32) -> Result<u32, EnvError> {
        match self.var_opt(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| EnvError::NotANumber { name: name.to_string(), value: v }),
        }
    }

    /// The ingest's share of NERM's rate limit (requests per 10 s) while a run is being
    /// provisioned: `NERM_REQUESTS_PER_10S` divided by every instance that may call NERM then, the
    /// provisioners (`PROVISIONER_MAX_CONCURRENCY`) and the ingests (`INGEST_RESERVED_CONCURRENCY`).
    /// The provisioners themselves pace to the whole limit between them (nerm-provisioner's config).
    pub fn nerm_share_per_10s(&self) -> Result<u32, EnvError> {
        let total = self.number("NERM_REQUESTS_PER_10S", 100)?.max(1);
        let provisioners = self.number("PROVISIONER_MAX_CONCURRENCY", 4)?.max(1);
        let ingests = self.number("INGEST_RESERVED_CONCURRENCY", 1)?.max(1);
        Ok((total / (provisioners + ingests)).max(1))
    }
}

/// An optional variable of the process environment; blank counts as unset.
pub fn var_opt(name: &str) -> Option<String> {
    Env::process().var_opt(name)
}

/// Writes a function's CloudWatch metrics (counts, dimension `Function`); see [`crate::metrics`].
pub fn emit_metrics(function: &str, metrics: &[(&str, u64)]) {
    let counts: Vec<_> = metrics.iter().map(|&(name, value)| crate::metrics::Metric::count(name, value)).collect();
    crate::metrics::emit(&[("Function", function)], &counts);
}
