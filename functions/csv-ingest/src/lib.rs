//! The `csv-ingest` Lambda: S3 ObjectCreated → validate, plan, fan out over SQS. The handler takes its dependencies as a struct, so tests drive it
//! with real events against moto and the NERM simulator.

pub mod config;
pub mod handler;
