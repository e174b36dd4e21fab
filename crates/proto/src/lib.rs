//! Generated gRPC code for Suanli's services. Generated code only: mapping to the domain lives
//! beside each service in the server crate. Depends on tonic and prost only; only the server,
//! the CLI and the load generator depend on it, never the domain, the store or the use cases.

#![allow(clippy::all, clippy::pedantic, reason = "generated code")]

pub mod v1 {
    tonic::include_proto!("suanli.v1");
}

/// The encoded file descriptor set of every Suanli proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/suanli_descriptor.bin"));
