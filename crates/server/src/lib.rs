//! The `suanli` server library: the gRPC services, authentication, the group-commit writer and
//! metrics. The binary (`main.rs`) adds the CLI; tests start the server in-process through
//! [`serve::start`].

pub mod auth;
pub mod config;
pub mod console;
pub mod grpc;
pub mod limits;
pub mod metrics;
pub mod serve;
