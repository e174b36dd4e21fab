//! Registry versions: loading one (audited), following versions other servers loaded, a cache
//! of parsed versions shared with the server, and look-ups of the current registry's years and
//! parties.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::Utc;
use suanli_domain::Registry;
use suanli_store::ledger as rows;
use suanli_store::sql::Sql;
use suanli_store::{RegistryNames, RegistryVersionRow, Store};

use crate::audit::Actor;
use crate::settlement::{Result, SettleError, in_tx};

pub(crate) fn parse_registry(version: i64, text: &str) -> Result<Registry> {
    Registry::from_toml(&format!("registry version {version}"), text)
        .map(|(r, _)| r)
        .map_err(|e| {
            SettleError::FailedPrecondition(format!(
                "stored registry version {version} no longer loads: {e}"
            ))
        })
}

/// Parsed registries by content hash. A version's text never changes, and parsing a city's
/// registry (100,000 beneficiaries) takes longer than a whole run's arithmetic.
static REGISTRIES: LazyLock<Mutex<HashMap<String, Arc<Registry>>>> = LazyLock::new(Mutex::default);
const REGISTRIES_CACHED_MAX: usize = 16;

pub(crate) fn registry_of(tx: &mut dyn Sql, version: i64) -> Result<Arc<Registry>> {
    let hash = rows::registry_hash(tx, version)?.ok_or_else(|| {
        SettleError::NotFound(format!("registry version {version} is not stored"))
    })?;
    if let Some(r) = REGISTRIES.lock().expect("registry cache lock").get(&hash) {
        return Ok(r.clone());
    }
    let text = rows::registry_text(tx, version)?.ok_or_else(|| {
        SettleError::NotFound(format!("registry version {version} is not stored"))
    })?;
    let registry = Arc::new(parse_registry(version, &text)?);
    remember_registry(&hash, registry.clone());
    Ok(registry)
}

/// Shares a registry parsed elsewhere (the server parses each version it loads or restores)
/// with settlement, so a run does not parse the same text again.
pub fn remember_registry(content_hash: &str, registry: Arc<Registry>) {
    let mut cache = REGISTRIES.lock().expect("registry cache lock");
    if cache.len() >= REGISTRIES_CACHED_MAX {
        cache.clear();
    }
    cache.insert(content_hash.to_owned(), registry);
}

pub(crate) fn load_registry(
    tx: &mut dyn Sql,
    version: i64,
    cache: &mut HashMap<i64, Arc<Registry>>,
) -> Result<()> {
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(version) {
        slot.insert(registry_of(tx, version)?);
    }
    Ok(())
}

/// The current registry version and its parsed registry.
pub(crate) fn current_registry(store: &mut dyn Store) -> Result<(i64, Arc<Registry>)> {
    in_tx(store, |tx| {
        let rows = tx.query("SELECT MAX(version) FROM registry_versions", &[])?;
        let version = rows
            .first()
            .and_then(|r| r[0].opt_int().ok().flatten())
            .ok_or_else(|| {
                SettleError::FailedPrecondition(
                    "no registry is loaded (suanli registry import)".into(),
                )
            })?;
        Ok((version, registry_of(tx, version)?))
    })
}

/// The fiscal years of the current registry's programmes, newest first.
pub fn registry_years(store: &mut dyn Store) -> Result<Vec<i32>> {
    let (_, registry) = current_registry(store)?;
    let years: BTreeSet<i32> = registry.programmes.iter().map(|p| p.year).collect();
    Ok(years.into_iter().rev().collect())
}

/// The ids of the current registry's beneficiaries and providers (for pickers and checks).
pub fn registry_parties(store: &mut dyn Store) -> Result<(Vec<String>, Vec<String>)> {
    let (_, registry) = current_registry(store)?;
    Ok((
        registry
            .beneficiaries
            .iter()
            .map(|b| b.id.clone())
            .collect(),
        registry.providers.iter().map(|p| p.id.clone()).collect(),
    ))
}

/// Stores a parsed registry as a new version, audited in the same transaction, unless it is the
/// current version already (then `false` and the current row). Run on the writer thread, so
/// concurrent loads get consecutive versions.
pub fn load(
    store: &mut dyn Store,
    registry: &Registry,
    text: String,
    who: &Actor,
) -> suanli_store::Result<(RegistryVersionRow, bool)> {
    let hash = registry.content_hash.clone();
    if let Some(current) = store.registry_current()?
        && current.content_hash == hash
    {
        return Ok((current, false));
    }
    let names = RegistryNames::of(registry);
    let at = Utc::now();
    let version = store.registry_insert_audited(&hash, &text, &names, at, &mut |tx, version| {
        let subject = format!("registry:v{version}");
        who.record(
            tx,
            "registry.load",
            &subject,
            &[&version.to_string(), &hash],
        )
    })?;
    Ok((
        RegistryVersionRow {
            version,
            content_hash: hash,
            toml_text: text,
            loaded_at: at.to_rfc3339(),
        },
        true,
    ))
}

/// Catches the store up with what other servers on the same database wrote, and returns the
/// current registry version if it is newer than `have` (another server loaded it).
pub fn newer_than(
    store: &mut dyn Store,
    have: u64,
) -> suanli_store::Result<Option<RegistryVersionRow>> {
    store.sync()?;
    let mut newest = 0;
    store.transaction(&mut |tx| {
        let rows = tx.query("SELECT MAX(version) FROM registry_versions", &[])?;
        newest = rows
            .first()
            .map_or(Ok(None), |r| r[0].opt_int())?
            .unwrap_or(0);
        Ok(())
    })?;
    if u64::try_from(newest).unwrap_or(0) > have {
        store.registry_current()
    } else {
        Ok(None)
    }
}

/// The current registry version's row, if any version is stored.
pub fn current_row(store: &mut dyn Store) -> suanli_store::Result<Option<RegistryVersionRow>> {
    store.registry_current()
}
