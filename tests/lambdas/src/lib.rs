//! What the local stack's tests and tools share beyond the test harness: a local Lambda
//! Runtime API to run the real function binaries without Docker.

pub mod runtime_api;
