//! Robustness of the untrusted-input paths (as the fuzz targets): for arbitrary strings the CSV
//! usage parser (`usage::parse_fields`), the registry loader (`Registry::from_toml`) and record
//! validation (`usage::validate`) return a value or a named error and never panic. These are
//! the fuzz targets in `fuzz/` as proptest properties, so they run in every `cargo test`.

use proptest::prelude::*;
use suanli_domain::Registry;
use suanli_domain::usage::{UsageFields, parse_fields, validate};

const WORKED: &str = include_str!("../../../examples/worked/registry.toml");

fn worked() -> Registry {
    Registry::from_toml("worked.toml", WORKED)
        .expect("the worked registry loads")
        .0
}

/// Field text mixing plausible values (so parsing gets past the first check) with noise.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9-]{0,12}",
        "-?[0-9]{0,20}(\\.[0-9]{0,6})?",
        "(19|20|21|99)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
        Just("dc-a".to_owned()),
        Just("ent-d".to_owned()),
        Just("a-dom".to_owned()),
        Just("2025-03-01T00:00:00+08:00".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    // Proves arbitrary CSV fields are parsed or rejected by name, and a parsed record is
    // validated against a real registry without panicking.
    #[test]
    fn usage_fields_never_panic(fields in proptest::collection::vec(field(), 8)) {
        let registry = worked();
        let parsed = parse_fields(UsageFields {
            provider: &fields[0],
            record_id: &fields[1],
            beneficiary: &fields[2],
            sku: &fields[3],
            start: &fields[4],
            end: &fields[5],
            quantity: &fields[6],
            amount: &fields[7],
        });
        if let Ok(record) = parsed {
            let _ = validate(&registry, &record);
        }
    }

    // Proves arbitrary text, and the worked registry with arbitrary text spliced in, loads or
    // fails with errors, never a panic.
    #[test]
    fn registry_text_never_panics(noise in any::<String>(), at in 0usize..WORKED.len()) {
        let _ = Registry::from_toml("noise.toml", &noise);
        let at = (0..=at).rev().find(|i| WORKED.is_char_boundary(*i)).unwrap_or(0);
        let spliced = format!("{}{noise}{}", &WORKED[..at], &WORKED[at..]);
        let _ = Registry::from_toml("spliced.toml", &spliced);
    }
}
