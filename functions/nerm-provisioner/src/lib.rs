//! The `nerm-provisioner` Lambda: SQS batches of employee plans → NERM, with partial batch failures. The handler takes its dependencies as a struct, so tests drive it
//! with real events against moto and the NERM simulator.

pub mod config;
pub mod handler;
