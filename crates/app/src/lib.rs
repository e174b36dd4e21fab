//! The use cases of Suanli: ingest (the writer thread and its group commit), settlement runs
//! and the explanation of their lines, the ledger and payments, balances and overviews, and
//! the actor of an action for the audit log.
//! Every store transaction is opened here; each use case reads, asks `suanli_domain` to decide,
//! and writes in one transaction.
//!
//! Transport-free: this crate depends on `suanli-domain` and `suanli-store`, never on tonic,
//! axum, clap or the protobuf crates (`tests/purity.rs` checks its dependency list). The server
//! maps its requests onto these functions.

pub mod access;
pub mod audit;
pub mod balances;
pub mod explain;
pub mod ingest;
pub mod ledger;
mod maintained;
pub mod metrics;
pub mod opening;
pub mod password;
mod posted;
pub mod reasons;
pub mod registry;
pub mod seal;
pub mod settlement;
pub mod statement;
pub mod totp;
pub mod usage;
pub mod users;
