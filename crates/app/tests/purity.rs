//! Proves the crate arrows point only downward (cli → server → app → store → domain) and that
//! the use cases stay transport-free: `app` names no RPC, HTTP, CLI or protobuf crate, and no
//! lower crate names a higher one (ARCHITECTURE.md).

fn dependencies(manifest: &str) -> Vec<String> {
    let table = manifest
        .split("\n[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .split("\n[")
        .next()
        .unwrap();
    table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['=', '.', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn assert_none(crate_name: &str, manifest: &str, forbidden: &[&str]) {
    let deps = dependencies(manifest);
    for f in forbidden {
        assert!(
            !deps.iter().any(|d| d == f),
            "crates/{crate_name} must not depend on {f}; its dependencies: {deps:?}"
        );
    }
}

#[test]
fn app_is_transport_free() {
    assert_none(
        "app",
        include_str!("../Cargo.toml"),
        &[
            "tonic",
            "tonic-health",
            "tonic-reflection",
            "prost",
            "prost-types",
            "axum",
            "hyper",
            "http",
            "http-body",
            "tower",
            "clap",
            "reqwest",
            "suanli-proto",
        ],
    );
}

#[test]
fn crate_arrows_point_only_downward() {
    assert_none(
        "domain",
        include_str!("../../domain/Cargo.toml"),
        &[
            "suanli-store",
            "suanli-app",
            "suanli-server",
            "suanli",
            "suanli-proto",
        ],
    );
    assert_none(
        "store",
        include_str!("../../store/Cargo.toml"),
        &["suanli-app", "suanli-server", "suanli", "suanli-proto"],
    );
    assert_none(
        "app",
        include_str!("../Cargo.toml"),
        &["suanli-server", "suanli"],
    );
    assert_none(
        "server",
        include_str!("../../server/Cargo.toml"),
        &["suanli"],
    );
    // The arrows that must exist, so the test notices a manifest it cannot read.
    assert!(dependencies(include_str!("../Cargo.toml")).contains(&"suanli-store".to_owned()));
    assert!(
        dependencies(include_str!("../../server/Cargo.toml")).contains(&"suanli-app".to_owned())
    );
    assert!(
        dependencies(include_str!("../../cli/Cargo.toml")).contains(&"suanli-server".to_owned())
    );
}
