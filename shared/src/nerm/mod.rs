//! The NERM REST client: a leaf of the engine, and the only code that knows HTTP and NERM's
//! envelopes (`docs/nerm-api.md`). Everything above it works with the typed records in [`model`].

pub mod auth;
pub mod client;
pub mod error;
pub mod model;
pub mod token;
pub mod write;

pub use auth::{AccessTokens, CredentialSource, Credentials, PatCredentials, PatSource, SecretOrigin};
pub use client::{ClientOptions, ClientStats, NermClient, PageProbe, check_base_url};
pub use error::NermError;
pub use token::{SecretToken, StaticToken, TokenProvider};
pub use write::{BulkAnswer, Collection, Identity, JobEntry, Listing, Write, WriteKind};
