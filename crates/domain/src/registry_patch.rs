//! A registry patch: a TOML fragment of `[[beneficiary]]` and `[[grant]]` tables merged onto a
//! version's text. An entry replaces the one with the same id (a grant's id is its beneficiary
//! and programme) or is added after the last of its kind; everything else in the text, comments
//! and order included, is kept as it was. The merged text is a whole registry, validated as one
//! by [`crate::Registry::from_toml`] before it is stored as a new version.

use std::collections::HashMap;

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

use crate::registry::{RegistryError, RegistryErrors};

/// What a patch changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatchSummary {
    pub beneficiaries_added: usize,
    pub beneficiaries_changed: usize,
    pub grants_added: usize,
    pub grants_changed: usize,
}

/// The sections a patch may hold.
const SECTIONS: [&str; 2] = ["beneficiary", "grant"];

/// Merges `fragment` (named `file` in errors) onto the registry text `base`; returns the new
/// text and what changed. Errors name the patch's entry (`beneficiary[2].id`) and why.
pub fn merge(
    file: &str,
    base: &str,
    fragment: &str,
) -> Result<(String, PatchSummary), RegistryErrors> {
    let fail = |path: String, reason: String| RegistryErrors {
        file: file.to_owned(),
        errors: vec![RegistryError { path, reason }],
    };
    let patch: DocumentMut = fragment.parse().map_err(|e: toml_edit::TomlError| {
        let path = e.span().map_or_else(
            || "(file)".to_owned(),
            |s| {
                let before = fragment.get(..s.start).unwrap_or("");
                format!("line {}", before.matches('\n').count() + 1)
            },
        );
        fail(path, e.message().to_owned())
    })?;
    let mut doc: DocumentMut = base
        .parse()
        .map_err(|e: toml_edit::TomlError| fail("(current version)".into(), e.to_string()))?;
    let mut errors = Vec::new();
    for (key, _) in patch.iter() {
        if !SECTIONS.contains(&key) {
            errors.push(RegistryError {
                path: key.to_owned(),
                reason: "a patch holds only [[beneficiary]] and [[grant]] tables; load the whole registry to change anything else".into(),
            });
        }
    }
    let mut summary = PatchSummary::default();
    let mut entries = 0;
    for section in SECTIONS {
        let Some(item) = patch.get(section) else {
            continue;
        };
        let Some(tables) = item.as_array_of_tables() else {
            errors.push(RegistryError {
                path: section.to_owned(),
                reason: format!("write each entry as a [[{section}]] table"),
            });
            continue;
        };
        entries += tables.len();
        let target = match doc.get_mut(section) {
            None => {
                doc.insert(section, Item::ArrayOfTables(ArrayOfTables::new()));
                doc[section].as_array_of_tables_mut()
            }
            Some(item) => item.as_array_of_tables_mut(),
        };
        let Some(target) = target else {
            errors.push(RegistryError {
                path: section.to_owned(),
                reason: format!(
                    "the current version does not write {section} as [[{section}]] tables; load the whole registry instead"
                ),
            });
            continue;
        };
        let (added, changed) = merge_section(section, target, tables, &mut errors);
        if section == "beneficiary" {
            (summary.beneficiaries_added, summary.beneficiaries_changed) = (added, changed);
        } else {
            (summary.grants_added, summary.grants_changed) = (added, changed);
        }
    }
    if entries == 0 && errors.is_empty() {
        errors.push(RegistryError {
            path: "(file)".into(),
            reason: "the patch holds no [[beneficiary]] or [[grant]] table".into(),
        });
    }
    if !errors.is_empty() {
        return Err(RegistryErrors {
            file: file.to_owned(),
            errors,
        });
    }
    Ok((doc.to_string(), summary))
}

/// An entry's identity: a beneficiary's id, a grant's beneficiary and programme.
fn identity(section: &str, table: &Table) -> Result<String, (&'static str, String)> {
    let text = |key: &'static str| match table.get(key) {
        None => Err((key, "missing".to_owned())),
        Some(v) => v
            .as_str()
            .map(str::to_owned)
            .ok_or((key, "must be a string".to_owned())),
    };
    if section == "beneficiary" {
        text("id")
    } else {
        Ok(format!(
            "{}\u{0}{}",
            text("beneficiary")?,
            text("programme")?
        ))
    }
}

/// Replaces or appends the patch's tables of one section; returns (added, changed).
fn merge_section(
    section: &str,
    target: &mut ArrayOfTables,
    tables: &ArrayOfTables,
    errors: &mut Vec<RegistryError>,
) -> (usize, usize) {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(target.len());
    for (i, t) in target.iter().enumerate() {
        // An entry of the current version without a usable id cannot be matched; the merged
        // registry's validation reports it if it is still wrong.
        if let Ok(id) = identity(section, t) {
            index.entry(id).or_insert(i);
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let (mut added, mut changed) = (0, 0);
    for (i, table) in tables.iter().enumerate() {
        let id = match identity(section, table) {
            Ok(id) => id,
            Err((key, reason)) => {
                errors.push(RegistryError {
                    path: format!("{section}[{i}].{key}"),
                    reason,
                });
                continue;
            }
        };
        if let Some(first) = seen.insert(id.clone(), i) {
            errors.push(RegistryError {
                path: format!("{section}[{i}]"),
                reason: format!(
                    "{} appears twice in the patch (also {section}[{first}])",
                    id.replace('\u{0}', " in ")
                ),
            });
            continue;
        }
        let mut table = table.clone();
        match index.get(&id) {
            Some(&at) => {
                let old = target.get_mut(at).expect("indexed entry");
                // The replacement takes the old entry's place and the comments above it.
                table.set_position(old.position());
                *table.decor_mut() = old.decor().clone();
                *old = table;
                changed += 1;
            }
            None => {
                // Without a position it is written after the last entry of its kind.
                table.set_position(None);
                index.insert(id, target.len());
                target.push(table);
                added += 1;
            }
        }
    }
    (added, changed)
}
