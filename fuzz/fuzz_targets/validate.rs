//! Fuzzes record validation: records that parse are validated against the worked registry
//! (`usage::validate`), which accepts or rejects them by name, never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use suanli_domain::Registry;
use suanli_domain::usage::{UsageFields, parse_fields, validate};

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    Registry::from_toml(
        "worked.toml",
        include_str!("../../examples/worked/registry.toml"),
    )
    .expect("the worked registry loads")
    .0
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Seeds the fields with the registry's ids so the fuzzer reaches past the unknown-id checks.
    let mut f: Vec<&str> = text.splitn(6, ',').collect();
    f.resize(6, "");
    if let Ok(record) = parse_fields(UsageFields {
        provider: "dc-a",
        record_id: f[0],
        beneficiary: "ent-d",
        sku: f[1],
        start: f[2],
        end: f[3],
        quantity: f[4],
        amount: f[5],
    }) {
        let _ = validate(&REGISTRY, &record);
    }
});
