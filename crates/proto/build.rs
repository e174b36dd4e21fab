//! Compiles the protos with protox (no system protoc) and writes the descriptor set for
//! server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() {
    // Read at run time, not baked in when the script was compiled: a build directory copied
    // to another checkout must compile that checkout's protos.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let root = PathBuf::from(manifest).join("../../proto");
    let files = [
        "suanli/v1/metering.proto",
        "suanli/v1/registry.proto",
        "suanli/v1/settlement.proto",
    ];
    let paths: Vec<PathBuf> = files.iter().map(|f| root.join(f)).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let fds = protox::compile(&paths, [&root]).expect("protos compile");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("suanli_descriptor.bin"), fds.encode_to_vec())
        .expect("write descriptor set");
    tonic_prost_build::configure()
        .compile_fds(fds)
        .expect("generate code");
}
