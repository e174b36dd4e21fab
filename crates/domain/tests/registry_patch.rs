//! Proves a registry patch replaces same-id beneficiaries and grants, adds new ones, keeps the
//! rest of the text, and refuses what it cannot merge with an error naming the entry.

use suanli_domain::Registry;
use suanli_domain::registry_patch::{PatchSummary, merge};

const BASE: &str = r#"# The city's registry.
[[programme]]
id = "city-2025"
funder = "municipal"
year = 2025
beneficiary_kinds = ["enterprise", "university"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.30" } ]

[[provider]]
id = "dc-a"

# Beneficiaries.
[[beneficiary]]
id = "ent-a"
name = "A"
kind = "enterprise"

[[beneficiary]]
id = "ent-b"
kind = "enterprise"

[[grant]]
beneficiary = "ent-a"
programme = "city-2025"
"#;

#[test]
fn a_patch_replaces_same_id_entries_and_adds_the_others() {
    let fragment = r#"
[[beneficiary]]
id = "ent-b"
name = "B renamed"
kind = "university"
district = "xihu"

[[beneficiary]]
id = "ent-c"
kind = "enterprise"

[[grant]]
beneficiary = "ent-a"
programme = "city-2025"
cap = "100.00"

[[grant]]
beneficiary = "ent-c"
programme = "city-2025"
"#;
    let (text, summary) = merge("patch.toml", BASE, fragment).expect("merges");
    assert_eq!(
        summary,
        PatchSummary {
            beneficiaries_added: 1,
            beneficiaries_changed: 1,
            grants_added: 1,
            grants_changed: 1,
        }
    );
    assert!(text.starts_with("# The city's registry.\n"), "{text}");
    assert!(
        text.contains("# Beneficiaries.\n[[beneficiary]]\nid = \"ent-a\""),
        "{text}"
    );
    let (registry, _) = Registry::from_toml("merged", &text).expect("the merged text is valid");
    let ids: Vec<&str> = registry
        .beneficiaries
        .iter()
        .map(|b| b.id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["ent-a", "ent-b", "ent-c"],
        "order kept, new at the end"
    );
    let b = registry.beneficiary("ent-b").unwrap();
    assert_eq!(b.name, "B renamed");
    assert_eq!(b.district.as_deref(), Some("xihu"));
    assert_eq!(registry.grants.len(), 2);
    assert_eq!(
        registry.grant("ent-a", "city-2025").unwrap().cap,
        Some(suanli_domain::Fen(10_000))
    );
    assert!(registry.grant("ent-c", "city-2025").is_some());
    // The new beneficiary is written among the beneficiaries, before the grants.
    assert!(
        text.find("\"ent-c\"\nkind").unwrap() < text.find("[[grant]]").unwrap(),
        "{text}"
    );
}

#[test]
fn a_patch_refuses_other_sections_duplicates_and_missing_ids() {
    let err = merge("p.toml", BASE, "[[provider]]\nid = \"dc-b\"\n").unwrap_err();
    assert_eq!(err.errors[0].path, "provider", "{err}");
    assert!(
        err.errors[0]
            .reason
            .contains("only [[beneficiary]] and [[grant]]"),
        "{err}"
    );

    let twice = "[[beneficiary]]\nid = \"x\"\nkind = \"enterprise\"\n[[beneficiary]]\nid = \"x\"\nkind = \"university\"\n";
    let err = merge("p.toml", BASE, twice).unwrap_err();
    assert_eq!(err.errors[0].path, "beneficiary[1]", "{err}");
    assert!(err.errors[0].reason.contains("x appears twice"), "{err}");

    let err = merge("p.toml", BASE, "[[grant]]\nbeneficiary = \"ent-a\"\n").unwrap_err();
    assert_eq!(err.errors[0].path, "grant[0].programme", "{err}");
    assert_eq!(err.errors[0].reason, "missing");

    let err = merge("p.toml", BASE, "# nothing\n").unwrap_err();
    assert!(
        err.to_string().contains("no [[beneficiary]] or [[grant]]"),
        "{err}"
    );

    let err = merge("p.toml", BASE, "[[beneficiary]\nid = 1").unwrap_err();
    assert_eq!(err.errors[0].path, "line 1", "{err}");

    let err = merge(
        "p.toml",
        BASE,
        "beneficiary = [ { id = \"y\", kind = \"enterprise\" } ]\n",
    )
    .unwrap_err();
    assert!(
        err.errors[0].reason.contains("[[beneficiary]] table"),
        "{err}"
    );
}

#[test]
fn a_patch_onto_a_registry_without_grants_adds_the_section() {
    let base = BASE.split("[[grant]]").next().unwrap();
    let (text, summary) = merge(
        "p.toml",
        base,
        "[[grant]]\nbeneficiary = \"ent-b\"\nprogramme = \"city-2025\"\n",
    )
    .expect("merges");
    assert_eq!(summary.grants_added, 1);
    let (registry, _) = Registry::from_toml("merged", &text).expect("valid");
    assert!(registry.grant("ent-b", "city-2025").is_some());
}
