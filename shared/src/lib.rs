//! The nerm-employee-sync engine, shared by the Lambdas and the `nerm-sync` CLI.
//!
//! Three floors, imports only run downward: wiring (functions, CLI) on top, the engine's
//! stages (read+validate, plan, apply) in the middle, leaves at the bottom (mapping config,
//! report, the NERM client, AWS adapters behind ports).

#[cfg(feature = "aws")]
pub mod aws;
pub mod config;
pub mod engine;
pub mod env;
pub mod input;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod login;
pub mod metrics;
pub mod nerm;
pub mod pipeline;
pub mod ports;
pub mod report;
pub mod report_page;
