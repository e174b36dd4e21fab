//! What both backends share: interned names, the in-memory capacity index, accrual deltas, and
//! the encoding of records into rows. The decisions themselves (duplicate by
//! `UsageRecord::same_content`, capacity per clock hour) are made here once.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use suanli_domain::Fen;
use suanli_domain::capacity::{hour_shares_between, hour_shares_into};
use suanli_domain::registry::Class;
use suanli_domain::usage::{PROVIDER_MONTH_FEN_MAX, UsageRecord};

use crate::{AccrualRow, Candidate, Decision, StoreError, period_code};

/// The index of a class in `Class::ALL`, as stored in `usage_records.class_code`.
pub fn class_code(class: Class) -> i64 {
    Class::ALL
        .iter()
        .position(|c| *c == class)
        .map_or(-1, |i| i as i64)
}

pub fn class_of_code(code: i64) -> Option<Class> {
    usize::try_from(code)
        .ok()
        .and_then(|i| Class::ALL.get(i).copied())
}

pub(crate) fn to_ns(at: DateTime<FixedOffset>) -> i64 {
    // The server accepts only times that fit (years 1678-2261); saturate defensively.
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub(crate) fn from_ns(ns: i64) -> DateTime<FixedOffset> {
    Utc.timestamp_nanos(ns).fixed_offset()
}

pub(crate) fn period_text(code: i64) -> String {
    format!("{:04}-{:02}", code / 100, code % 100)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Provider,
    Beneficiary,
    Sku,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Provider => "provider",
            Kind::Beneficiary => "beneficiary",
            Kind::Sku => "sku",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Kind> {
        match text {
            "provider" => Some(Kind::Provider),
            "beneficiary" => Some(Kind::Beneficiary),
            "sku" => Some(Kind::Sku),
            _ => None,
        }
    }
}

/// Interned names, loaded at open and extended when a registry version is loaded.
#[derive(Default)]
pub(crate) struct Names {
    /// One map per kind, indexed by `Kind as usize`, so lookups take a `&str`. FxHash: the
    /// names come from registries an administrator loads, and SipHash showed in profiles.
    ids: [FxMap<String, i64>; 3],
    names: HashMap<i64, String>,
    /// The same names by id, readable from other threads: an [`AccrualFeed`] resolves the
    /// deltas it hands to balance readers with them, off the writer thread.
    shared: SharedNames,
    pub(crate) next_id: i64,
}

/// Interned names by id, shared with readers; names are only ever added.
pub(crate) type SharedNames = std::sync::Arc<std::sync::RwLock<FxMap<i64, std::sync::Arc<str>>>>;

impl Names {
    pub(crate) fn insert(&mut self, kind: Kind, name: String, id: i64) {
        if let Ok(mut shared) = self.shared.write() {
            shared.insert(id, std::sync::Arc::from(name.as_str()));
        }
        self.names.insert(id, name.clone());
        self.ids[kind as usize].insert(name, id);
        self.next_id = self.next_id.max(id + 1);
    }

    pub(crate) fn id(&self, kind: Kind, name: &str) -> Option<i64> {
        self.ids[kind as usize].get(name).copied()
    }

    /// Takes over `previous`'s shared map (which readers already hold), filling it with these
    /// names: a rebuilt engine replaces the names, not the map readers resolve with.
    pub(crate) fn keep_shared(&mut self, previous: &Names) {
        if let Ok(mut shared) = previous.shared.write() {
            for (id, name) in &self.names {
                shared
                    .entry(*id)
                    .or_insert_with(|| std::sync::Arc::from(name.as_str()));
            }
        }
        self.shared = previous.shared.clone();
    }

    /// The names by id as readers on other threads see them.
    pub(crate) fn shared(&self) -> SharedNames {
        self.shared.clone()
    }

    pub(crate) fn name(&self, id: i64) -> Result<&str, StoreError> {
        self.names
            .get(&id)
            .map(String::as_str)
            .ok_or_else(|| StoreError::Corrupt(format!("no name for id {id}")))
    }

    /// New `(kind, name, id)` triples for names not interned yet; the caller stores them and
    /// then calls [`Names::insert`].
    pub(crate) fn plan(&self, names: &crate::RegistryNames) -> Vec<(Kind, String, i64)> {
        let mut next = self.next_id.max(1);
        let mut out = Vec::new();
        let lists = [
            (Kind::Provider, &names.providers),
            (Kind::Beneficiary, &names.beneficiaries),
            (Kind::Sku, &names.skus),
        ];
        for (kind, list) in lists {
            // A name listed twice is planned once. A set, not a search of `out`: a city's
            // registry declares hundreds of thousands of names, and this runs on the writer
            // thread, where a search per name made a load quadratic and held up ingest.
            let mut planned: std::collections::HashSet<
                &str,
                std::hash::BuildHasherDefault<FxHasher>,
            > = std::collections::HashSet::default();
            for name in list {
                if !self.ids[kind as usize].contains_key(name) && planned.insert(name) {
                    out.push((kind, name.clone(), next));
                    next += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod names_tests {
    use super::*;

    // Proves planning is linear: 100,000 new names (the quadratic search took most of a minute) are
    // planned in well under the bound, each once, with consecutive ids after the interned ones.
    #[test]
    fn plan_of_a_city_registry_is_linear_and_plans_each_new_name_once() {
        let mut names = Names::default();
        names.insert(Kind::Beneficiary, "b0".into(), 7);
        let mut beneficiaries: Vec<String> = (0..100_000).map(|i| format!("b{i}")).collect();
        beneficiaries.push("b42".into());
        let registry = crate::RegistryNames {
            providers: vec!["b1".into(), "p".into(), "p".into()],
            beneficiaries,
            skus: vec![],
        };
        let started = std::time::Instant::now();
        let planned = names.plan(&registry);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "planning 100,000 names took {:?}",
            started.elapsed()
        );
        // Two providers ("b1" is a provider name too: kinds are separate), 99,999 beneficiaries.
        assert_eq!(planned.len(), 2 + 99_999);
        assert_eq!(planned[0], (Kind::Provider, "b1".to_owned(), 8));
        assert_eq!(planned[1], (Kind::Provider, "p".to_owned(), 9));
        assert_eq!(planned[2], (Kind::Beneficiary, "b1".to_owned(), 10));
        assert_eq!(planned.last().unwrap().2, 8 + 100_000);
    }
}

/// A row of `usage_records`: a candidate's (borrowing its record id) or a stored one's (owning
/// it). The quantity is kept as the number and written as its normalized text.
#[derive(Clone, Debug)]
pub(crate) struct Row<'a> {
    pub provider_id: i64,
    pub record_id: Cow<'a, str>,
    pub beneficiary_id: i64,
    pub sku_id: i64,
    pub start_ns: i64,
    pub end_ns: i64,
    pub quantity: Decimal,
    pub amount_fen: i64,
    pub period: i64,
    pub class_code: i64,
    pub registry_version: i64,
}

/// Encodes a group. A batch comes from one provider and usually a few SKUs, so the last
/// provider and SKU looked up are remembered.
pub(crate) fn encode_group<'c>(
    names: &Names,
    candidates: &[&'c Candidate],
) -> Result<Vec<Row<'c>>, StoreError> {
    let mut last_provider: Option<(&str, i64)> = None;
    let mut last_sku: Option<(&str, i64)> = None;
    let mut rows = Vec::with_capacity(candidates.len());
    for c in candidates {
        let provider = remembered(
            names,
            Kind::Provider,
            &c.record.provider,
            &mut last_provider,
        )?;
        let sku = remembered(names, Kind::Sku, &c.record.sku, &mut last_sku)?;
        rows.push(encode_with(names, c, provider, sku)?);
    }
    Ok(rows)
}

fn remembered<'n>(
    names: &Names,
    kind: Kind,
    name: &'n str,
    last: &mut Option<(&'n str, i64)>,
) -> Result<i64, StoreError> {
    if let Some((n, id)) = *last
        && n == name
    {
        return Ok(id);
    }
    let id = interned(names, kind, name)?;
    *last = Some((name, id));
    Ok(id)
}

fn interned(names: &Names, kind: Kind, name: &str) -> Result<i64, StoreError> {
    names.id(kind, name).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{} {name:?} is not interned; was its registry loaded?",
            kind.as_str()
        ))
    })
}

fn encode_with<'c>(
    names: &Names,
    c: &'c Candidate,
    provider_id: i64,
    sku_id: i64,
) -> Result<Row<'c>, StoreError> {
    Ok(Row {
        provider_id,
        record_id: Cow::Borrowed(&c.record.record_id),
        beneficiary_id: interned(names, Kind::Beneficiary, &c.record.beneficiary)?,
        sku_id,
        start_ns: to_ns(c.record.start),
        end_ns: to_ns(c.record.end),
        quantity: c.record.quantity.normalize(),
        amount_fen: c.record.amount.0,
        period: period_code(c.period),
        class_code: class_code(c.class),
        registry_version: i64::try_from(c.registry_version).unwrap_or(i64::MAX),
    })
}

/// A stored quantity's text as a number.
pub(crate) fn parse_quantity(text: &str) -> Result<Decimal, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("quantity {text:?}")))
}

/// The stored text of a quantity, written into `buf` (reused across rows: no allocation each).
pub(crate) fn quantity_text(quantity: Decimal, buf: &mut String) -> &str {
    use std::fmt::Write;
    buf.clear();
    let _ = write!(buf, "{quantity}");
    buf.as_str()
}

/// Rebuilds the domain record of a stored row, to compare contents with `same_content`.
pub(crate) fn decode(names: &Names, row: &Row<'_>) -> Result<UsageRecord, StoreError> {
    Ok(UsageRecord {
        provider: names.name(row.provider_id)?.to_owned(),
        record_id: row.record_id.clone().into_owned(),
        beneficiary: names.name(row.beneficiary_id)?.to_owned(),
        sku: names.name(row.sku_id)?.to_owned(),
        start: from_ns(row.start_ns),
        end: from_ns(row.end_ns),
        quantity: row.quantity,
        amount: Fen(row.amount_fen),
    })
}

/// Duplicate or conflict of a stored record (UsageRecord::same_content decides).
pub(crate) fn compare(stored: &UsageRecord, candidate: &UsageRecord) -> Decision {
    if stored.same_content(candidate) {
        Decision::Duplicate
    } else {
        Decision::Conflict
    }
}

/// FxHash (rustc's hasher): the maps below are keyed by small integers from this process, so a
/// DoS-resistant hasher buys nothing and SipHash showed up in profiles.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// Accrual key in ids: (beneficiary id, provider id, class code, period yyyymm).
pub(crate) type AccrualIds = (i64, i64, i64, i64);

/// Accrual key: the settlement line key and period, as text.
pub(crate) type AccrualKey = (String, String, String, String, String, String);

pub(crate) fn accrual_key(
    beneficiary: &str,
    provider: &str,
    class: Class,
    period: &str,
) -> AccrualKey {
    (
        beneficiary.to_owned(),
        provider.to_owned(),
        class.category.as_str().to_owned(),
        class
            .chip_origin
            .map_or(String::new(), |o| o.as_str().to_owned()),
        class
            .registered_model
            .map_or(String::new(), |r| r.to_string()),
        period.to_owned(),
    )
}

pub(crate) fn accrual_key_of(names: &Names, ids: AccrualIds) -> Result<AccrualKey, StoreError> {
    accrual_key_named(|id| names.name(id), ids)
}

/// [`accrual_key_of`] with names from `name`.
fn accrual_key_named<'n>(
    name: impl Fn(i64) -> Result<&'n str, StoreError>,
    ids: AccrualIds,
) -> Result<AccrualKey, StoreError> {
    let class =
        class_of_code(ids.2).ok_or_else(|| StoreError::Corrupt(format!("class_code {}", ids.2)))?;
    Ok(accrual_key(
        name(ids.0)?,
        name(ids.1)?,
        class,
        &period_text(ids.3),
    ))
}

/// Derived in-memory indexes, rebuilt from `usage_records` at open so they cost no write per
/// record: the capacity index (used quantity per (sku id, clock hour) of the records that are
/// not void) and a fixed-size filter of the stored keys' 64-bit hashes, so a group looks up
/// only the keys that may be stored already (a false "maybe" only costs a lookup).
#[derive(Default)]
pub(crate) struct Engine {
    pub names: Names,
    /// Quantity used per (SKU id, clock hour), for R3; and, under [`month_amount_key`], the
    /// fen of each provider's records per month, for
    /// [`suanli_domain::usage::PROVIDER_MONTH_FEN_MAX`]. One map for both, so that one rebuild,
    /// one transaction's effects and one log to other replicas keep both.
    pub capacity: FxMap<(i64, i64), Decimal>,
    pub key_hashes: KeyFilter,
}

/// The key in [`Engine::capacity`] of the amount of provider `provider_id`'s records (not void)
/// of `period` (yyyymm): the provider's id negated, which no SKU id takes (ids start at 1).
pub(crate) fn month_amount_key(provider_id: i64, period: i64) -> (i64, i64) {
    debug_assert!(provider_id > 0, "name ids start at 1");
    (-provider_id, period)
}

/// Blocks of the stored-key filter: 2^20 blocks of 512 bits, 64 MiB, allocated zeroed (pages
/// are only resident once touched). Fixed, so the server's memory does not grow with the number
/// of stored records.
const FILTER_BLOCKS: usize = 1 << 20;
/// Bits set per key, all in the key's one 64-byte block (one cache miss per probe).
const FILTER_PROBES: u32 = 4;

/// A fixed-size blocked Bloom filter of the stored keys' 64-bit hashes: "maybe stored" or
/// "certainly new". A false "maybe" costs one lookup; there are no false "new"s. With 4 bits a
/// key it answers "maybe" for about 0.1 % of new keys at 25 million stored records and 8 % at
/// 100 million, and then degrades towards looking up every key (the design before the filter),
/// never to a wrong decision.
pub(crate) struct KeyFilter {
    blocks: Vec<[u64; 8]>,
}

impl Default for KeyFilter {
    fn default() -> KeyFilter {
        KeyFilter {
            blocks: vec![[0; 8]; FILTER_BLOCKS],
        }
    }
}

impl KeyFilter {
    /// The key's block and its bits (9 bits of the mixed hash each, so positions 0..512).
    fn probes(hash: u64) -> (usize, impl Iterator<Item = usize>) {
        // SplitMix64's finalizer: every output bit depends on every input bit.
        let mut h = hash;
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
        let block = (h as usize) & (FILTER_BLOCKS - 1);
        let bits = h >> 20;
        (
            block,
            (0..FILTER_PROBES).map(move |i| ((bits >> (9 * i)) & 511) as usize),
        )
    }

    pub(crate) fn insert(&mut self, hash: u64) {
        let (block, bits) = Self::probes(hash);
        let block = &mut self.blocks[block];
        for bit in bits {
            block[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// Whether the key may be stored, as answered before this call, and adds it: one probe
    /// of its block for both.
    pub(crate) fn check_and_insert(&mut self, hash: u64) -> bool {
        let (block, bits) = Self::probes(hash);
        let block = &mut self.blocks[block];
        let mut present = true;
        for bit in bits {
            let (word, mask) = (bit / 64, 1 << (bit % 64));
            present &= block[word] & mask != 0;
            block[word] |= mask;
        }
        present
    }

    #[cfg(test)]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        let (block, mut bits) = Self::probes(hash);
        let block = &self.blocks[block];
        bits.all(|bit| block[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// A 64-bit hash of a record key (FNV-1a over the id, mixed with the provider id).
pub(crate) fn key_hash(provider_id: i64, record_id: &str) -> u64 {
    let mut h: u64 =
        0xcbf2_9ce4_8422_2325 ^ (provider_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in record_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// How often the read of every stored record at a start reports its progress to the log.
const REBUILD_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The progress of reading every stored record: at 10,000,000 records a server's start spends
/// 13-25 s on it before it listens, and the log says how far it is instead of nothing.
pub(crate) struct RebuildProgress {
    started: std::time::Instant,
    reported: std::time::Instant,
    records: u64,
}

impl RebuildProgress {
    pub(crate) fn start() -> RebuildProgress {
        let now = std::time::Instant::now();
        RebuildProgress {
            started: now,
            reported: now,
            records: 0,
        }
    }

    /// Counts one record; logs the count so far every [`REBUILD_PROGRESS_EVERY`].
    pub(crate) fn record(&mut self) {
        self.records += 1;
        // The clock is read once per 65,536 records (about 0.1 s), not per record.
        if self.records.is_multiple_of(1 << 16) && self.reported.elapsed() >= REBUILD_PROGRESS_EVERY
        {
            self.reported = std::time::Instant::now();
            tracing::info!(
                records = self.records,
                seconds = self.started.elapsed().as_secs(),
                "reading the stored usage records for ingest"
            );
        }
    }

    pub(crate) fn done(self) {
        tracing::info!(
            records = self.records,
            seconds = self.started.elapsed().as_secs_f64(),
            "stored usage records read for ingest"
        );
    }
}

impl Engine {
    /// Adds a stored record while rebuilding the indexes; void records keep only their key.
    /// `shares` is a buffer the caller reuses, so that opening a store of tens of millions of
    /// records allocates nothing per record.
    #[allow(clippy::too_many_arguments, reason = "the columns of one stored row")]
    pub(crate) fn rebuild_add(
        &mut self,
        provider_id: i64,
        record_id: &str,
        voided: bool,
        sku_id: i64,
        start_ns: i64,
        end_ns: i64,
        quantity: &str,
        amount_fen: i64,
        period: i64,
        shares: &mut Vec<(i64, Decimal)>,
    ) -> Result<(), StoreError> {
        self.key_hashes.insert(key_hash(provider_id, record_id));
        if voided {
            return Ok(());
        }
        let month = self
            .capacity
            .entry(month_amount_key(provider_id, period))
            .or_default();
        *month = month.saturating_add(Decimal::from(amount_fen));
        let quantity: Decimal = quantity
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("quantity {quantity:?}")))?;
        // A span longer than capacity is checked over was admitted without it, and counts
        // for no hour (as `hour_shares_between` giving `None`).
        hour_shares_into(start_ns, end_ns, quantity, shares);
        for &(hour, share) in shares.iter() {
            // Saturating, as in `TxEffects::admit`: rows an older version accepted may hold
            // quantities whose sum passes the largest decimal, and opening must not panic on them.
            let used = self.capacity.entry((sku_id, hour)).or_default();
            *used = used.saturating_add(share);
        }
        Ok(())
    }
}

/// The effects of one transaction, applied to the database before commit and to the engine
/// after it.
#[derive(Default)]
pub(crate) struct TxEffects {
    pub capacity: FxMap<(i64, i64), Decimal>,
    pub accruals: Sums,
}

/// Accrual amounts and record counts by interned key, summed in `i128` so no sum of stored
/// `i64` values can overflow; they are narrowed back, with an error naming the accrual, only
/// where they are written or read out ([`fitting`]).
pub(crate) type Sums = FxMap<AccrualIds, (i128, i128)>;

impl TxEffects {
    fn used(&self, engine: &Engine, key: (i64, i64)) -> Decimal {
        self.capacity
            .get(&key)
            .or_else(|| engine.capacity.get(&key))
            .copied()
            .unwrap_or(Decimal::ZERO)
    }

    /// R3 per clock hour and the bound of the provider's month: fills `shares` with the
    /// record's shares and returns its provider's month total with it if neither is passed,
    /// else the rejection. Changes nothing; [`TxEffects::admit`] books what it found.
    pub(crate) fn check(
        &self,
        engine: &Engine,
        row: &Row<'_>,
        c: &Candidate,
        shares: &mut Vec<(i64, Decimal)>,
    ) -> Result<Decimal, Decision> {
        let month = self.check_month_amount(engine, row, c)?;
        if !hour_shares_into(row.start_ns, row.end_ns, c.record.quantity, shares) {
            return match c.capacity {
                None => Ok(month),
                Some(_) => Err(Decision::OverCapacity(format!(
                    "record {:?} spans more than {} hours; capacity cannot be checked",
                    c.record.record_id,
                    suanli_domain::capacity::RECORD_HOURS_MAX
                ))),
            };
        };
        let Some(capacity) = c.capacity else {
            return Ok(month);
        };
        for (hour, share) in shares.iter() {
            let used = self.used(engine, (row.sku_id, *hour));
            // Saturating: a sum beyond the largest decimal is over any capacity.
            if used.saturating_add(*share) > capacity {
                let at = Utc
                    .timestamp_opt(hour * 3600, 0)
                    .single()
                    .map_or(String::new(), |t| t.to_rfc3339());
                return Err(Decision::OverCapacity(format!(
                    "quantity {} of record {:?} would bring sku {:?} to {} in the hour from {at}, above its capacity {capacity}",
                    c.record.quantity,
                    c.record.record_id,
                    c.record.sku,
                    used.saturating_add(*share).normalize()
                )));
            }
        }
        Ok(month)
    }

    /// The provider's month total with the record, if it stays within
    /// [`suanli_domain::usage::PROVIDER_MONTH_FEN_MAX`].
    fn check_month_amount(
        &self,
        engine: &Engine,
        row: &Row<'_>,
        c: &Candidate,
    ) -> Result<Decimal, Decision> {
        let after = self
            .used(engine, month_amount_key(row.provider_id, row.period))
            .saturating_add(Decimal::from(row.amount_fen));
        if after <= Decimal::from(PROVIDER_MONTH_FEN_MAX) {
            return Ok(after);
        }
        Err(Decision::OverProviderMonth(format!(
            "amount {} of record {:?} would bring provider {:?}'s records of {} to {}, above the largest total of one provider in a month, {}",
            c.record.amount,
            c.record.record_id,
            c.record.provider,
            period_text(row.period),
            Fen(after.to_i64().unwrap_or(i64::MAX)),
            Fen(PROVIDER_MONTH_FEN_MAX)
        )))
    }

    /// Books an admitted new record: its capacity shares, its provider's month total (as
    /// [`TxEffects::check`] found it) and its accrual.
    pub(crate) fn admit(
        &mut self,
        engine: &Engine,
        row: &Row<'_>,
        shares: &[(i64, Decimal)],
        month_total: Decimal,
    ) -> Decision {
        for &(hour, share) in shares {
            let used = self.used(engine, (row.sku_id, hour));
            // The capacity index only decides R3; saturating keeps it conservative (an hour
            // that reached the largest decimal refuses more) and never panics.
            self.capacity
                .insert((row.sku_id, hour), used.saturating_add(share));
        }
        self.capacity
            .insert(month_amount_key(row.provider_id, row.period), month_total);
        let entry = self
            .accruals
            .entry((
                row.beneficiary_id,
                row.provider_id,
                row.class_code,
                row.period,
            ))
            .or_insert((0, 0));
        entry.0 += i128::from(row.amount_fen);
        entry.1 += 1;
        Decision::Accepted
    }

    /// Releases a voided record's capacity and its provider's month, and subtracts it from its
    /// accrual.
    pub(crate) fn release(&mut self, engine: &Engine, row: &Row<'_>, quantity: Decimal) {
        for (hour, share) in
            hour_shares_between(row.start_ns, row.end_ns, quantity).unwrap_or_default()
        {
            let used = self.used(engine, (row.sku_id, hour));
            self.capacity
                .insert((row.sku_id, hour), used.saturating_sub(share));
        }
        let month = month_amount_key(row.provider_id, row.period);
        let used = self.used(engine, month);
        self.capacity
            .insert(month, used.saturating_sub(Decimal::from(row.amount_fen)));
        let entry = self
            .accruals
            .entry((
                row.beneficiary_id,
                row.provider_id,
                row.class_code,
                row.period,
            ))
            .or_insert((0, 0));
        entry.0 -= i128::from(row.amount_fen);
        entry.1 -= 1;
    }

    /// Accrual deltas with their keys as text, for the accruals table.
    pub(crate) fn accrual_deltas(
        &self,
        names: &Names,
    ) -> Result<Vec<(AccrualKey, i64, i64)>, StoreError> {
        keyed_deltas(names, &self.accruals)
    }

    pub(crate) fn commit_into(self, engine: &mut Engine) {
        engine.capacity.extend(self.capacity);
    }
}

/// Accrual deltas by interned ids, with their keys as text.
pub(crate) fn keyed_deltas(
    names: &Names,
    deltas: &Sums,
) -> Result<Vec<(AccrualKey, i64, i64)>, StoreError> {
    deltas
        .iter()
        .map(|(ids, (a, n))| {
            let key = accrual_key_of(names, *ids)?;
            let (a, n) = fitting(&key, *a, *n)?;
            Ok((key, a, n))
        })
        .collect()
}

/// Pending accrual deltas.
///
/// An ingest group does not update the `accruals` rows it touches (hundreds of keys per group,
/// each an upsert: 15 % of the SQLite writer's time at half rate, 23 % of PostgreSQL's time
/// per group). It appends one `accrual_pending` row holding its deltas by interned ids
/// ([`encode_accrual_deltas`]), in the same transaction as its records, and every
/// [`FOLD_GROUPS`] groups or [`FOLD_EVERY`] an ingest transaction folds all pending rows into
/// `accruals` and deletes them (SQLite; a server's PostgreSQL store folds every [`FOLD_EVERY`]
/// on a thread beside ingest instead, `Store::fold_in_background`). Readers ([`crate::Store::accruals`]) add the pending rows to
/// the table in one snapshot, so what they see is exactly what a recount of the records
/// gives, and a crash loses nothing: pending rows are as durable as the records they came with.
pub(crate) const FOLD_GROUPS: u32 = 128;
pub(crate) const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes per pending delta: beneficiary id, provider id, class code, period, amount, records,
/// each an i64, little-endian.
const DELTA_BYTES: usize = 48;

/// The `accrual_pending.deltas` bytes of a transaction's accrual deltas. A group's delta that
/// does not fit 64 bits (unreachable for validated records: see `AMOUNT_FEN_MAX`) fails the
/// group with an error naming the accrual.
pub(crate) fn encode_accrual_deltas(names: &Names, deltas: &Sums) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(deltas.len() * DELTA_BYTES);
    for (&(b, p, c, period), &(amount, records)) in deltas {
        let (amount, records) = match (i64::try_from(amount), i64::try_from(records)) {
            (Ok(a), Ok(n)) => (a, n),
            _ => fitting(&accrual_key_of(names, (b, p, c, period))?, amount, records)?,
        };
        for v in [b, p, c, period, amount, records] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Adds the deltas of one `accrual_pending.deltas` value into `into`.
pub(crate) fn add_accrual_deltas(bytes: &[u8], into: &mut Sums) -> Result<(), StoreError> {
    if !bytes.len().is_multiple_of(DELTA_BYTES) {
        return Err(StoreError::Corrupt(format!(
            "accrual_pending.deltas of {} bytes is not a multiple of {DELTA_BYTES}",
            bytes.len()
        )));
    }
    for d in bytes.chunks_exact(DELTA_BYTES) {
        let v = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[i * 8..i * 8 + 8]);
            i64::from_le_bytes(b)
        };
        let e = into.entry((v(0), v(1), v(2), v(3))).or_insert((0, 0));
        e.0 += i128::from(v(4));
        e.1 += i128::from(v(5));
    }
    Ok(())
}

/// The accrual rows a reader sees: the table's rows plus the pending deltas, without the rows
/// that net to nothing, sorted.
pub(crate) fn with_pending(
    names: &Names,
    table: Vec<AccrualRow>,
    pending: &Sums,
) -> Result<Vec<AccrualRow>, StoreError> {
    if pending.is_empty() {
        return Ok(accrual_rows(table));
    }
    let mut totals: HashMap<AccrualKey, (i128, i128)> = table
        .into_iter()
        .map(|r| {
            (
                (
                    r.beneficiary,
                    r.provider,
                    r.category,
                    r.chip_origin,
                    r.registered_model,
                    r.period,
                ),
                (i128::from(r.amount_fen), i128::from(r.records)),
            )
        })
        .collect();
    for (ids, (amount, records)) in pending {
        let e = totals.entry(accrual_key_of(names, *ids)?).or_insert((0, 0));
        e.0 += amount;
        e.1 += records;
    }
    Ok(accrual_rows(
        totals
            .into_iter()
            .filter(|(_, (a, n))| *a != 0 || *n != 0)
            .map(|(k, (a, n))| {
                let (a, n) = fitting(&k, a, n)?;
                Ok(accrual_row(k, a, n))
            })
            .collect::<Result<_, StoreError>>()?,
    ))
}

/// When the writer folds the pending deltas: after [`FOLD_GROUPS`] groups or [`FOLD_EVERY`].
/// Only a schedule; which rows are pending is always read from the table, so another process
/// that folds or a restart cannot make it wrong.
pub(crate) struct FoldClock {
    groups: u32,
    since: std::time::Instant,
}

impl Default for FoldClock {
    fn default() -> FoldClock {
        FoldClock {
            groups: 0,
            since: std::time::Instant::now(),
        }
    }
}

impl FoldClock {
    /// Counts a group that appended pending deltas; true when this transaction should fold.
    pub(crate) fn fold_now(&mut self) -> bool {
        self.groups += 1;
        self.groups >= FOLD_GROUPS || self.since.elapsed() >= FOLD_EVERY
    }

    pub(crate) fn folded(&mut self) {
        *self = FoldClock::default();
    }

    /// Nothing was folded for [`FOLD_EVERY`].
    pub(crate) fn quiet(&self) -> bool {
        self.since.elapsed() >= FOLD_EVERY
    }
}

/// What a transaction changed in the capacity index: `(sku id, hour) → quantity delta`, from
/// its effects (absolute values) against the index before it. Logged for other replicas.
pub(crate) fn capacity_deltas(engine: &Engine, fx: &TxEffects) -> Vec<((i64, i64), Decimal)> {
    let mut out: Vec<((i64, i64), Decimal)> = fx
        .capacity
        .iter()
        .map(|(k, used)| {
            (
                *k,
                used.saturating_sub(engine.capacity.get(k).copied().unwrap_or(Decimal::ZERO)),
            )
        })
        .filter(|(_, d)| !d.is_zero())
        .collect();
    out.sort_by_key(|(k, _)| *k);
    out
}

/// The `ingest_log.keys` bytes: the key hashes ([`key_hashes`]) of the inserted rows, 8 bytes
/// LE each.
pub(crate) fn encode_key_hashes(hashes: &[u64], inserted: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inserted.len() * 8);
    for &i in inserted {
        out.extend_from_slice(&hashes[i].to_le_bytes());
    }
    out
}

/// The `ingest_log.capacity` bytes: (sku id, hour, delta) as 8 + 8 + 16 bytes.
pub(crate) fn encode_capacity(deltas: &[((i64, i64), Decimal)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(deltas.len() * 32);
    for ((sku, hour), delta) in deltas {
        out.extend_from_slice(&sku.to_le_bytes());
        out.extend_from_slice(&hour.to_le_bytes());
        out.extend_from_slice(&delta.serialize());
    }
    out
}

impl Engine {
    /// Applies another replica's logged transaction (see [`encode_key_hashes`] and
    /// [`encode_capacity`]) to the indexes.
    pub(crate) fn apply_logged(&mut self, keys: &[u8], capacity: &[u8]) -> Result<(), StoreError> {
        if !keys.len().is_multiple_of(8) || !capacity.len().is_multiple_of(32) {
            return Err(StoreError::Corrupt(format!(
                "ingest_log entry of {} key bytes and {} capacity bytes",
                keys.len(),
                capacity.len()
            )));
        }
        for k in keys.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(k);
            self.key_hashes.insert(u64::from_le_bytes(b));
        }
        for c in capacity.chunks_exact(32) {
            let mut sku = [0u8; 8];
            let mut hour = [0u8; 8];
            let mut delta = [0u8; 16];
            sku.copy_from_slice(&c[..8]);
            hour.copy_from_slice(&c[8..16]);
            delta.copy_from_slice(&c[16..]);
            let used = self
                .capacity
                .entry((i64::from_le_bytes(sku), i64::from_le_bytes(hour)))
                .or_default();
            *used = used.saturating_add(Decimal::deserialize(delta));
        }
        Ok(())
    }
}

/// Sorted accrual rows from `(key, amount, count)` triples.
pub(crate) fn accrual_rows(mut rows: Vec<AccrualRow>) -> Vec<AccrualRow> {
    rows.sort();
    rows
}

pub(crate) fn accrual_row(key: AccrualKey, amount_fen: i64, records: i64) -> AccrualRow {
    AccrualRow {
        beneficiary: key.0,
        provider: key.1,
        category: key.2,
        chip_origin: key.3,
        registered_model: key.4,
        period: key.5,
        amount_fen,
        records,
    }
}

/// Recounts accruals from decoded rows of records that are not void.
pub(crate) fn recount(
    names: &Names,
    rows: impl Iterator<Item = (i64, i64, i64, i64, i64)>,
) -> Result<Vec<AccrualRow>, StoreError> {
    let mut totals: HashMap<AccrualKey, (i128, i128)> = HashMap::new();
    for (beneficiary_id, provider_id, class_code, period, amount_fen) in rows {
        let class = class_of_code(class_code)
            .ok_or_else(|| StoreError::Corrupt(format!("class_code {class_code}")))?;
        let key = accrual_key(
            names.name(beneficiary_id)?,
            names.name(provider_id)?,
            class,
            &period_text(period),
        );
        let e = totals.entry(key).or_insert((0, 0));
        e.0 += i128::from(amount_fen);
        e.1 += 1;
    }
    Ok(accrual_rows(
        totals
            .into_iter()
            .map(|(k, (a, n))| {
                let (a, n) = fitting(&k, a, n)?;
                Ok(accrual_row(k, a, n))
            })
            .collect::<Result<_, StoreError>>()?,
    ))
}

/// A total summed exactly in `i128`, as the `i64` fen it is stored and sent as; a total that
/// does not fit is an error naming its accrual, never a wrapped or saturated amount.
pub(crate) fn fitting(
    key: &AccrualKey,
    amount: i128,
    records: i128,
) -> Result<(i64, i64), StoreError> {
    match (i64::try_from(amount), i64::try_from(records)) {
        (Ok(a), Ok(n)) => Ok((a, n)),
        _ => Err(StoreError::Overflow(format!(
            "the accrual of beneficiary {:?}, provider {:?}, category {:?}, period {} sums to {amount} fen over {records} records, beyond a 64-bit amount",
            key.0, key.1, key.2, key.5
        ))),
    }
}

pub(crate) fn now_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The rows of a group whose key may be stored already (its hash is known), adding every key
/// of the group to the filter in the same probe. Adding them before the commit is safe: a key
/// that ends up not stored (rejected, a conflict, a failed transaction) only turns into a false
/// "maybe", which costs a lookup and never a wrong decision; and a key repeated within the group
/// is decided against its first occurrence.
///
/// `hashes` are the rows' [`key_hashes`], computed in a pass of their own so the probes that
/// follow are independent of each other and the CPU overlaps their cache misses instead of
/// waiting out each key's hash.
pub(crate) fn maybe_stored<'r, 'a>(
    engine: &mut Engine,
    rows: &'r [Row<'a>],
    hashes: &[u64],
) -> Vec<&'r Row<'a>> {
    rows.iter()
        .zip(hashes)
        .filter(|(_, hash)| engine.key_hashes.check_and_insert(**hash))
        .map(|(row, _)| row)
        .collect()
}

/// The key hash of every row, in order (computed once per group: the filter and, on
/// PostgreSQL, the ingest log use them).
pub(crate) fn key_hashes(rows: &[Row<'_>]) -> Vec<u64> {
    rows.iter()
        .map(|r| key_hash(r.provider_id, &r.record_id))
        .collect()
}

/// Stored rows found for the keys of a group, by (provider id, record id).
pub(crate) type Existing = FxMap<(i64, String), Row<'static>>;

/// What a group decided: one decision per candidate, the indexes of the rows to insert (new
/// records, in order), and the effects to write in the same transaction.
pub(crate) struct Decided {
    pub decisions: Vec<Decision>,
    pub insert: Vec<usize>,
    pub effects: TxEffects,
}

/// Decides a group in order, given the stored rows of its keys: a key stored before, or
/// admitted earlier in the group, makes a duplicate or conflict (`same_content`); a new record
/// is admitted unless it would pass its SKU's capacity in some clock hour.
///
/// `all_new`: the stored-key filter answered "new" for every key of the group
/// ([`maybe_stored`] found none), so no key is stored or repeated in the group and the
/// repeats need not be tracked.
pub(crate) fn decide(
    engine: &Engine,
    candidates: &[&Candidate],
    rows: &[Row<'_>],
    existing: &Existing,
    all_new: bool,
) -> Result<Decided, StoreError> {
    let mut fx = TxEffects::default();
    let mut decisions = Vec::with_capacity(candidates.len());
    let mut admitted: FxMap<(i64, &str), usize> = if all_new {
        FxMap::default()
    } else {
        FxMap::with_capacity_and_hasher(candidates.len(), Default::default())
    };
    let mut insert = Vec::with_capacity(candidates.len());
    let mut shares = Vec::new();
    for (i, (c, row)) in candidates.iter().zip(rows).enumerate() {
        let key = (row.provider_id, row.record_id.as_ref());
        let repeat = if all_new { None } else { admitted.get(&key) };
        let decision = if let Some(&j) = repeat {
            compare(&candidates[j].record, &c.record)
        } else if let Some(stored) = (!existing.is_empty())
            .then(|| existing.get(&(row.provider_id, row.record_id.clone().into_owned())))
            .flatten()
        {
            compare(&decode(&engine.names, stored)?, &c.record)
        } else {
            match fx.check(engine, row, c, &mut shares) {
                Ok(month_total) => {
                    if !all_new {
                        admitted.insert(key, i);
                    }
                    insert.push(i);
                    fx.admit(engine, row, &shares, month_total)
                }
                Err(over) => over,
            }
        };
        decisions.push(decision);
    }
    Ok(Decided {
        decisions,
        insert,
        effects: fx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // PostgreSQL: a reader that finds the database showing this store's commit before the
    // writer noted it waits for the note and is served from the log; a seq nobody here has in
    // flight (another server's) is not served from the log.
    #[test]
    fn a_reader_waits_for_the_note_of_this_stores_commit_in_flight() {
        let mut names = Names::default();
        names.insert(Kind::Beneficiary, "ent-a".into(), 1);
        names.insert(Kind::Provider, "dc-a".into(), 2);
        let mut log = AccrualLog::default();
        let mark = log.mark(7);
        let feed = log.feed(&names);
        let mut group: Sums = FxMap::default();
        group.insert((1, 2, 0, 202503), (500, 1));
        // Commit of seq 8 in flight; the reader already reads 8 as the newest seq.
        log.committing(8);
        let reader = std::thread::spawn(move || feed.deltas_since(mark, Some(8)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!reader.is_finished(), "the reader waits for the note");
        log.note(8, group);
        let changes = reader
            .join()
            .expect("reader")
            .expect("read")
            .expect("served from the log once noted");
        assert_eq!(changes.mark.external, 8);
        assert_eq!(changes.deltas.len(), 1);
        assert_eq!(changes.deltas[0].amount_fen, 500);
        // Seq 9 committed by another server: nothing in flight here, so no wait and no answer
        // from the log.
        let feed = log.feed(&names);
        let started = std::time::Instant::now();
        assert!(
            feed.deltas_since(changes.mark, Some(9))
                .expect("read")
                .is_none()
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // An abandoned commit wakes the reader too (and its seq then counts as missing).
        log.committing(10);
        let reader = std::thread::spawn(move || feed.deltas_since(changes.mark, Some(10)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !reader.is_finished(),
            "the reader waits for the commit to settle"
        );
        log.abandon();
        assert!(reader.join().expect("reader").expect("read").is_none());
    }

    // The feed's deltas by ids are the writer's changes by name: summed across commits, a
    // delta that nets to nothing left out, a sum beyond 64 bits refused by name.
    #[test]
    fn the_feeds_deltas_by_ids_are_the_logs_changes() {
        let mut names = Names::default();
        names.insert(Kind::Beneficiary, "ent-a".into(), 1);
        names.insert(Kind::Beneficiary, "ent-b".into(), 3);
        names.insert(Kind::Provider, "dc-a".into(), 2);
        let mut log = AccrualLog::default();
        let mark = log.mark(0);
        let feed = log.feed(&names);
        for (ids, delta) in [
            ((1, 2, 0, 202503), (500, 1)),
            ((3, 2, 1, 202504), (70, 2)),
            ((1, 2, 0, 202503), (-200, -1)),
            ((3, 2, 0, 202501), (9, 1)),
            ((3, 2, 0, 202501), (-9, -1)),
        ] {
            let mut group: Sums = FxMap::default();
            group.insert(ids, delta);
            log.note(0, group);
        }
        let by_name = log
            .since(&names, mark, None)
            .expect("read")
            .expect("logged");
        let by_ids = feed
            .deltas_since(mark, None)
            .expect("read")
            .expect("logged");
        assert_eq!(by_ids.mark, by_name.0);
        let mut named: Vec<AccrualRow> = by_ids
            .deltas
            .iter()
            .map(|d| {
                let key = accrual_key(
                    &by_ids.name(d.beneficiary).expect("named"),
                    &by_ids.name(d.provider).expect("named"),
                    d.class,
                    &d.period.to_string(),
                );
                accrual_row(key, d.amount_fen, d.records)
            })
            .collect();
        named.sort();
        assert_eq!(named, by_name.1);
        assert_eq!(named.len(), 2, "the delta that nets to nothing is left out");
        assert_eq!((named[0].amount_fen, named[0].records), (300, 0));
        assert_eq!(named[1].period, "2025-04");
        assert!(by_ids.name(99).is_err(), "an unknown id is refused");
        let mut group: Sums = FxMap::default();
        group.insert((1, 2, 0, 202503), (i128::from(i64::MAX), 1));
        log.note(0, group);
        let e = feed.deltas_since(mark, None).err().expect("beyond 64 bits");
        assert!(e.to_string().contains("ent-a"), "{e}");
    }

    #[test]
    fn pending_deltas_round_trip_add_up_and_merge_with_the_table() {
        let mut names = Names::default();
        names.insert(Kind::Beneficiary, "ent-a".into(), 1);
        names.insert(Kind::Provider, "dc-a".into(), 2);
        let class = class_of_code(0).expect("class code 0");
        let mut group: Sums = FxMap::default();
        group.insert((1, 2, 0, 202503), (-1_234_567_890_123, -3));
        group.insert((1, 2, 0, 202504), (500, 1));
        let bytes = encode_accrual_deltas(&names, &group).unwrap();
        assert_eq!(bytes.len(), 2 * DELTA_BYTES);
        let mut sum = FxMap::default();
        add_accrual_deltas(&bytes, &mut sum).unwrap();
        add_accrual_deltas(&bytes, &mut sum).unwrap();
        assert_eq!(sum[&(1, 2, 0, 202503)], (-2_469_135_780_246, -6));
        assert_eq!(sum[&(1, 2, 0, 202504)], (1000, 2));
        let err = add_accrual_deltas(&bytes[..47], &mut sum).unwrap_err();
        assert!(err.to_string().contains("47 bytes"), "{err}");

        // The table holds March at +2,469,135,780,246 / 6: with the pending sum it nets to
        // nothing and disappears; April exists only as pending.
        let march = accrual_key("ent-a", "dc-a", class, "2025-03");
        let table = vec![accrual_row(march, 2_469_135_780_246, 6)];
        let seen = with_pending(&names, table, &sum).unwrap();
        assert_eq!(
            seen,
            vec![accrual_row(
                accrual_key("ent-a", "dc-a", class, "2025-04"),
                1000,
                2
            )]
        );
        // An id with no name is corruption, not a silently dropped total.
        sum.insert((9, 2, 0, 202503), (1, 1));
        assert!(with_pending(&names, Vec::new(), &sum).is_err());
    }

    #[test]
    fn the_fold_clock_folds_after_fold_groups_groups_or_fold_every() {
        let mut clock = FoldClock::default();
        let folds: Vec<bool> = (0..FOLD_GROUPS).map(|_| clock.fold_now()).collect();
        assert_eq!(folds.iter().filter(|f| **f).count(), 1, "{folds:?}");
        assert!(folds[folds.len() - 1]);
        clock.folded();
        assert_eq!(clock.groups, 0);
        let mut idle = FoldClock {
            groups: 0,
            since: std::time::Instant::now() - FOLD_EVERY,
        };
        assert!(
            idle.fold_now(),
            "the first group after a quiet second folds"
        );
    }

    fn row(provider_id: i64, record_id: &str) -> Row<'_> {
        Row {
            provider_id,
            record_id: record_id.into(),
            beneficiary_id: 0,
            sku_id: 0,
            start_ns: 0,
            end_ns: 0,
            quantity: Decimal::ONE,
            amount_fen: 0,
            period: 202503,
            class_code: 0,
            registry_version: 1,
        }
    }

    /// What one replica logs, another applies: the same key hashes and capacity used.
    #[test]
    fn logged_changes_apply_on_another_replica() {
        let mut before = Engine::default();
        before.capacity.insert((7, 100), Decimal::new(25, 1));
        let mut fx = TxEffects::default();
        fx.capacity.insert((7, 100), Decimal::new(40, 1));
        fx.capacity.insert((9, -3), Decimal::new(-15, 2));
        fx.capacity.insert((9, 4), Decimal::ZERO);
        let deltas = capacity_deltas(&before, &fx);
        assert_eq!(
            deltas,
            vec![
                ((7, 100), Decimal::new(15, 1)),
                ((9, -3), Decimal::new(-15, 2))
            ],
            "unchanged hours are not logged"
        );
        let rows = [row(1, "a"), row(2, "b"), row(1, "c")];
        let keys = encode_key_hashes(&key_hashes(&rows), &[0, 2]);
        let mut other = Engine::default();
        other.capacity.insert((7, 100), Decimal::new(25, 1));
        other
            .apply_logged(&keys, &encode_capacity(&deltas))
            .expect("applies");
        assert_eq!(other.capacity[&(7, 100)], Decimal::new(40, 1));
        assert_eq!(other.capacity[&(9, -3)], Decimal::new(-15, 2));
        assert!(other.key_hashes.may_contain(key_hash(1, "a")));
        assert!(other.key_hashes.may_contain(key_hash(1, "c")));
        assert!(!other.key_hashes.may_contain(key_hash(2, "b")));
        assert!(matches!(
            other.apply_logged(&keys[..7], &[]),
            Err(StoreError::Corrupt(_))
        ));
    }

    // Proves the stored-key filter never forgets a key, and rarely answers "maybe" for a new one.
    #[test]
    fn key_filter_has_no_false_new_and_few_false_maybes() {
        let mut filter = KeyFilter::default();
        for i in 0..200_000 {
            filter.insert(key_hash(i % 8, &format!("stored-{i}")));
        }
        for i in 0..200_000 {
            assert!(
                filter.may_contain(key_hash(i % 8, &format!("stored-{i}"))),
                "stored key {i} is found"
            );
        }
        let false_maybes = (0..200_000)
            .filter(|i| filter.may_contain(key_hash(i % 8, &format!("new-{i}"))))
            .count();
        // 200,000 keys in 2^20 blocks: the expected rate is far below one in a million.
        assert!(false_maybes <= 5, "{false_maybes} new keys answered maybe");
    }

    // check_and_insert answers what may_contain answered before it, then holds the key.
    #[test]
    fn check_and_insert_answers_before_adding() {
        let mut filter = KeyFilter::default();
        let mut engine = Engine::default();
        let rows = [row(1, "a"), row(2, "b"), row(1, "a")];
        let maybe = maybe_stored(&mut engine, &rows, &key_hashes(&rows));
        assert_eq!(
            maybe.len(),
            1,
            "only the repeat of a key in the group is a maybe"
        );
        assert_eq!(maybe[0].record_id, "a");
        for (p, id) in [(1, "a"), (2, "b")] {
            assert!(engine.key_hashes.may_contain(key_hash(p, id)));
        }
        for i in 0..10_000 {
            let h = key_hash(3, &format!("k{i}"));
            let before = filter.may_contain(h);
            assert_eq!(filter.check_and_insert(h), before);
            assert!(filter.may_contain(h));
            assert!(filter.check_and_insert(h), "a key added is then present");
        }
    }
}

/// The accrual deltas of a store's own commits (ingest groups and voids), kept from the first
/// time a reader asks for them ([`crate::Store::accrual_changes_since`]), so a reader that
/// maintains figures derived from accruals can apply what changed since it last looked instead
/// of reading every accrual again. The writer reads them through the store; a balance reader on
/// another thread through an [`AccrualFeed`], without waiting for the writer. Bounded: past
/// [`ACCRUAL_LOG_ROWS_MAX`] delta rows the oldest entries are dropped, and a reader whose mark
/// precedes them reads everything once more.
#[derive(Default)]
pub(crate) struct AccrualLog {
    shared: std::sync::Arc<SharedLog>,
}

/// The log and the signal that a commit this store had in flight was noted or abandoned.
#[derive(Default)]
pub(crate) struct SharedLog {
    state: std::sync::Mutex<LogState>,
    settled: std::sync::Condvar,
}

/// How long a reader waits at most for this store's commit in flight (one the database may
/// already show) to be noted: the writer notes it right after its commit returns, so this is
/// only ever reached if the writer thread stalls; the reader then reads every total instead.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl SharedLog {
    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A reader that panicked while holding the lock left the log as it was: every change
        // to it is one push or one pop.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct LogState {
    /// Tells this store's marks from another store's in the same process.
    store: u64,
    tracking: bool,
    /// The sequence number of `entries[0]`.
    first: u64,
    entries: std::collections::VecDeque<AccrualLogEntry>,
    rows: usize,
    /// The `ingest_log` seq of this store's commit in flight (PostgreSQL): set before the
    /// commit, cleared when it is noted or abandoned. Between the commit and the note the
    /// database shows the seq while the log does not hold it yet; a reader that finds it
    /// missing waits for the note instead of taking it for another server's commit.
    in_flight: Option<i64>,
}

struct AccrualLogEntry {
    /// The `ingest_log` seq the commit wrote (PostgreSQL); 0 on SQLite.
    external: i64,
    deltas: Sums,
}

/// Delta rows kept at most (about 100 bytes each).
pub(crate) const ACCRUAL_LOG_ROWS_MAX: usize = 1 << 20;

static NEXT_STORE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Default for LogState {
    fn default() -> LogState {
        LogState {
            store: NEXT_STORE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tracking: false,
            first: 0,
            entries: std::collections::VecDeque::new(),
            rows: 0,
            in_flight: None,
        }
    }
}

impl AccrualLog {
    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.shared.state()
    }

    /// Marks the commit of `ingest_log` seq `external` as in flight: called just before the
    /// commit, then [`AccrualLog::note`] (committed) or [`AccrualLog::abandon`] (failed).
    pub(crate) fn committing(&mut self, external: i64) {
        self.state().in_flight = Some(external);
    }

    /// The commit in flight failed: nothing of it is in the database.
    pub(crate) fn abandon(&mut self) {
        self.state().in_flight = None;
        self.shared.settled.notify_all();
    }

    /// Notes a committed change to accruals; `external` is the `ingest_log` seq the commit
    /// wrote (PostgreSQL) or 0. Nothing is kept until a reader asked once. Called after the
    /// commit and before its acknowledgement, so a reader that starts after an acknowledgement
    /// finds the change here.
    /// Takes the group's deltas (the commit no longer needs them), so the ingest path copies
    /// nothing.
    pub(crate) fn note(&mut self, external: i64, deltas: Sums) {
        let mut state = self.state();
        if state.in_flight.take().is_some() {
            self.shared.settled.notify_all();
        }
        if !state.tracking {
            return;
        }
        state.rows += deltas.len();
        state
            .entries
            .push_back(AccrualLogEntry { external, deltas });
        while state.rows > ACCRUAL_LOG_ROWS_MAX {
            let Some(old) = state.entries.pop_front() else {
                break;
            };
            state.rows -= old.deltas.len();
            state.first += 1;
        }
    }

    /// The mark of the state after every noted change, starting to keep changes from now on;
    /// `external` is the newest `ingest_log` seq read before the state was (PostgreSQL) or 0.
    pub(crate) fn mark(&mut self, external: i64) -> crate::AccrualMark {
        let mut state = self.state();
        state.tracking = true;
        crate::AccrualMark {
            store: state.store,
            seq: state.first + state.entries.len() as u64,
            external,
        }
    }

    /// The changes since `since` summed per accrual, with the mark after them; `None` when
    /// they are not all here (see [`LogState::since`]).
    pub(crate) fn since(
        &mut self,
        names: &Names,
        since: crate::AccrualMark,
        current: Option<i64>,
    ) -> Result<Option<(crate::AccrualMark, Vec<AccrualRow>)>, StoreError> {
        self.state().since(|id| names.name(id), since, current)
    }

    /// A handle that reads this log from another thread.
    pub(crate) fn feed(&self, names: &Names) -> crate::AccrualFeed {
        crate::AccrualFeed {
            log: self.shared.clone(),
            names: names.shared(),
        }
    }
}

impl LogState {
    /// The changes since `since` summed per accrual, with the mark after them; `None` when
    /// they are not all here: another store's mark, entries dropped, or (`current` is the
    /// newest `ingest_log` seq, PostgreSQL) another server's commits in between. With
    /// `current`, only this store's commits up to it are taken: one noted after the caller
    /// read `current` is left for its next call, so the mark's `ingest_log` seq stays exact.
    fn since<'n>(
        &self,
        name: impl Fn(i64) -> Result<&'n str, StoreError>,
        since: crate::AccrualMark,
        current: Option<i64>,
    ) -> Result<Option<(crate::AccrualMark, Vec<AccrualRow>)>, StoreError> {
        let Some((mark, sums)) = self.sums_since(since, current) else {
            return Ok(None);
        };
        let mut rows = Vec::with_capacity(sums.len());
        for (ids, (a, n)) in sums {
            let key = accrual_key_named(&name, ids)?;
            let (a, n) = fitting(&key, a, n)?;
            rows.push(accrual_row(key, a, n));
        }
        Ok(Some((mark, accrual_rows(rows))))
    }

    /// [`LogState::since`] by ids: the deltas summed per accrual's ids (those that net to
    /// nothing left out), with the mark after them.
    fn sums_since(
        &self,
        since: crate::AccrualMark,
        current: Option<i64>,
    ) -> Option<(crate::AccrualMark, Sums)> {
        let end = self.first + self.entries.len() as u64;
        if !self.tracking || since.store != self.store || since.seq < self.first || since.seq > end
        {
            return None;
        }
        let skip = (since.seq - self.first) as usize;
        let mut sums = Sums::default();
        let mut external = since.external;
        let mut taken = since.seq;
        for e in self.entries.iter().skip(skip) {
            if current.is_some_and(|current| e.external > current) {
                break;
            }
            for (ids, (a, n)) in &e.deltas {
                let s = sums.entry(*ids).or_insert((0, 0));
                s.0 += a;
                s.1 += n;
            }
            external = external.max(e.external);
            taken += 1;
        }
        if let Some(current) = current {
            // Every `ingest_log` entry after the mark must be one of this store's own: another
            // server's commit changed accruals this log never saw.
            let own = (taken - since.seq) as i64;
            if current - since.external != own {
                return None;
            }
            external = current;
        }
        sums.retain(|_, (a, n)| *a != 0 || *n != 0);
        Some((
            crate::AccrualMark {
                store: self.store,
                seq: taken,
                external,
            },
            sums,
        ))
    }
}

/// The name of `id` in a store's shared names.
pub(crate) fn shared_name(
    names: &FxMap<i64, std::sync::Arc<str>>,
    id: i64,
) -> Result<&std::sync::Arc<str>, StoreError> {
    names
        .get(&id)
        .ok_or_else(|| StoreError::Corrupt(format!("no name for id {id}")))
}

impl crate::AccrualFeed {
    /// The changes since `since` (a mark of this store's [`crate::Store::accrual_changes_since`]
    /// or of an earlier call here), summed per accrual by the store's ids, with the mark after
    /// them; `None` when they are not all here, and the caller must read every total through
    /// the store. A reader names each id once ([`crate::AccrualDeltas::name`]); the log is held
    /// only while the deltas are summed. On PostgreSQL `current` is the newest `ingest_log` seq
    /// the caller read from the database before calling (so a change of another server is
    /// noticed); `None` on SQLite, where one server writes.
    pub fn deltas_since(
        &self,
        since: crate::AccrualMark,
        current: Option<i64>,
    ) -> Result<Option<crate::AccrualDeltas>, StoreError> {
        let mut state = self.log.state();
        if let Some(current) = current {
            // This store's own commit the database may already show, not noted yet: wait for
            // its note (it follows the commit at once), so that it is not taken for another
            // server's commit and answered with a complete read.
            let deadline = std::time::Instant::now() + IN_FLIGHT_WAIT;
            while state.in_flight.is_some_and(|seq| seq <= current) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                state = self
                    .log
                    .settled
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        let Some((mark, sums)) = state.sums_since(since, current) else {
            return Ok(None);
        };
        drop(state);
        let mut deltas = Vec::with_capacity(sums.len());
        for (ids, (a, n)) in sums {
            let class = class_of_code(ids.2)
                .ok_or_else(|| StoreError::Corrupt(format!("class_code {}", ids.2)))?;
            let period = crate::period_of_code(ids.3)
                .ok_or_else(|| StoreError::Corrupt(format!("period {}", ids.3)))?;
            let (Ok(amount_fen), Ok(records)) = (i64::try_from(a), i64::try_from(n)) else {
                // Named for the error only.
                let names = self.names.read().unwrap_or_else(|e| e.into_inner());
                let key = accrual_key_named(|id| shared_name(&names, id).map(|n| &**n), ids)?;
                return Err(fitting(&key, a, n).expect_err("does not fit"));
            };
            deltas.push(crate::AccrualDelta {
                beneficiary: ids.0,
                provider: ids.1,
                class,
                period,
                amount_fen,
                records,
            });
        }
        Ok(Some(crate::AccrualDeltas {
            mark,
            deltas,
            names: self.names.clone(),
        }))
    }
}
