//! A stateful simulator of the SailPoint NERM REST API for tests, demos and benchmarks.
//!
//! No real tenant is reachable from our machines or CI, so this crate stands in for one,
//! strictly enough that a client passing against it works against NERM: shapes follow the
//! official OpenAPI document (checked by [`spec`] in tests) and behaviour follows what the
//! project records in docs/nerm-api.md, with every open question a [`config`] switch.
//! Nothing in `shared/` or `functions/` depends on it.

pub mod api;
pub mod config;
pub mod error;
pub mod model;
pub mod oauth;
pub mod seed;
pub mod server;
pub mod spec;
pub mod tenant;

pub use config::{Behaviour, CommitFailMode, FaultKind, Faults, JobMode, RateLimit, ScriptedFault, SimConfig};
pub use oauth::OAuthClient;
pub use seed::Seed;
pub use server::{Running, Sim, Stats, router, start};
