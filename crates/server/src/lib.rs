//! The Suanli service: `serve` and what it wires — the gRPC services (one module per service
//! under `grpc/`, each with its proto ↔ use-case mapping), the web console, authentication,
//! limits, metrics and configuration. Use cases and their transactions live in `suanli_app`;
//! this crate only maps requests onto them and their errors onto statuses.
//!
//! May depend on `suanli-app`, `suanli-store`, `suanli-domain` and `suanli-proto`; never on the
//! `suanli` CLI crate above it. Tests start the server in-process through [`serve::start`].

pub mod auth;
pub mod config;
pub mod console;
pub mod grpc;
pub mod limits;
pub mod metrics;
pub mod serve;
