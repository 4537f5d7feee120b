//! Everything about the simulator that a test may want to change: tokens, the behaviours NERM's
//! documentation leaves open (docs/nerm-api.md, "Open questions, and the simulator switch for
//! each"; every one configurable), and the load/fault knobs.
//!
//! The whole config is plain serde data, so the same struct is read from a TOML file at start
//! and merged from a JSON patch at run time (`PATCH /_sim/config`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// API tokens accepted as `Bearer <t>` or `Token token=<t>`.
    pub tokens: Vec<String>,
    /// Check every `/api` request and response body against the OpenAPI document (strict:
    /// undeclared fields count) and record violations in `/_sim/stats`.
    pub spec_check: bool,
    pub behaviour: Behaviour,
    pub faults: Faults,
    /// The ISC token endpoint and the PAT it accepts (none: `POST /oauth/token` answers 404).
    pub oauth: Option<crate::oauth::OAuthClient>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tokens: vec!["sim-token".into()],
            spec_check: true,
            behaviour: Behaviour::default(),
            faults: Faults::default(),
            oauth: None,
        }
    }
}

/// The assumptions taken for docs/nerm-api.md, "Open questions, and the simulator switch for each"'s open questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Largest page any list returns; larger `limit`s are clamped (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub page_max: usize,
    /// Page size when `limit` is absent.
    pub page_default: usize,
    /// Largest bulk body accepted; more items → 400 (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub bulk_max: usize,
    /// Sync or async for `POST/PATCH /profiles` (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub job_mode_profiles: JobMode,
    /// Sync or async for the other bulk endpoints.
    pub job_mode_other: JobMode,
    /// How long a queued job waits before it runs (a `POST /_sim/jobs/run` runs them at once).
    pub job_delay_ms: u64,
    /// Bulk bodies fail whole instead of per record (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub bulk_all_or_nothing: bool,
    /// The tenant toggle "ISC role assignment management using entitlements" (docs/nerm-api.md, "Roles under SSO").
    pub isc_entitlement_mode: bool,
    /// An ISC-local (non-IdP) login keeps API-assigned roles (the older report, docs/nerm-api.md, "Roles under SSO").
    pub isc_local_keeps_roles: bool,
    /// Answer the legacy 400 at the end of `after_id` paging instead of `after_id: null` (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub after_id_legacy_400: bool,
    /// A second `owner` on a profile replaces the first instead of failing (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub owner_replaces: bool,
    /// Enforce the profile type's duplicate-detection attributes on create (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub enforce_dup_protection: bool,
    /// Emit `archived` on profiles (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub emit_profile_archived: bool,
    // ----- tenant variants the documentation allows; all off by default --------------------
    /// Answers carry fields the spec does not declare (on records, lists, `_metadata`, jobs).
    pub extra_fields: bool,
    /// Profile attributes hold other JSON than strings: numeric values as numbers, unset
    /// attributes as `null`, and extra attributes holding a number, a boolean, a list and an
    /// object.
    pub odd_attribute_values: bool,
    /// `job_data` lists its entries in reverse order, with only the keys the spec documents
    /// (`user_id`, `manager_id`, `errors`).
    pub job_data_spec_only: bool,
    /// How a PATCH that changes nothing is answered.
    pub no_change_answer: NoChangeAnswer,
    /// `Retry-After` on a 429 as an HTTP date instead of seconds.
    pub retry_after_http_date: bool,
    /// `offset=0` is refused with a 400, as the spec's `minimum: 1` says (the docs call 0 the
    /// first page).
    pub offset_minimum_one: bool,
    /// The status a job shows once it has run (its items applied as usual): `complete`, or an
    /// undocumented end state such as `failed` or `error`.
    pub job_end_status: String,
}

/// The shapes NERM may answer a PATCH that changes nothing with ("200 – No Change").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoChangeAnswer {
    /// The usual envelope with the unchanged record.
    #[default]
    Record,
    /// `{"info": "No Change"}`; a bulk answer leaves unchanged records out.
    Info,
    /// `{}`; a bulk answer leaves unchanged records out.
    Empty,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            page_max: 500,
            page_default: 100,
            bulk_max: 100,
            job_mode_profiles: JobMode::Never,
            job_mode_other: JobMode::Threshold(100),
            job_delay_ms: 200,
            bulk_all_or_nothing: false,
            isc_entitlement_mode: false,
            isc_local_keeps_roles: false,
            after_id_legacy_400: false,
            owner_replaces: false,
            enforce_dup_protection: false,
            emit_profile_archived: false,
            extra_fields: false,
            odd_attribute_values: false,
            job_data_spec_only: false,
            no_change_answer: NoChangeAnswer::Record,
            retry_after_http_date: false,
            offset_minimum_one: false,
            job_end_status: "complete".into(),
        }
    }
}

/// When a bulk call answers with a job ticket instead of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobMode {
    Never,
    Always,
    /// Bodies of at least N items become jobs.
    Threshold(usize),
}

impl JobMode {
    pub fn is_job(self, items: usize) -> bool {
        match self {
            JobMode::Never => false,
            JobMode::Always => true,
            JobMode::Threshold(n) => items >= n,
        }
    }
}

impl fmt::Display for JobMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobMode::Never => f.write_str("never"),
            JobMode::Always => f.write_str("always"),
            JobMode::Threshold(n) => write!(f, "threshold:{n}"),
        }
    }
}

impl std::str::FromStr for JobMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(JobMode::Never),
            "always" => Ok(JobMode::Always),
            other => other
                .strip_prefix("threshold:")
                .and_then(|n| n.parse().ok())
                .map(JobMode::Threshold)
                .ok_or_else(|| format!("job mode must be never, always or threshold:N, got {other:?}")),
        }
    }
}

impl Serialize for JobMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Load and fault realism; every field can change while the server runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every `/api` request.
    pub latency_ms: u64,
    /// Uniform random extra latency, 0..=jitter.
    pub latency_jitter_ms: u64,
    /// Token bucket per API token; `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// Probability of a 500/502/503 before the request is processed.
    pub error_rate: f64,
    /// Probability of a 429 (with `Retry-After`) regardless of the bucket.
    pub throttle_rate: f64,
    /// `Retry-After` seconds sent with random 429s.
    pub throttle_retry_after_secs: u64,
    /// Probability that a request is held for `slow_ms` before it is processed.
    pub slow_rate: f64,
    pub slow_ms: u64,
    /// Probability that the connection is closed without any response.
    pub drop_rate: f64,
    /// Probability that a write is applied and then answered with a 500 or a reset.
    pub commit_then_fail_rate: f64,
    pub commit_then_fail_mode: CommitFailMode,
    /// Every `/api` request gets 503 (NERM down).
    pub down: bool,
    /// Seed for the fault dice; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Faults forced on chosen requests ahead of the dice, for tests that need one exact
    /// sequence: each entry is used up by the next request to its route.
    pub script: Vec<ScriptedFault>,
}

/// A fault for the next request to `route` (`"POST /api/user_managers"`, as in `/_sim/stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    pub route: String,
    pub fault: FaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// No fault: the request goes through untouched (skips a request in a script).
    None,
    Error,
    Throttle,
    Drop,
    Slow,
    /// Only for writes; a GET goes through untouched.
    CommitThenFail,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            latency_jitter_ms: 0,
            rate_limit: Some(RateLimit::default()),
            error_rate: 0.0,
            throttle_rate: 0.0,
            throttle_retry_after_secs: 1,
            slow_rate: 0.0,
            slow_ms: 35_000,
            drop_rate: 0.0,
            commit_then_fail_rate: 0.0,
            commit_then_fail_mode: CommitFailMode::Either,
            down: false,
            seed: None,
            script: Vec::new(),
        }
    }
}

/// `requests` per `per_seconds` window, refilled continuously (the ISC gateway figure by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub per_seconds: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { requests: 100, per_seconds: 10 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitFailMode {
    /// The write is applied, the answer is a 500.
    Error500,
    /// The write is applied, the connection is closed without an answer.
    Reset,
    /// Either, at random.
    Either,
}

impl SimConfig {
    /// Applies a JSON merge patch (RFC 7386) and checks the result still parses.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<SimConfig, String> {
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        merge(&mut current, patch);
        let next: SimConfig = serde_json::from_value(current).map_err(|e| e.to_string())?;
        next.validate()?;
        Ok(next)
    }

    pub fn validate(&self) -> Result<(), String> {
        let f = &self.faults;
        for (name, p) in [
            ("error_rate", f.error_rate),
            ("throttle_rate", f.throttle_rate),
            ("slow_rate", f.slow_rate),
            ("drop_rate", f.drop_rate),
            ("commit_then_fail_rate", f.commit_then_fail_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("faults.{name} must be a probability in 0..=1, got {p}"));
            }
        }
        if let Some(rl) = f.rate_limit
            && (rl.requests == 0 || rl.per_seconds == 0)
        {
            return Err("faults.rate_limit needs requests > 0 and per_seconds > 0 (omit it to turn it off)".into());
        }
        if self.oauth.as_ref().is_some_and(|o| o.token_lifetime_s == 0 || o.client_id.is_empty()) {
            return Err("oauth needs a client_id and token_lifetime_s > 0".into());
        }
        let b = &self.behaviour;
        if b.page_max == 0 || b.page_default == 0 || b.bulk_max == 0 {
            return Err("behaviour.page_max, page_default and bulk_max must be > 0".into());
        }
        Ok(())
    }
}

fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.insert(k.clone(), serde_json::Value::Null);
                } else {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_changes_only_the_named_knobs() {
        let cfg = SimConfig::default();
        let next = cfg.merged(&serde_json::json!({"faults": {"error_rate": 0.5, "rate_limit": null}})).unwrap();
        assert_eq!(next.faults.error_rate, 0.5);
        assert_eq!(next.faults.rate_limit, None);
        assert_eq!(next.behaviour, cfg.behaviour);
    }

    #[test]
    fn a_probability_above_one_is_refused() {
        let err = SimConfig::default().merged(&serde_json::json!({"faults": {"drop_rate": 2.0}})).unwrap_err();
        assert!(err.contains("drop_rate"), "{err}");
    }

    #[test]
    fn job_modes_round_trip_through_their_text_form() {
        for m in [JobMode::Never, JobMode::Always, JobMode::Threshold(7)] {
            assert_eq!(m.to_string().parse::<JobMode>().unwrap(), m);
        }
        assert!("sometimes".parse::<JobMode>().is_err());
    }
}
