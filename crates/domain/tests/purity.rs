//! Proves the domain core stays pure: its normal dependencies name no I/O, async, database or
//! RPC crate (ARCHITECTURE.md, invariants).

#[test]
fn domain_depends_on_no_io_async_database_or_rpc_crate() {
    let manifest = include_str!("../Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .split("\n[")
        .next()
        .unwrap();
    for forbidden in [
        "tokio", "sqlx", "tonic", "prost", "rusqlite", "postgres", "axum", "hyper", "reqwest",
        "futures",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(forbidden)),
            "crates/domain must not depend on {forbidden}"
        );
    }
}
