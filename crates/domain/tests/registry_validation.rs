//! Registry loading: every rejection names the key path and the reason; valid files load.

use suanli_domain::Registry;

const BASE: &str = include_str!("../../../examples/hangzhou-2025.toml");

/// Loads `text` and returns "path: reason" lines, or panics when it loads.
fn errors(text: &str) -> Vec<String> {
    match Registry::from_toml("r.toml", text) {
        Ok(_) => panic!("registry should be rejected"),
        Err(e) => {
            assert_eq!(e.file, "r.toml");
            e.errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.reason))
                .collect()
        }
    }
}

fn assert_error(text: &str, path: &str, reason_part: &str) {
    let errs = errors(text);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(reason_part)),
        "expected an error at {path} containing {reason_part:?}, got {errs:#?}"
    );
}

#[test]
fn shipped_examples_load() {
    // Proves both shipped registries are valid and hashed.
    for (name, text) in [
        ("hz", BASE),
        (
            "004",
            include_str!("../../../examples/service-voucher-004.toml"),
        ),
    ] {
        let (registry, warnings) =
            Registry::from_toml(name, text).unwrap_or_else(|e| panic!("{e}"));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(registry.content_hash.len(), 64);
    }
}

#[test]
fn ratio_outside_unit_interval() {
    // Proves ratios must lie in [0, 1].
    assert_error(
        &BASE.replace(r#"ratio = "0.20" }"#, r#"ratio = "1.20" }"#),
        "programme[0].rates[1].ratio",
        "outside [0, 1]",
    );
    assert_error(
        &BASE.replace(r#"ratio = "0.20" }"#, r#"ratio = "-0.1" }"#),
        "programme[0].rates[1].ratio",
        "outside [0, 1]",
    );
}

#[test]
fn ceiling_below_primary_ratio() {
    // Proves R5: a combined ceiling may not be below the primary's own ratio.
    assert_error(
        &BASE.replace(
            r#"chip_origin = "domestic", ratio = "0.45""#,
            r#"chip_origin = "domestic", ratio = "0.25""#,
        ),
        "stacking[0].ceilings[0].ratio",
        "below the primary",
    );
}

#[test]
fn unknown_references() {
    // Proves references to unknown ids are named.
    assert_error(
        &BASE.replace(r#"provider = "dc-linping""#, r#"provider = "dc-nowhere""#),
        "sku[1].provider",
        "unknown provider",
    );
    assert_error(
        &BASE.replace(r#"top_up = "hz-municipal-2025""#, r#"top_up = "hz-x""#),
        "stacking[0].top_up",
        "unknown programme",
    );
    assert_error(
        &BASE.replace("beneficiary = \"uni-zju-lab\"", "beneficiary = \"uni-x\""),
        "grant[2].beneficiary",
        "unknown beneficiary",
    );
}

#[test]
fn duplicate_ids() {
    // Proves duplicate ids are rejected at the second definition.
    assert_error(
        &BASE.replace(r#"id = "dc-linping""#, r#"id = "dc-xiaoshan""#),
        "provider[1].id",
        "duplicate id",
    );
    assert_error(
        &BASE.replace(r#"id = "lp-h800""#, r#"id = "xs-ascend-910b""#),
        "sku[1].id",
        "duplicate id",
    );
}

#[test]
fn ambiguous_rates_of_equal_specificity() {
    // Proves two entries naming as many keys, matching one line, with different ratios are refused.
    let text = BASE.replace(
        r#"{ category = "model",   ratio = "0.30" },"#,
        r#"{ category = "model",   ratio = "0.30" }, { category = "model", ratio = "0.25" },"#,
    );
    assert_error(&text, "programme[1].rates[3]", "ambiguous");
    // The same ratio twice is harmless.
    let same = BASE.replace(
        r#"{ category = "model",   ratio = "0.30" },"#,
        r#"{ category = "model",   ratio = "0.30" }, { category = "model", ratio = "0.30" },"#,
    );
    assert!(Registry::from_toml("r.toml", &same).is_ok());
}

#[test]
fn grant_for_kind_not_admitted() {
    // Proves a grant must fit the programme's beneficiary kinds.
    let text = format!(
        "{BASE}\n[[grant]]\nbeneficiary = \"uni-zju-lab\"\nprogramme = \"hz-municipal-2025\"\n"
    );
    assert_error(
        &text,
        "grant[3].programme",
        "does not admit beneficiary kind university",
    );
}

#[test]
fn money_precision_and_sign() {
    // Proves money has at most 2 decimals and is never negative; floats are refused.
    assert_error(
        &BASE.replace(r#"pool = "250000000.00""#, r#"pool = "250000000.001""#),
        "programme[0].pool",
        "more than 2 decimals",
    );
    assert_error(
        &BASE.replace(
            r#"beneficiary_cap = "8000000.00""#,
            r#"beneficiary_cap = "-1.00""#,
        ),
        "programme[0].beneficiary_cap",
        "negative",
    );
    assert_error(
        &BASE.replace(r#"list_price = "18.00""#, r#"list_price = 18.5"#),
        "sku[0].list_price",
        "float",
    );
    assert_error(
        &BASE.replace(r#"list_price = "18.00""#, r#"list_price = "18.005""#),
        "sku[0].list_price",
        "more than 2 decimals",
    );
}

#[test]
fn classification_and_enumerations() {
    // Proves SKU classification is complete and enumerations are checked.
    assert_error(
        &BASE.replace(r#"chip_origin = "domestic"             #"#, "#"),
        "sku[0].chip_origin",
        "must say its chip_origin",
    );
    assert_error(
        &BASE.replace(r#"funder = "national""#, r#"funder = "galactic""#),
        "programme[1].funder",
        "not one of",
    );
    assert_error(
        &BASE.replace(r#"shares sum to 1"#, "").replace(
            r#"share = "0.5" }, { funder = "district""#,
            r#"share = "0.6" }, { funder = "district""#,
        ),
        "programme[0].funding",
        "sum to 1.1",
    );
}

#[test]
fn syntax_errors_name_the_position() {
    // Proves a TOML syntax error names line and column.
    let errs = errors("[[programme]]\nid = \n");
    assert!(errs[0].starts_with("line 2"), "{errs:?}");
}

#[test]
fn type_errors_name_the_key_path() {
    // Proves a value of the wrong type names the key, not only the position.
    let errs = errors(&BASE.replacen("year = 2025", r#"year = "2025""#, 1));
    assert!(errs[0].contains("(programme[0].year)"), "{errs:?}");
    assert!(errs[0].starts_with("line "), "{errs:?}");
}

#[test]
fn unknown_keys_are_warnings() {
    // Proves a misspelt key is reported (a typo could hide a cap) without refusing the file.
    let text = BASE.replace(
        r#"beneficiary_cap = "8000000.00""#,
        r#"beneficary_cap = "8000000.00""#,
    );
    let (_, warnings) = Registry::from_toml("r.toml", &text).expect("loads");
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].path, "programme[0].beneficary_cap");
}
