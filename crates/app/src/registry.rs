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
use crate::settlement::{Result, SettleError, Transact, in_tx};

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
pub(crate) fn current_registry<S: Transact + ?Sized>(
    store: &mut S,
) -> Result<(i64, Arc<Registry>)> {
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
pub fn registry_years<S: Transact + ?Sized>(store: &mut S) -> Result<Vec<i32>> {
    let (_, registry) = current_registry(store)?;
    let years: BTreeSet<i32> = registry.programmes.iter().map(|p| p.year).collect();
    Ok(years.into_iter().rev().collect())
}

/// The ids of the current registry's beneficiaries and providers (for pickers and checks).
pub fn registry_parties<S: Transact + ?Sized>(store: &mut S) -> Result<(Vec<String>, Vec<String>)> {
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

/// What a load is: a whole registry, or a patch merged onto the version `base_version`.
pub enum LoadKind {
    Whole,
    Patch {
        base_version: u64,
        summary: suanli_domain::registry_patch::PatchSummary,
    },
}

/// A version stored (or found current already) by [`load`]; the text is the caller's.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub version: u64,
    pub content_hash: String,
    pub loaded_at: String,
    /// False when the text is the current version's already.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "registry version {current} was stored after version {base}, which the patch was merged onto; send the patch again"
    )]
    BaseChanged { base: u64, current: u64 },
    #[error(transparent)]
    Store(#[from] suanli_store::StoreError),
}

/// Names per interning transaction: a slice takes the writer tens of milliseconds, so ingest
/// waits at most that long behind a load of any size.
pub const INTERN_SLICE_NAMES: usize = 20_000;

/// Interns one slice of a registry's names before its version is stored (see
/// [`Store::registry_intern`]). Run on the writer thread, one slice per call.
pub fn intern(store: &mut dyn Store, names: &RegistryNames) -> suanli_store::Result<usize> {
    store.registry_intern(names)
}

/// The current version's number, hash and load time, without its text (a city's registry text
/// is tens of megabytes, and this runs on the writer thread).
fn current_head(store: &mut dyn Store) -> suanli_store::Result<Option<(u64, String, String)>> {
    let mut head = None;
    store.transaction(&mut |tx| {
        let rows = tx.query(
            "SELECT version, content_hash, loaded_at FROM registry_versions ORDER BY version DESC LIMIT 1",
            &[],
        )?;
        head = match rows.first() {
            Some(r) => Some((
                u64::try_from(r[0].int()?).unwrap_or(0),
                r[1].text()?,
                r[2].text()?,
            )),
            None => None,
        };
        Ok(())
    })?;
    Ok(head)
}

/// Stores a parsed registry (its `names` listed off the writer thread, ideally interned
/// already by [`intern`]) as a new version, audited in the same transaction as
/// `registry.load` or `registry.patch`, unless it is the current version already. A patch is
/// stored only if no other version was stored after its base. Run on the writer thread, so
/// concurrent loads get consecutive versions.
pub fn load(
    store: &mut dyn Store,
    registry: &Registry,
    names: &RegistryNames,
    text: &str,
    kind: &LoadKind,
    who: &Actor,
) -> std::result::Result<Loaded, LoadError> {
    let hash = registry.content_hash.clone();
    let head = current_head(store)?;
    if let Some((version, current_hash, loaded_at)) = &head
        && *current_hash == hash
    {
        return Ok(Loaded {
            version: *version,
            content_hash: hash,
            loaded_at: loaded_at.clone(),
            created: false,
        });
    }
    let at = Utc::now();
    let mut changed_base = None;
    let stored = store.registry_insert_audited(&hash, text, names, at, &mut |tx, version| {
        let subject = format!("registry:v{version}");
        match kind {
            LoadKind::Whole => who.record(
                tx,
                "registry.load",
                &subject,
                &[&version.to_string(), &hash],
            ),
            LoadKind::Patch {
                base_version,
                summary,
            } => {
                // Checked under the store's registry lock, so a version another server stored
                // after the base (and this server has not installed yet) is not lost.
                if version != base_version + 1 {
                    changed_base = Some(version - 1);
                    return Err(suanli_store::StoreError::Corrupt(
                        "registry patch base changed".into(),
                    ));
                }
                who.record(
                    tx,
                    "registry.patch",
                    &subject,
                    &[
                        &version.to_string(),
                        &hash,
                        &format!("base v{base_version}"),
                        &format!(
                            "beneficiaries +{} ~{}, grants +{} ~{}",
                            summary.beneficiaries_added,
                            summary.beneficiaries_changed,
                            summary.grants_added,
                            summary.grants_changed
                        ),
                    ],
                )
            }
        }
    });
    let version = match (stored, changed_base, kind) {
        (Ok(version), _, _) => version,
        (Err(_), Some(current), LoadKind::Patch { base_version, .. }) => {
            return Err(LoadError::BaseChanged {
                base: *base_version,
                current,
            });
        }
        (Err(e), _, _) => return Err(e.into()),
    };
    Ok(Loaded {
        version,
        content_hash: hash,
        loaded_at: at.to_rfc3339(),
        created: true,
    })
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
