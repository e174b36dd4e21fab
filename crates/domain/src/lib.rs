//! Suanli's domain core: money, the registry, usage validation, the subsidy engine and the
//! ledger model. Pure Rust: no I/O, no async, no database or RPC types (ARCHITECTURE.md);
//! it depends on no other Suanli crate (`tests/purity.rs`).

pub mod audit;
pub mod capacity;
pub mod intake;
pub mod ledger;
pub mod money;
pub mod registry;
pub mod registry_patch;
pub mod restatement;
pub mod settlement;
pub mod usage;

pub use money::Fen;
pub use registry::Registry;
