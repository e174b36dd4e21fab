//! The store conformance suite: every backend must make the same decisions. Each test runs on
//! SQLite (a temp file) and on PostgreSQL (a uniquely named database, dropped afterwards; the
//! PostgreSQL half skips when the server is unreachable unless SUANLI_REQUIRE_POSTGRES=1).

use chrono::{DateTime, Utc};
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::usage::{Period, UsageRecord, validate};
use suanli_store::{Candidate, Decision, Principal, RegistryNames, Store, StoreError, VoidResult};

const REGISTRY: &str = r#"
[[programme]]
id = "nat"
name = "national"
funder = "national"
year = 2025
beneficiary_kinds = ["enterprise"]
payee = "beneficiary"
rates = [ { category = "compute", ratio = "0.30" }, { category = "model", ratio = "0.30" } ]
[[provider]]
id = "dc-a"
name = "A"
[[provider]]
id = "dc-b"
name = "B"
[[sku]]
id = "a-gpu"
provider = "dc-a"
category = "compute"
chip_origin = "domestic"
unit = "gpu_hour"
list_price = "20.00"
capacity = "10"
[[sku]]
id = "b-tok"
provider = "dc-b"
category = "model"
registered_model = true
unit = "token_million"
[[beneficiary]]
id = "ent-a"
name = "A"
kind = "enterprise"
[[beneficiary]]
id = "ent-b"
name = "B"
kind = "enterprise"
"#;

struct Db {
    url: String,
    cleanup: Option<Box<dyn FnOnce()>>,
    _dir: Option<std::path::PathBuf>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(f) = self.cleanup.take() {
            f();
        }
    }
}

fn sqlite_db() -> Db {
    wrap(suanli_testkit::sqlite("store"))
}

fn pg_db() -> Option<Db> {
    suanli_testkit::postgres("store").map(wrap)
}

/// Keeps the test database alive as long as the `Db` and drops it with it.
fn wrap(db: suanli_testkit::TestDb) -> Db {
    Db {
        url: db.url.clone(),
        cleanup: Some(Box::new(move || drop(db))),
        _dir: None,
    }
}

fn registry() -> Registry {
    Registry::from_toml("test", REGISTRY)
        .expect("registry loads")
        .0
}

fn open_loaded(url: &str, registry: &Registry) -> Box<dyn Store> {
    let mut store = suanli_store::open(url).expect("store opens");
    store
        .registry_insert(
            &registry.content_hash,
            REGISTRY,
            &RegistryNames::of(registry),
            Utc::now(),
        )
        .expect("registry stored");
    store
}

fn at(text: &str) -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339(text).expect("time")
}

#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field of a record"
)]
fn record(
    provider: &str,
    id: &str,
    beneficiary: &str,
    sku: &str,
    start: &str,
    end: &str,
    quantity: &str,
    fen: i64,
) -> UsageRecord {
    UsageRecord {
        provider: provider.into(),
        record_id: id.into(),
        beneficiary: beneficiary.into(),
        sku: sku.into(),
        start: at(start),
        end: at(end),
        quantity: quantity.parse().expect("decimal"),
        amount: Fen(fen),
    }
}

fn candidate(registry: &Registry, r: UsageRecord) -> Candidate {
    let class = validate(registry, &r).unwrap_or_else(|e| panic!("{} is valid: {e}", r.record_id));
    let capacity = registry.sku(&r.sku).and_then(|s| s.capacity);
    Candidate {
        period: Period::of_instant(r.end),
        class,
        capacity,
        registry_version: 1,
        record: r,
    }
}

fn gpu(id: &str, start: &str, end: &str, quantity: &str, fen: i64) -> UsageRecord {
    record("dc-a", id, "ent-a", "a-gpu", start, end, quantity, fen)
}

/// Runs `test` on SQLite and, when reachable, PostgreSQL.
fn on_every_backend(test: fn(&str)) {
    let db = sqlite_db();
    test(&db.url);
    if let Some(db) = pg_db() {
        test(&db.url);
    }
}

fn check_recount(store: &mut dyn Store) {
    assert_eq!(
        store.accruals().expect("accruals"),
        store.recount_accruals().expect("recount"),
        "running accruals equal a recount from raw records"
    );
}

// A resend of stored records is all duplicates and leaves accruals unchanged.
#[test]
fn resend_is_duplicate_and_changes_nothing() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let batch = vec![
            candidate(
                &reg,
                gpu(
                    "r1",
                    "2025-03-01T00:00:00+08:00",
                    "2025-03-01T01:00:00+08:00",
                    "2",
                    4000,
                ),
            ),
            candidate(
                &reg,
                record(
                    "dc-b",
                    "r1",
                    "ent-b",
                    "b-tok",
                    "2025-03-01T00:00:00+08:00",
                    "2025-03-02T00:00:00+08:00",
                    "5.5",
                    12345,
                ),
            ),
        ];
        assert_eq!(
            store.ingest(&batch).unwrap(),
            vec![Decision::Accepted, Decision::Accepted]
        );
        let accruals = store.accruals().unwrap();
        assert_eq!(accruals.len(), 2);
        // The same instants spelled in another offset are the same content.
        let mut resend = batch.clone();
        resend[0].record.start = at("2025-02-28T16:00:00Z");
        assert_eq!(
            store.ingest(&resend).unwrap(),
            vec![Decision::Duplicate, Decision::Duplicate]
        );
        assert_eq!(store.accruals().unwrap(), accruals);
        assert_eq!(store.stats(None).unwrap().records, 2);
        check_recount(store.as_mut());
    });
}

// Same id with different content is a conflict and the stored record stands, also within one group.
#[test]
fn conflict_keeps_the_stored_record() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let first = gpu(
            "r1",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "1",
            2000,
        );
        let changed = gpu(
            "r1",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "1",
            1999,
        );
        let other = gpu(
            "r2",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "1",
            100,
        );
        let other_changed = gpu(
            "r2",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "1",
            101,
        );
        let decisions = store
            .ingest(&[
                candidate(&reg, first.clone()),
                candidate(&reg, changed.clone()),
                candidate(&reg, other.clone()),
                candidate(&reg, other.clone()),
                candidate(&reg, other_changed),
            ])
            .unwrap();
        assert_eq!(
            decisions,
            vec![
                Decision::Accepted,
                Decision::Conflict,
                Decision::Accepted,
                Decision::Duplicate,
                Decision::Conflict
            ]
        );
        assert_eq!(
            store.ingest(&[candidate(&reg, changed)]).unwrap(),
            vec![Decision::Conflict]
        );
        assert_eq!(
            store.record("dc-a", "r1").unwrap().expect("stored").record,
            first
        );
        assert_eq!(store.stats(Some("dc-a")).unwrap().amount_fen, 2100);
        check_recount(store.as_mut());
    });
}

// Capacity per SKU and clock hour: the record that would pass it is rejected, a duplicate of a
// stored record is still a duplicate when the hour is full, and a void frees its share.
#[test]
fn capacity_per_clock_hour() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        // 8 GPUs for the hour 00:00-01:00, and a two-hour record of 4 per hour straddling it.
        let a = gpu(
            "a",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "8",
            100,
        );
        let b = gpu(
            "b",
            "2025-03-01T00:30:00+08:00",
            "2025-03-01T02:30:00+08:00",
            "8",
            100,
        );
        let c = gpu(
            "c",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T00:30:00+08:00",
            "1",
            100,
        );
        let d = gpu(
            "d",
            "2025-03-01T01:00:00+08:00",
            "2025-03-01T02:00:00+08:00",
            "6",
            100,
        );
        let decisions = store
            .ingest(&[
                candidate(&reg, a.clone()),
                candidate(&reg, b.clone()),
                candidate(&reg, c),
                candidate(&reg, d.clone()),
            ])
            .unwrap();
        // a fills 8 of 10; b would add 2 to hour 0 (ok: 10), 4 to hour 1, 2 to hour 2; c adds 1 to hour 0 (11 > 10).
        assert_eq!(decisions[0], Decision::Accepted);
        assert_eq!(decisions[1], Decision::Accepted);
        assert!(
            matches!(&decisions[2], Decision::OverCapacity(m) if m.contains("capacity 10")),
            "{:?}",
            decisions[2]
        );
        assert_eq!(decisions[3], Decision::Accepted, "hour 1 holds 4 + 6 = 10");
        assert_eq!(
            store.ingest(&[candidate(&reg, a.clone())]).unwrap(),
            vec![Decision::Duplicate]
        );
        let e = gpu(
            "e",
            "2025-03-01T01:15:00+08:00",
            "2025-03-01T01:30:00+08:00",
            "0.1",
            1,
        );
        assert!(matches!(
            store.ingest(&[candidate(&reg, e.clone())]).unwrap()[0],
            Decision::OverCapacity(_)
        ));
        assert!(matches!(
            store.void("dc-a", "d", "wrong job", Utc::now()).unwrap(),
            VoidResult::Voided { .. }
        ));
        assert_eq!(
            store.ingest(&[candidate(&reg, e)]).unwrap(),
            vec![Decision::Accepted],
            "the void freed hour 1"
        );
        check_recount(store.as_mut());
    });
}

// A void subtracts from accruals once; voiding again or an unknown record changes nothing.
#[test]
fn void_subtracts_once() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let r = gpu(
            "r1",
            "2025-03-31T23:00:00+08:00",
            "2025-03-31T23:30:00Z",
            "1",
            2000,
        );
        assert_eq!(
            store.ingest(&[candidate(&reg, r.clone())]).unwrap(),
            vec![Decision::Accepted]
        );
        let accruals = store.accruals().unwrap();
        assert_eq!(accruals.len(), 1);
        assert_eq!(
            accruals[0].period, "2025-04",
            "the period holds the end instant in Shanghai time: 2025-04-01T07:30+08:00"
        );
        assert!(matches!(
            store
                .void("dc-a", "r1", "duplicate billing", Utc::now())
                .unwrap(),
            VoidResult::Voided { .. }
        ));
        assert!(matches!(
            store.void("dc-a", "r1", "again", Utc::now()).unwrap(),
            VoidResult::AlreadyVoided { .. }
        ));
        assert_eq!(
            store.void("dc-a", "nope", "x", Utc::now()).unwrap(),
            VoidResult::NotFound
        );
        assert_eq!(
            store.void("dc-x", "r1", "x", Utc::now()).unwrap(),
            VoidResult::NotFound
        );
        assert!(store.accruals().unwrap().is_empty());
        let stored = store.record("dc-a", "r1").unwrap().expect("kept");
        assert_eq!(stored.void_reason.as_deref(), Some("duplicate billing"));
        // A resend of a voided record is a duplicate: the stored (void) record stands.
        assert_eq!(
            store.ingest(&[candidate(&reg, r)]).unwrap(),
            vec![Decision::Duplicate]
        );
        assert_eq!(
            store.stats(None).unwrap(),
            suanli_store::Stats {
                records: 1,
                voided_records: 1,
                amount_fen: 0
            }
        );
        check_recount(store.as_mut());
    });
}

// Reopening a store keeps records, accruals, capacity, registry versions and tokens.
#[test]
fn reopen_keeps_everything() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let a = gpu(
            "a",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "10",
            100,
        );
        assert_eq!(
            store.ingest(&[candidate(&reg, a.clone())]).unwrap(),
            vec![Decision::Accepted]
        );
        store
            .token_insert("h1", &Principal::Provider("dc-a".into()), Utc::now())
            .unwrap();
        let accruals = store.accruals().unwrap();
        drop(store);
        let mut store = suanli_store::open(url).expect("reopens");
        assert_eq!(
            store.registry_current().unwrap().expect("version").version,
            1
        );
        assert_eq!(store.accruals().unwrap(), accruals);
        assert_eq!(
            store.token_lookup("h1").unwrap(),
            Some(Principal::Provider("dc-a".into()))
        );
        assert_eq!(store.token_lookup("h2").unwrap(), None);
        decides_as_before(store.as_mut(), &reg, a.clone(), "reopened");
        let v2 = store
            .registry_insert("other-hash", REGISTRY, &RegistryNames::of(&reg), Utc::now())
            .unwrap();
        assert_eq!(v2, 2);
        drop(store);
        // Opening reads no record; a server prepares ingest before it listens, anyone else at
        // the first ingest or void: the same decisions either way.
        for prepare in [true, false] {
            let mut store = suanli_store::open(url).expect("reopens");
            if prepare {
                store.prepare_ingest().expect("prepares ingest");
            }
            decides_as_before(
                store.as_mut(),
                &reg,
                a.clone(),
                &format!("prepared: {prepare}"),
            );
        }
    });
}

/// After a restart, `stored` (a record using all of its hour's capacity) is a duplicate and one
/// more GPU-hour hundredth in that hour is over capacity (and so not stored: it can be asked
/// again).
fn decides_as_before(store: &mut dyn Store, reg: &Registry, stored: UsageRecord, why: &str) {
    assert_eq!(
        store.ingest(&[candidate(reg, stored)]).unwrap(),
        vec![Decision::Duplicate],
        "{why}"
    );
    let more = gpu(
        "b",
        "2025-03-01T00:10:00+08:00",
        "2025-03-01T00:20:00+08:00",
        "0.01",
        1,
    );
    assert!(
        matches!(
            store.ingest(&[candidate(reg, more)]).unwrap()[0],
            Decision::OverCapacity(_)
        ),
        "capacity survives a restart: {why}"
    );
}

// Seeded random groups with repeats and voids: accruals always equal a recount, and every key is stored once.
#[test]
fn random_groups_keep_accruals_exact() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let mut seed: u64 = 0x5eed_2025;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = std::collections::HashSet::new();
        for round in 0..20 {
            let mut group = Vec::new();
            for _ in 0..50 {
                let id = format!("k{}", next() % 400);
                let day = 1 + next() % 28;
                let hour = next() % 24;
                let start = format!(
                    "2025-{:02}-{day:02}T{hour:02}:00:00+08:00",
                    1 + (next() % 3)
                );
                let end = (at(&start) + chrono::Duration::minutes(30)).to_rfc3339();
                let r = if next().is_multiple_of(2) {
                    record("dc-a", &id, "ent-a", "a-gpu", &start, &end, "0.5", 10)
                } else {
                    record(
                        "dc-b",
                        &id,
                        if next().is_multiple_of(2) {
                            "ent-a"
                        } else {
                            "ent-b"
                        },
                        "b-tok",
                        &start,
                        &end,
                        "3",
                        17,
                    )
                };
                group.push(candidate(&reg, r));
            }
            let decisions = store.ingest(&group).unwrap();
            for (c, d) in group.iter().zip(&decisions) {
                if *d == Decision::Accepted {
                    assert!(
                        accepted.insert((c.record.provider.clone(), c.record.record_id.clone())),
                        "a key is accepted once"
                    );
                }
            }
            if round % 5 == 4 {
                let _ = store
                    .void(
                        "dc-a",
                        &format!("k{}", next() % 400),
                        "seeded void",
                        Utc::now(),
                    )
                    .unwrap();
            }
            check_recount(store.as_mut());
        }
        assert_eq!(store.stats(None).unwrap().records as usize, accepted.len());
    });
}

// Ingest statistics count every outcome of a committed group per (provider, Shanghai day,
// outcome) — including records rejected before the store — and keep at most
// EXAMPLES_PER_REASON_MAX examples per (provider, reason), on every backend.
#[test]
fn ingest_statistics_count_outcomes_and_cap_examples() {
    use suanli_store::ingest_stats::{self, EXAMPLES_PER_REASON_MAX, Rejected};
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let one = candidate(
            &reg,
            gpu(
                "r1",
                "2025-03-01T00:00:00+08:00",
                "2025-03-01T01:00:00+08:00",
                "2",
                4000,
            ),
        );
        let over = candidate(
            &reg,
            gpu(
                "r2",
                "2025-03-01T00:00:00+08:00",
                "2025-03-01T01:00:00+08:00",
                "9",
                100,
            ),
        );
        let rejected: Vec<Rejected> = (0..EXAMPLES_PER_REASON_MAX + 2)
            .map(|i| Rejected {
                provider: "dc-a".into(),
                record_id: format!("bad-{i}"),
                reason: "unknown_sku".into(),
                field: "sku".into(),
                message: format!("sku of bad-{i} is unknown"),
            })
            .collect();
        // 23:30 UTC is the next day in Shanghai.
        let at = DateTime::parse_from_rfc3339("2025-03-01T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let decisions = store.ingest_noting(&[&one, &over], &rejected, at).unwrap();
        assert_eq!(decisions[0], Decision::Accepted);
        assert!(matches!(decisions[1], Decision::OverCapacity(_)));
        let decisions = store.ingest_noting(&[&one], &rejected[..1], at).unwrap();
        assert_eq!(decisions, vec![Decision::Duplicate]);
        let mut daily = Vec::new();
        let mut reasons = Vec::new();
        store
            .transaction(&mut |tx| {
                daily = ingest_stats::daily(tx, "dc-a", "2025-03-01")?;
                reasons = ingest_stats::reasons(tx, "dc-a")?;
                Ok(())
            })
            .unwrap();
        let daily: Vec<(String, String, i64)> = daily
            .into_iter()
            .map(|d| (d.day, d.outcome, d.records))
            .collect();
        let n = i64::try_from(rejected.len()).unwrap();
        assert_eq!(
            daily,
            vec![
                ("2025-03-02".to_owned(), "accepted".to_owned(), 1),
                ("2025-03-02".to_owned(), "duplicate".to_owned(), 1),
                ("2025-03-02".to_owned(), "rejected".to_owned(), n + 1 + 1),
            ]
        );
        assert_eq!(reasons.len(), 2);
        let unknown = reasons.iter().find(|r| r.reason == "unknown_sku").unwrap();
        assert_eq!(unknown.records, n + 1);
        assert_eq!(
            unknown.examples.len(),
            usize::try_from(EXAMPLES_PER_REASON_MAX).unwrap(),
            "examples are capped"
        );
        let over = reasons
            .iter()
            .find(|r| r.reason == "over_capacity")
            .unwrap();
        // Each example keeps the field it is about, so the console can say it in any language.
        assert_eq!(
            (
                unknown.examples[0].record_id.as_str(),
                unknown.examples[0].field.as_str(),
                unknown.examples[0].message.as_str(),
            ),
            ("bad-0", "sku", "sku of bad-0 is unknown")
        );
        assert_eq!(
            (
                over.records,
                over.examples[0].record_id.as_str(),
                over.examples[0].field.as_str()
            ),
            (1, "r2", "quantity")
        );
        assert_eq!(ingest_stats::shanghai_day(at), "2025-03-02");
    });
}

// A void and what its hook writes (the server's audit entry) commit together: an error from the
// hook leaves the record live, its accrual whole and the hook's row unwritten (the crash
// harness found voids without their audit entry when the audit had a transaction of its own).
#[test]
fn void_commits_with_its_hook_or_not_at_all() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let r = gpu(
            "r1",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "1",
            1500,
        );
        assert_eq!(
            store.ingest(&[candidate(&reg, r)]).unwrap(),
            vec![Decision::Accepted]
        );
        let accruals = store.accruals().unwrap();
        let hook = "INSERT INTO tokens (token_hash, role, subject, created_at) VALUES ('hook', 'auditor', '', 'x')";
        let failed = store.void_audited("dc-a", "r1", "wrong", Utc::now(), &mut |tx, _| {
            tx.exec(hook, &[])?;
            Err(StoreError::Corrupt("the hook fails".into()))
        });
        assert!(failed.is_err(), "the hook's error is the void's");
        assert_eq!(
            store.record("dc-a", "r1").unwrap().unwrap().voided_at,
            None,
            "the void is rolled back"
        );
        assert_eq!(store.accruals().unwrap(), accruals, "accruals are whole");
        assert_eq!(
            store.token_lookup("hook").unwrap(),
            None,
            "the hook's row is rolled back"
        );

        let mut hook_at = String::new();
        let done = store
            .void_audited("dc-a", "r1", "wrong", Utc::now(), &mut |tx, at| {
                hook_at = at.to_owned();
                tx.exec(hook, &[]).map(|_| ())
            })
            .unwrap();
        assert_eq!(done, VoidResult::Voided { at: hook_at });
        assert_eq!(
            store.token_lookup("hook").unwrap(),
            Some(Principal::Auditor),
            "the hook's row commits with the void"
        );
        assert!(
            store.accruals().unwrap().is_empty(),
            "the accrual is subtracted"
        );
        check_recount(&mut *store);
    });
}

/// Rows of `accrual_pending`: ingest groups whose accrual deltas are not folded in yet.
fn pending_rows(store: &mut dyn Store) -> i64 {
    let mut n = -1;
    store
        .transaction(&mut |sql| {
            n = sql.query("SELECT COUNT(*) FROM accrual_pending", &[])?[0][0].int()?;
            Ok(())
        })
        .expect("count");
    n
}

// An ingest group appends its accrual deltas as one pending row; every 128 groups (or second)
// ingest folds the pending rows into the totals. Readers, in this process or another, see the
// table plus what is pending: always exactly the recount, before, at and after a fold, with a
// void in between.
#[test]
fn pending_accrual_deltas_fold_and_readers_always_see_the_recount() {
    on_every_backend(|url| {
        // Opened before the registry interned any name: it must read names it never saw.
        let mut other = suanli_store::open(url).expect("store opens");
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let mut folded = false;
        for i in 0..300 {
            let day = 1 + i % 28;
            let month = 1 + (i / 28) % 12;
            let (beneficiary, fen) = if i % 3 == 0 {
                ("ent-a", 100)
            } else {
                ("ent-b", 7)
            };
            let r = record(
                "dc-b",
                &format!("p{i}"),
                beneficiary,
                "b-tok",
                &format!("2025-{month:02}-{day:02}T00:00:00+08:00"),
                &format!("2025-{month:02}-{day:02}T01:00:00+08:00"),
                "1",
                fen + i as i64,
            );
            assert_eq!(
                store.ingest(&[candidate(&reg, r)]).unwrap(),
                vec![Decision::Accepted]
            );
            if i == 150 {
                let voided = store.void("dc-b", "p10", "withdrawn", Utc::now()).unwrap();
                assert!(matches!(voided, VoidResult::Voided { .. }), "{voided:?}");
            }
            let pending = pending_rows(store.as_mut());
            assert!(pending <= 128, "group {i}: {pending} pending rows");
            folded |= pending < i64::from(i + 1);
            if [0, 1, 126, 127, 128, 129, 150, 299].contains(&i) {
                check_recount(store.as_mut());
                assert_eq!(
                    other.accruals().unwrap(),
                    store.accruals().unwrap(),
                    "group {i}: another store reads the same totals"
                );
            }
        }
        assert!(folded, "pending deltas were folded");
        assert!(pending_rows(store.as_mut()) > 0, "some deltas are pending");
        let total: i64 = store.accruals().unwrap().iter().map(|a| a.records).sum();
        assert_eq!(total, 299, "300 records, one void");
    });
}

// A group's daily counts go out as multi-row upserts of at most 256 rows: a group naming 300
// providers (rejected records may name any) is counted for each of them, twice over.
#[test]
fn ingest_statistics_count_a_group_with_hundreds_of_providers() {
    use suanli_store::ingest_stats::{self, Rejected};
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let rejected: Vec<Rejected> = (0..300)
            .map(|i| Rejected {
                provider: format!("p-{i}"),
                record_id: format!("bad-{i}"),
                reason: "unknown_provider".into(),
                field: "provider".into(),
                message: format!("provider of bad-{i} is unknown"),
            })
            .collect();
        let at = Utc::now();
        for _ in 0..2 {
            store.ingest_noting(&[], &rejected, at).unwrap();
        }
        for provider in ["p-0", "p-255", "p-256", "p-299"] {
            let mut daily = Vec::new();
            store
                .transaction(&mut |tx| {
                    daily = ingest_stats::daily(tx, provider, "2000-01-01")?;
                    Ok(())
                })
                .unwrap();
            let daily: Vec<(String, i64)> =
                daily.into_iter().map(|d| (d.outcome, d.records)).collect();
            assert_eq!(daily, vec![("rejected".to_owned(), 2)], "{provider}");
        }
    });
}

// A server gone quiet folds what is pending (the server calls `fold_accruals` every second):
// not within a second of the last fold, then all of it, after which the table alone equals the
// recount.
#[test]
fn a_quiet_store_folds_its_pending_deltas() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        // An ingest folds on its own a second after the last fold, which a loaded machine can
        // reach between these; the next group after such a fold leaves its deltas pending.
        let mut i = 0;
        while i < 3 || pending_rows(store.as_mut()) == 0 {
            assert!(i < 9, "nothing pending after {i} groups");
            let r = gpu(
                &format!("q{i}"),
                &format!("2025-03-0{}T00:00:00+08:00", i + 1),
                &format!("2025-03-0{}T01:00:00+08:00", i + 1),
                "1",
                1000 + i,
            );
            store.ingest(&[candidate(&reg, r)]).unwrap();
            i += 1;
        }
        assert!(!store.fold_accruals().unwrap(), "not quiet yet");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(store.fold_accruals().unwrap(), "quiet for a second: folds");
        assert_eq!(pending_rows(store.as_mut()), 0);
        check_recount(store.as_mut());
        let mut table = Vec::new();
        store
            .transaction(&mut |tx| {
                table = tx.query(
                    "SELECT amount_fen, records FROM accruals WHERE beneficiary = 'ent-a'",
                    &[],
                )?;
                Ok(())
            })
            .unwrap();
        assert_eq!(table.len(), 1);
        // Records q0.. of 1000, 1001, … fen.
        assert_eq!(
            (table[0][0].int().unwrap(), table[0][1].int().unwrap()),
            ((0..i).map(|k| 1000 + k).sum::<i64>(), i)
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(!store.fold_accruals().unwrap(), "nothing pending");
    });
}

// A PostgreSQL store's connection pushes its backend's writes to the disk as it goes
// (`backend_flush_after`), unless the server or the URL already set a value; without it the
// kernel wrote ingest's pages back in 30-s bursts that stalled commits (BENCHMARKS.md).
#[test]
fn a_postgres_store_flushes_its_backend_writes_as_it_goes() {
    let Some(db) = pg_db() else {
        return;
    };
    let setting = |url: &str| {
        let mut store = suanli_store::open(url).expect("store opens");
        let mut value = String::new();
        store
            .transaction(&mut |tx| {
                value =
                    tx.query("SELECT current_setting('backend_flush_after')", &[])?[0][0].text()?;
                Ok(())
            })
            .unwrap();
        value
    };
    let default: String = postgres::Client::connect(&db.url, postgres::NoTls)
        .expect("connects")
        .query_one("SHOW backend_flush_after", &[])
        .expect("shows")
        .get(0);
    let expected = if default == "0" { "1MB" } else { &default };
    assert_eq!(setting(&db.url), expected);
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let chosen = format!(
        "{}{separator}options=-c%20backend_flush_after%3D256kB",
        db.url
    );
    assert_eq!(setting(&chosen), "256kB", "an operator's value is kept");
}

// Pending accrual deltas (tens of KB a group) are stored with lz4, whose insert costs a tenth
// of the default pglz's, or uncompressed on a server built without lz4 (migration 0009).
#[test]
fn postgres_stores_pending_deltas_with_lz4() {
    let Some(db) = pg_db() else {
        return;
    };
    let mut store = suanli_store::open(&db.url).expect("store opens");
    let mut how = Vec::new();
    store
        .transaction(&mut |tx| {
            how = tx.query(
                "SELECT attcompression::text, attstorage::text FROM pg_attribute WHERE attrelid = 'accrual_pending'::regclass AND attname = 'deltas'",
                &[],
            )?[0]
                .iter()
                .map(|v| v.text())
                .collect::<Result<_, _>>()?;
            Ok(())
        })
        .unwrap();
    assert!(
        how == ["l", "x"] || how == ["", "e"],
        "accrual_pending.deltas is stored as {how:?}"
    );
}

// Every ingest group first reads what other replicas appended to `ingest_log` since it last
// looked. That read goes by the log's key however long the log has grown (it keeps an hour of
// groups): a plan cached while the log was a few rows, a sequential scan, had every group read
// the whole log, so that each group cost more than the last (BENCHMARKS.md).
#[test]
fn postgres_catch_up_reads_only_the_new_end_of_a_long_log() {
    let Some(db) = pg_db() else {
        return;
    };
    let reg = registry();
    let mut store = open_loaded(&db.url, &reg);
    let mut group = |n: usize| {
        let r = record(
            "dc-b",
            &format!("g{n}"),
            "ent-b",
            "b-tok",
            "2025-03-01T00:00:00+08:00",
            "2025-03-02T00:00:00+08:00",
            "1",
            100,
        );
        assert_eq!(
            store.ingest(&[candidate(&reg, r)]).unwrap(),
            vec![Decision::Accepted]
        );
    };
    // Enough groups, while the log is short, for PostgreSQL to settle on a plan for a statement
    // prepared once (it does after five executions).
    for n in 0..10 {
        group(n);
    }
    // An hour of other replicas' groups, already applied: older than every seq this store
    // will ask for.
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).expect("connects");
    admin
        .execute(
            "INSERT INTO ingest_log (seq, writer, keys, capacity) \
             SELECT -g, 'another replica', ''::bytea, ''::bytea FROM generate_series(1, 100000) g",
            &[],
        )
        .expect("long log");
    for n in 10..40 {
        group(n);
    }
    // Backends report their table statistics when idle, within seconds: wait until they count
    // every row inserted into the log (the 100,000 and one per group). A backend reports all
    // it has pending at once, so by then the reads of every group's catch-up are counted too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (inserted, rows_scanned) = loop {
        let row = admin
            .query_one(
                "SELECT COALESCE(n_tup_ins, 0), COALESCE(seq_tup_read, 0) \
                 FROM pg_stat_user_tables WHERE relname = 'ingest_log'",
                &[],
            )
            .expect("statistics");
        let (inserted, rows): (i64, i64) = (row.get(0), row.get(1));
        if inserted >= 100_040 || std::time::Instant::now() > deadline {
            break (inserted, rows);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(inserted, 100_040, "the statistics count every log row");
    assert!(
        rows_scanned < 100_000,
        "30 groups read {rows_scanned} log rows sequentially; the log's key would read none"
    );
    assert_eq!(store.stats(None).unwrap().records, 40);
}

// A server's PostgreSQL store folds the pending deltas on a thread of its own, beside ingest:
// the thread empties `accrual_pending` within seconds, with a void and readers in another
// store in between, and readers see the recount throughout. SQLite keeps folding in ingest
// (one writing connection).
#[test]
fn a_postgres_store_folds_in_the_background_beside_ingest() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let background = store.fold_in_background().unwrap();
        assert_eq!(background, url.starts_with("postgres"), "{url}");
        if !background {
            return;
        }
        // Concurrent readers and a void while the thread folds.
        let mut reader = suanli_store::open(url).expect("store opens");
        let ingest = |store: &mut Box<dyn suanli_store::Store>, i: usize| {
            let day = 1 + i % 28;
            let r = record(
                "dc-b",
                &format!("bg{i}"),
                if i.is_multiple_of(2) {
                    "ent-a"
                } else {
                    "ent-b"
                },
                "b-tok",
                &format!("2025-05-{day:02}T00:00:00+08:00"),
                &format!("2025-05-{day:02}T01:00:00+08:00"),
                "1",
                10 + i as i64,
            );
            assert_eq!(
                store.ingest(&[candidate(&reg, r)]).unwrap(),
                vec![Decision::Accepted]
            );
        };
        for i in 0..200 {
            ingest(&mut store, i);
            if i == 100 {
                let voided = store.void("dc-b", "bg7", "withdrawn", Utc::now()).unwrap();
                assert!(matches!(voided, VoidResult::Voided { .. }), "{voided:?}");
            }
            if i.is_multiple_of(40) {
                assert_eq!(
                    reader.accruals().unwrap(),
                    store.recount_accruals().unwrap()
                );
            }
        }
        assert!(
            !store.fold_accruals().unwrap(),
            "the thread folds, not this"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pending_rows(store.as_mut()) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the background fold emptied accrual_pending within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        check_recount(store.as_mut());
        let total: i64 = store.accruals().unwrap().iter().map(|a| a.records).sum();
        assert_eq!(total, 199, "200 records, one void");
        // What the thread folded is in the table itself.
        let mut table = 0;
        store
            .transaction(&mut |tx| {
                table = tx.query("SELECT SUM(records)::bigint FROM accruals", &[])?[0][0].int()?;
                Ok(())
            })
            .unwrap();
        assert_eq!(table, 199);
        // Ingest after the thread has folded is folded too; dropping the store stops it.
        ingest(&mut store, 200);
        drop(store);
        assert_eq!(
            reader
                .accruals()
                .unwrap()
                .iter()
                .map(|a| a.records)
                .sum::<i64>(),
            200
        );
    });
}

// A batch is acknowledged right after its commit, so a PostgreSQL connection whose commits
// return before they are on disk (here `synchronous_commit = off` set in the URL's options) is
// refused at open, naming the setting and the opt-out.
#[test]
fn postgres_refuses_commits_that_are_not_flushed() {
    let Some(db) = pg_db() else {
        return;
    };
    // Make the tables first, as a server would have, so only the durability check can refuse.
    drop(suanli_store::open(&db.url).expect("store opens with the server's defaults"));
    let unsynced = format!("{}?options=-c%20synchronous_commit%3Doff", db.url);
    let err = suanli_store::open(&unsynced).err().expect("refused");
    let message = err.to_string();
    assert!(
        message.contains("synchronous_commit = off")
            && message.contains(suanli_store::postgres::ALLOW_UNSYNCED_COMMIT_ENV),
        "{message}"
    );
}

/// A candidate that skipped validation, as an older version (with no bound on amounts) could
/// have stored it.
fn unvalidated(reg: &Registry, id: &str, fen: i64) -> Candidate {
    let r = record(
        "dc-b",
        id,
        "ent-a",
        "b-tok",
        "2025-03-01T00:00:00+08:00",
        "2025-03-01T01:00:00+08:00",
        "1",
        0,
    );
    let mut c = candidate(reg, r);
    c.record.amount = Fen(fen);
    c
}

// A provider's records of a month add up to at most PROVIDER_MONTH_FEN_MAX, so no total the
// store keeps can pass 64 bits, whatever a provider sends: an amount that would pass the bound
// is refused, in a group or across groups, naming provider and month, while the other
// provider's records and the provider's other months go on. The bound holds after a restart
// (prepared or not) and a void gives its amount back.
#[test]
fn a_providers_month_is_bounded_so_no_total_passes_64_bits() {
    use suanli_domain::usage::PROVIDER_MONTH_FEN_MAX;
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let decisions = store
            .ingest(&[
                unvalidated(&reg, "max", i64::MAX),
                unvalidated(&reg, "one", 1),
            ])
            .expect("a group with an amount beyond every bound");
        assert!(
            matches!(&decisions[0], Decision::OverProviderMonth(m) if m.contains("\"dc-b\"") && m.contains("2025-03")),
            "{decisions:?}"
        );
        assert_eq!(decisions[1], Decision::Accepted);
        let big = PROVIDER_MONTH_FEN_MAX / 2;
        assert_eq!(
            store.ingest(&[unvalidated(&reg, "half-1", big)]).unwrap(),
            vec![Decision::Accepted]
        );
        let other_month = |id: &str, fen: i64| {
            let r = record(
                "dc-b",
                id,
                "ent-b",
                "b-tok",
                "2025-04-01T00:00:00+08:00",
                "2025-04-01T01:00:00+08:00",
                "1",
                0,
            );
            let mut c = candidate(&reg, r);
            c.record.amount = Fen(fen);
            c
        };
        let gpu_a = gpu(
            "a1",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "1",
            2000,
        );
        // In one group: the second half fits exactly only without the 1 fen stored before.
        assert_eq!(
            store
                .ingest(&[
                    unvalidated(&reg, "half-2", big),
                    candidate(&reg, gpu_a.clone()),
                    other_month("april", big),
                ])
                .unwrap()
                .iter()
                .map(|d| matches!(d, Decision::Accepted))
                .collect::<Vec<_>>(),
            vec![false, true, true],
            "dc-b's March is full; dc-a and dc-b's April are not"
        );
        assert_eq!(
            store
                .ingest(&[unvalidated(&reg, "half-less", big - 1)])
                .unwrap(),
            vec![Decision::Accepted],
            "up to the bound exactly"
        );
        check_recount(store.as_mut());
        drop(store);
        for prepare in [true, false] {
            let mut store = suanli_store::open(url).expect("reopens");
            if prepare {
                store.prepare_ingest().expect("prepares ingest");
            }
            assert!(
                matches!(
                    store.ingest(&[unvalidated(&reg, "more", 1)]).unwrap()[0],
                    Decision::OverProviderMonth(_)
                ),
                "the bound survives a restart (prepared: {prepare})"
            );
        }
        let mut store = suanli_store::open(url).expect("reopens");
        let voided = store.void("dc-b", "one", "withdrawn", Utc::now()).unwrap();
        assert!(matches!(voided, VoidResult::Voided { .. }), "{voided:?}");
        assert_eq!(
            store.ingest(&[unvalidated(&reg, "more", 1)]).unwrap(),
            vec![Decision::Accepted],
            "the void gave its fen back"
        );
        check_recount(store.as_mut());
        let march: i64 = store
            .accruals()
            .unwrap()
            .iter()
            .filter(|a| a.provider == "dc-b" && a.period == "2025-03")
            .map(|a| a.amount_fen)
            .sum();
        assert_eq!(march, PROVIDER_MONTH_FEN_MAX);
    });
}

// A row of the audit log that holds bytes that are not text is named by its seq.
#[test]
fn an_audit_row_that_is_not_text_is_named_by_its_seq() {
    let db = sqlite_db();
    let mut store = suanli_store::open(&db.url).expect("store opens");
    store
        .transaction(&mut |tx| {
            for i in 0..2 {
                suanli_store::audit::append(
                    tx,
                    suanli_domain::audit::NewEntry {
                        actor: format!("admin:{i}"),
                        role: "admin".into(),
                        action: "token.create".into(),
                        subject: "token:x".into(),
                        at: "2025-03-01T00:00:00Z".into(),
                        request_id: String::new(),
                        digest: String::new(),
                    },
                )?;
            }
            tx.exec("UPDATE audit_log SET actor = X'ff00' WHERE seq = 2", &[])?;
            Ok(())
        })
        .expect("entries written");
    let mut err = None;
    let _ = store.transaction(&mut |tx| {
        err = suanli_store::audit::entries(tx).err();
        Ok(())
    });
    let err = err
        .expect("a row that is not text fails the read")
        .to_string();
    assert!(err.contains("seq = 2") && err.contains("actor"), "{err}");
}

// The first actor of an action on a subject is found, on every backend: the console names a
// run's creator by it (its `run.create` audit entry).
#[test]
fn the_first_actor_of_an_action_on_a_subject() {
    on_every_backend(|url| {
        let mut store = suanli_store::open(url).expect("store opens");
        let mut found = Vec::new();
        store
            .transaction(&mut |tx| {
                for (actor, action, subject) in [
                    ("user:7 甲 (a)", "run.create", "run:1"),
                    ("user:8 乙 (b)", "run.approve", "run:1"),
                    ("user:9 丙 (c)", "run.create", "run:2"),
                    ("user:8 乙 (b)", "run.create", "run:1"),
                ] {
                    suanli_store::audit::append(
                        tx,
                        suanli_domain::audit::NewEntry {
                            actor: actor.into(),
                            role: "finance".into(),
                            action: action.into(),
                            subject: subject.into(),
                            at: "2025-03-01T00:00:00Z".into(),
                            request_id: String::new(),
                            digest: String::new(),
                        },
                    )?;
                }
                for (action, subject) in [
                    ("run.create", "run:1"),
                    ("run.create", "run:2"),
                    ("run.approve", "run:2"),
                ] {
                    found.push(suanli_store::audit::first_actor(tx, action, subject)?);
                }
                Ok(())
            })
            .expect("entries written and read");
        assert_eq!(
            found,
            [
                Some("user:7 甲 (a)".to_owned()),
                Some("user:9 丙 (c)".to_owned()),
                None
            ],
            "{url}"
        );
    });
}

// A registry's names interned in slices before its version is stored (as a large load does)
// are interned once: the version interns nothing more, records for them are stored, and a
// reopened store (or another replica) knows them.
#[test]
fn names_interned_in_slices_before_the_version_serve_ingest() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = suanli_store::open(url).expect("store opens");
        let mut names = RegistryNames::of(&reg);
        // A city's worth of names beside the registry's own, one of them listed twice.
        names
            .beneficiaries
            .extend((0..20_000).map(|i| format!("city-{i}")));
        names.beneficiaries.push("city-7".into());
        let mut interned = 0;
        for slice in names.slices(3_000) {
            interned += store.registry_intern(&slice).expect("slice interned");
        }
        assert_eq!(interned, 2 + 2 + 2 + 20_000, "each name once");
        assert_eq!(store.registry_intern(&names).unwrap(), 0, "nothing left");
        let version = store
            .registry_insert(&reg.content_hash, REGISTRY, &names, Utc::now())
            .unwrap();
        assert_eq!(version, 1);
        let a = gpu(
            "a",
            "2025-03-01T00:00:00+08:00",
            "2025-03-01T01:00:00+08:00",
            "1",
            100,
        );
        assert_eq!(
            store.ingest(&[candidate(&reg, a)]).unwrap(),
            vec![Decision::Accepted]
        );
        drop(store);
        let mut store = suanli_store::open(url).expect("reopens");
        assert_eq!(
            store.registry_intern(&names).unwrap(),
            0,
            "known after reopening"
        );
        check_recount(store.as_mut());
    });
}

/// Adds delta rows into totals keyed like [`AccrualRow`] without its amounts.
fn apply_accrual_deltas(
    totals: &mut std::collections::BTreeMap<suanli_store::AccrualRow, (i64, i64)>,
    rows: Vec<suanli_store::AccrualRow>,
) {
    for r in rows {
        let key = suanli_store::AccrualRow {
            amount_fen: 0,
            records: 0,
            ..r.clone()
        };
        let t = totals.entry(key.clone()).or_insert((0, 0));
        t.0 += r.amount_fen;
        t.1 += r.records;
        if *t == (0, 0) {
            totals.remove(&key);
        }
    }
}

fn as_rows(
    totals: &std::collections::BTreeMap<suanli_store::AccrualRow, (i64, i64)>,
) -> Vec<suanli_store::AccrualRow> {
    totals
        .iter()
        .map(|(k, (a, n))| suanli_store::AccrualRow {
            amount_fen: *a,
            records: *n,
            ..k.clone()
        })
        .collect()
}

// A reader that applies the accrual deltas since its mark keeps exactly the totals, through
// ingest groups, folds and voids; a mark of another store gets every total again.
#[test]
fn accrual_changes_since_a_mark_are_the_deltas_of_later_commits() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let first = store.accrual_changes_since(None).expect("changes");
        assert!(first.complete, "without a mark every total is read");
        assert!(first.rows.is_empty());
        let mut totals = std::collections::BTreeMap::new();
        let mut mark = first.mark;
        let none = store.accrual_changes_since(Some(mark)).expect("changes");
        assert!(!none.complete && none.rows.is_empty(), "nothing changed");
        for i in 0..40u32 {
            let day = i % 28 + 1;
            let batch = vec![
                candidate(
                    &reg,
                    gpu(
                        &format!("g{i}"),
                        &format!("2025-03-{day:02}T00:00:00+08:00"),
                        &format!("2025-03-{day:02}T00:30:00+08:00"),
                        "1",
                        1000 + i64::from(i),
                    ),
                ),
                candidate(
                    &reg,
                    record(
                        "dc-b",
                        &format!("t{i}"),
                        if i % 2 == 0 { "ent-a" } else { "ent-b" },
                        "b-tok",
                        "2025-04-01T00:00:00+08:00",
                        "2025-04-02T00:00:00+08:00",
                        "1",
                        77 + i64::from(i),
                    ),
                ),
            ];
            store.ingest(&batch).expect("ingest");
            if i % 7 == 3 {
                store
                    .void("dc-a", &format!("g{i}"), "wrong", Utc::now())
                    .expect("void");
            }
            if i % 5 == 0 {
                let changes = store.accrual_changes_since(Some(mark)).expect("changes");
                assert!(
                    !changes.complete,
                    "the store saw every change since the mark"
                );
                apply_accrual_deltas(&mut totals, changes.rows);
                mark = changes.mark;
                assert_eq!(
                    as_rows(&totals),
                    store.accruals().unwrap(),
                    "after group {i}"
                );
            }
        }
        let changes = store.accrual_changes_since(Some(mark)).expect("changes");
        apply_accrual_deltas(&mut totals, changes.rows);
        assert_eq!(as_rows(&totals), store.recount_accruals().unwrap());
        // Voiding everything nets every key to nothing.
        for i in 0..40u32 {
            store
                .void("dc-a", &format!("g{i}"), "x", Utc::now())
                .unwrap();
            store
                .void("dc-b", &format!("t{i}"), "x", Utc::now())
                .unwrap();
        }
        let changes = store.accrual_changes_since(Some(changes.mark)).unwrap();
        apply_accrual_deltas(&mut totals, changes.rows);
        assert!(totals.is_empty(), "all voided: {totals:?}");
        // Another store's mark is not this store's history.
        let mut other = suanli_store::open(url).expect("second store");
        let foreign = other.accrual_changes_since(None).unwrap().mark;
        let changes = store.accrual_changes_since(Some(foreign)).unwrap();
        assert!(changes.complete, "a foreign mark reads every total");
    });
}

// On PostgreSQL a commit of another server on the same database is not in this store's log:
// the next call reads every total instead of missing it.
#[test]
fn postgres_accrual_changes_read_everything_after_another_servers_commit() {
    let Some(db) = pg_db() else { return };
    let reg = registry();
    let mut store = open_loaded(&db.url, &reg);
    let mut other = suanli_store::open(&db.url).expect("second server");
    let mark = store.accrual_changes_since(None).unwrap().mark;
    other
        .ingest(&[candidate(
            &reg,
            gpu(
                "x1",
                "2025-03-01T00:00:00+08:00",
                "2025-03-01T00:30:00+08:00",
                "1",
                500,
            ),
        )])
        .unwrap();
    let changes = store.accrual_changes_since(Some(mark)).unwrap();
    assert!(
        changes.complete,
        "another server's commit forces a full read"
    );
    assert_eq!(changes.rows, store.accruals().unwrap());
    assert_eq!(changes.rows.len(), 1);
    let again = store.accrual_changes_since(Some(changes.mark)).unwrap();
    assert!(!again.complete && again.rows.is_empty());
}

// A payment reference names one live payment (awaiting or confirmed) even if two writers race
// past the app's check: the database refuses the second; a withdrawn payment frees it. The
// rows read back as written, and a user's last sign-in is kept.
#[test]
fn a_payment_reference_is_held_by_one_live_payment() {
    use suanli_store::payments::{self, NewPayment};
    on_every_backend(|url| {
        let mut store = suanli_store::open(url).expect("store opens");
        let new = NewPayment {
            programme: "nat".into(),
            payee: "ent-a".into(),
            amount_fen: 30_000,
            reference: "BANK-1".into(),
            recorded_by: "财务一号 (finance1)".into(),
            recorded_by_user_id: Some(7),
            recorded_at: "2025-04-01T02:00:00.000Z".into(),
        };
        let mut first = 0;
        store
            .transaction(&mut |tx| {
                first = payments::insert(tx, &new)?;
                Ok(())
            })
            .expect("the first payment");
        let twice = store.transaction(&mut |tx| payments::insert(tx, &new).map(|_| ()));
        assert!(twice.is_err(), "a second live payment with the reference");
        store
            .transaction(&mut |tx| {
                let row = payments::get(tx, first)?.expect("stored");
                assert_eq!(
                    (row.status.as_str(), row.recorded_by_user_id, row.amount_fen),
                    ("awaiting", Some(7), 30_000)
                );
                assert_eq!(payments::awaiting_for(tx, "nat", "ent-a")?, vec![row]);
                assert!(payments::withdraw(tx, first, "财务二号 (finance2)", "t")?);
                assert!(!payments::withdraw(tx, first, "财务二号 (finance2)", "t")?);
                assert!(!payments::confirm(tx, first, "x", Some(8), "t", 1)?);
                assert_eq!(payments::live_by_reference(tx, "BANK-1")?, None);
                let second = payments::insert(tx, &new)?;
                assert!(payments::confirm(
                    tx,
                    second,
                    "财务二号 (finance2)",
                    Some(8),
                    "t",
                    5
                )?);
                let live = payments::live_by_reference(tx, "BANK-1")?.expect("live");
                assert_eq!(
                    (live.payment_id, live.status.as_str(), live.journal_id),
                    (second, "confirmed", Some(5))
                );
                assert_eq!(payments::list(tx, false, 10)?.len(), 2);
                assert_eq!(payments::list(tx, false, 1)?[0].payment_id, second);
                assert!(payments::list(tx, true, 10)?.is_empty());
                Ok(())
            })
            .expect("payments read and written");
        store
            .transaction(&mut |tx| {
                let user = suanli_store::users::service_account(tx, &Principal::Finance, "t0")?;
                assert_eq!(user.last_signin_at, None);
                suanli_store::users::set_last_signin(tx, user.user_id, "t1")?;
                let again = suanli_store::users::by_id(tx, user.user_id)?.expect("user");
                assert_eq!(again.last_signin_at.as_deref(), Some("t1"));
                Ok(())
            })
            .expect("users");
    });
}

// A line's records come back a bounded page at a time in record-id order, void ones with their
// void state, and only the line's (beneficiary, provider, class, month); their totals are what
// the line's accrual holds.
#[test]
fn a_lines_records_page_in_order_with_their_void_state() {
    on_every_backend(|url| {
        let reg = registry();
        let mut store = open_loaded(url, &reg);
        let march = ("2025-03-02T00:00:00+08:00", "2025-03-02T01:00:00+08:00");
        let group = vec![
            candidate(&reg, gpu("r3", march.0, march.1, "1", 300)),
            candidate(&reg, gpu("r1", march.0, march.1, "1", 100)),
            candidate(&reg, gpu("r2", march.0, march.1, "1", 200)),
            // Another beneficiary, another month: other lines.
            candidate(
                &reg,
                record("dc-a", "r0", "ent-b", "a-gpu", march.0, march.1, "1", 50),
            ),
            candidate(
                &reg,
                gpu(
                    "r4",
                    "2025-04-02T00:00:00+08:00",
                    "2025-04-02T01:00:00+08:00",
                    "1",
                    70,
                ),
            ),
        ];
        assert!(
            store
                .ingest(&group)
                .unwrap()
                .iter()
                .all(|d| *d == Decision::Accepted)
        );
        store
            .void("dc-a", "r2", "billed twice", Utc::now())
            .unwrap();
        let class = suanli_store::class_code(group[0].class);
        let period = suanli_store::period_code(Period {
            year: 2025,
            month: 3,
        });
        let mut pages = Vec::new();
        let mut after = String::new();
        let mut totals = None;
        store
            .transaction(&mut |tx| {
                loop {
                    let page = suanli_store::records::line_records(
                        tx, "ent-a", "dc-a", class, period, &after, 2,
                    )?;
                    let Some(last) = page.last() else { break };
                    after = last.record_id.clone();
                    pages.push(
                        page.iter()
                            .map(|r| (r.record_id.clone(), r.amount_fen, r.void_reason.clone()))
                            .collect::<Vec<_>>(),
                    );
                }
                totals = Some(suanli_store::records::line_totals(
                    tx, "ent-a", "dc-a", class, period,
                )?);
                Ok(())
            })
            .unwrap();
        let void = Some("billed twice".to_owned());
        assert_eq!(
            pages,
            vec![
                vec![("r1".to_owned(), 100, None), ("r2".to_owned(), 200, void)],
                vec![("r3".to_owned(), 300, None)],
            ]
        );
        assert_eq!(totals, Some((400, 2)), "r1 and r3: r2 is void");
        let march_accrual = store
            .accruals()
            .unwrap()
            .into_iter()
            .find(|a| a.beneficiary == "ent-a" && a.period == "2025-03")
            .expect("the line's accrual");
        assert_eq!(
            (march_accrual.amount_fen, march_accrual.records),
            (400, 2),
            "the totals are what the accrual holds"
        );
    });
}

// A person is found by email whatever its ASCII case; service accounts never are, and two
// people sharing an address are both returned (single sign-on refuses such an address).
#[test]
fn users_by_email_ignores_case_and_service_accounts() {
    on_every_backend(|url| {
        use suanli_store::users::{self, NewUser};
        let mut store = suanli_store::open(url).expect("store opens");
        let new = |login: &str, email: Option<&str>, service: bool| NewUser {
            login: login.to_owned(),
            name: login.to_owned(),
            principal: Principal::Finance,
            email: email.map(str::to_owned),
            password_hash: None,
            service,
            created_at: "2025-03-01T00:00:00.000Z".to_owned(),
        };
        let (mut one, mut shared, mut none) = (Vec::new(), Vec::new(), Vec::new());
        store
            .transaction(&mut |tx| {
                users::insert(tx, &new("alice", Some("Alice@Example.org"), false))?;
                users::insert(tx, &new("bob", Some("shared@example.org"), false))?;
                users::insert(tx, &new("carol", Some("SHARED@example.org"), false))?;
                users::insert(tx, &new("robot", Some("robot@example.org"), true))?;
                users::insert(tx, &new("dave", None, false))?;
                one = users::by_email(tx, "alice@EXAMPLE.org")?;
                shared = users::by_email(tx, "shared@example.org")?;
                none = users::by_email(tx, "robot@example.org")?;
                none.extend(users::by_email(tx, "")?);
                Ok(())
            })
            .unwrap();
        let logins =
            |rows: &[users::UserRow]| rows.iter().map(|r| r.login.clone()).collect::<Vec<_>>();
        assert_eq!(logins(&one), ["alice"], "{url}");
        assert_eq!(logins(&shared), ["bob", "carol"], "{url}");
        assert!(none.is_empty(), "no service account, no empty match: {url}");
    });
}

/// The journals as listed a page at a time, reassembled: each page's parts, a part that
/// continues the journal before it merged into it.
fn journals_in_pages(
    tx: &mut dyn suanli_store::sql::Sql,
    filter: &suanli_store::ledger::JournalFilter,
    count: i64,
) -> Result<Vec<suanli_store::ledger::JournalRow>, StoreError> {
    use suanli_store::ledger::{JournalRow, journals_page};
    let mut out: Vec<JournalRow> = Vec::new();
    let mut from = (0, 0);
    loop {
        let (page, next) = journals_page(tx, filter, from, count)?;
        if page.is_empty() {
            return Ok(out);
        }
        let entries: usize = page.iter().map(|p| p.journal.entries.len()).sum();
        assert!(entries as i64 <= count, "a page of {count} holds {entries}");
        for part in page {
            match out.last_mut() {
                Some(j) if j.journal_id == part.journal.journal_id => {
                    assert_eq!(
                        part.first_entry,
                        j.entries.len() as i64,
                        "continues where it stopped"
                    );
                    j.entries.extend(part.journal.entries);
                }
                _ => {
                    assert_eq!(
                        part.first_entry, 0,
                        "journal {} from its start",
                        part.journal.journal_id
                    );
                    out.push(part.journal);
                }
            }
        }
        assert!(next > from, "pages move on");
        from = next;
    }
}

/// A journal entry.
fn entry(account: &str, debit_fen: i64, credit_fen: i64) -> suanli_store::ledger::EntryRow {
    suanli_store::ledger::EntryRow {
        account: account.to_owned(),
        debit_fen,
        credit_fen,
    }
}

/// A run's journal: the programme's expense against seven beneficiaries' payables.
fn run_entries() -> Vec<suanli_store::ledger::EntryRow> {
    let mut run = vec![entry("expense:p", 2_800, 0)];
    run.extend((1..=7).map(|i| entry(&format!("payable:p:b{i}"), 0, 100 * i)));
    run
}

/// Journals read a page at a time, at every page size, are the journals read at once: every
/// entry once and in order, journals cut across pages, an empty journal too, the filters by kind
/// and account prefix, only the journals up to the listing's last; the totals count and sum the
/// same; the trial balance read by pages is the trial balance.
#[test]
fn journals_and_the_trial_balance_read_in_pages_are_read_whole() {
    use suanli_store::ledger::{self as rows, EntryRow, JournalFilter};
    on_every_backend(|url| {
        let mut store = suanli_store::open(url).expect("store opens");
        let run = run_entries();
        let journals: Vec<(&str, &str, Vec<EntryRow>)> = vec![
            ("run", "run:1", run),
            (
                "payment",
                "bank-1",
                vec![entry("payable:p:b2", 200, 0), entry("paid:p:b2", 0, 200)],
            ),
            ("opening", "opening:1", Vec::new()),
            (
                "payment",
                "bank-2",
                vec![entry("payable:p:b7", 1, 0), entry("paid:p:b7", 0, 1)],
            ),
            (
                "run",
                "run:2",
                vec![entry("expense:p", 5, 0), entry("payable:p:b1", 0, 5)],
            ),
        ];
        store
            .transaction(&mut |tx| {
                for (kind, reference, entries) in &journals {
                    rows::insert_journal(
                        tx,
                        kind,
                        reference,
                        "memo",
                        "someone",
                        "2025-06-01T00:00:00Z",
                        entries,
                    )?;
                }
                let through = rows::journals_mark(tx)?;
                // Written after the listing began: in no page.
                rows::insert_journal(
                    tx,
                    "payment",
                    "bank-3",
                    "memo",
                    "someone",
                    "2025-06-02T00:00:00Z",
                    &[entry("payable:p:b3", 3, 0), entry("paid:p:b3", 0, 3)],
                )?;
                let all = rows::journals(tx, None)?;
                for (kind, prefix) in [
                    ("", ""),
                    ("payment", ""),
                    ("run", ""),
                    ("", "paid:"),
                    ("", "payable:p:b1"),
                    ("opening", ""),
                    ("", "nothing"),
                ] {
                    let filter = JournalFilter {
                        through,
                        kind: kind.to_owned(),
                        account_prefix: prefix.to_owned(),
                        ..Default::default()
                    };
                    let expected: Vec<_> = all
                        .iter()
                        .filter(|j| j.journal_id <= through)
                        .filter(|j| kind.is_empty() || j.kind == kind)
                        .filter(|j| {
                            prefix.is_empty()
                                || j.entries.iter().any(|e| e.account.starts_with(prefix))
                        })
                        .cloned()
                        .collect();
                    for count in 1..=12 {
                        assert_eq!(
                            journals_in_pages(tx, &filter, count)?,
                            expected,
                            "{kind:?} {prefix:?} in pages of {count}"
                        );
                    }
                    let totals = rows::journal_totals(tx, &filter)?;
                    let entries = expected.iter().flat_map(|j| &j.entries);
                    assert_eq!(
                        (
                            totals.journals,
                            totals.entries,
                            totals.debit_fen,
                            totals.credit_fen
                        ),
                        (
                            expected.len() as i64,
                            entries.clone().count() as i64,
                            entries.clone().map(|e| e.debit_fen).sum(),
                            entries.map(|e| e.credit_fen).sum()
                        ),
                        "{kind:?} {prefix:?}"
                    );
                }
                let whole = rows::account_totals(tx)?;
                let upto: Vec<_> = {
                    let mut sums = std::collections::BTreeMap::<String, (i64, i64)>::new();
                    for e in all
                        .iter()
                        .filter(|j| j.journal_id <= through)
                        .flat_map(|j| &j.entries)
                    {
                        let s = sums.entry(e.account.clone()).or_default();
                        s.0 += e.debit_fen;
                        s.1 += e.credit_fen;
                    }
                    sums.into_iter().map(|(a, (d, c))| (a, d, c)).collect()
                };
                assert_ne!(
                    whole, upto,
                    "the later journal counts in the whole trial balance"
                );
                // The running totals kept as journals are appended are the sums of every
                // entry, whatever journal came last.
                let mut sums = std::collections::BTreeMap::<String, (i64, i64, i64)>::new();
                for e in all.iter().flat_map(|j| &j.entries) {
                    let s = sums.entry(e.account.clone()).or_default();
                    s.0 += e.debit_fen;
                    s.1 += e.credit_fen;
                    s.2 += 1;
                }
                let summed: Vec<_> = sums.iter().map(|(a, s)| (a.clone(), s.0, s.1)).collect();
                assert_eq!(whole, summed);
                assert_eq!(
                    rows::account_totals_window(tx, "", 0, 100)?,
                    summed,
                    "the running totals are the entries' sums"
                );
                let now = rows::running_totals(tx)?;
                assert_eq!(rows::trial_balance_totals(tx, i64::MAX)?, now);
                assert_eq!(
                    (now.accounts, now.entries, now.debit_fen, now.credit_fen),
                    (
                        sums.len() as i64,
                        sums.values().map(|s| s.2).sum(),
                        sums.values().map(|s| s.0).sum(),
                        sums.values().map(|s| s.1).sum()
                    )
                );
                assert_eq!(rows::account_totals_drift(tx)?, Vec::new());
                for count in 1..=4 {
                    let mut paged = Vec::new();
                    loop {
                        let after = paged.last().map(|a: &(String, i64, i64)| a.0.clone());
                        let page = rows::account_totals_page(tx, through, after.as_deref(), count)?;
                        if page.is_empty() {
                            break;
                        }
                        assert!(page.len() as i64 <= count);
                        paged.extend(page);
                    }
                    let mut sorted = paged.clone();
                    sorted.sort();
                    assert_eq!(sorted, upto, "trial balance in pages of {count}");
                }
                let totals = rows::trial_balance_totals(tx, through)?;
                assert_eq!(
                    (totals.accounts, totals.debit_fen, totals.credit_fen),
                    (
                        upto.len() as i64,
                        upto.iter().map(|a| a.1).sum(),
                        upto.iter().map(|a| a.2).sum()
                    )
                );
                Ok(())
            })
            .expect("the ledger reads");
    });
}

/// The journal newest first in windows, as the console's audit page reads it: the filters by
/// reference, creation instants and account prefix select what the journals read at once
/// select, a long journal gives its first entries and how many it has, the count stops past its
/// bound, and the accounts of a prefix read in windows are those of the trial balance.
#[test]
fn journals_newest_first_and_accounts_in_windows() {
    use suanli_store::ledger::{self as rows, EntryRow, JournalFilter};
    on_every_backend(|url| {
        let mut store = suanli_store::open(url).expect("store opens");
        let run = run_entries();
        let journals: Vec<(&str, &str, &str, Vec<EntryRow>)> = vec![
            ("run", "run:1", "2025-06-01T00:00:00.000Z", run),
            (
                "payment",
                "bank-1",
                "2025-06-01T15:59:59.999Z",
                vec![entry("payable:p:b2", 200, 0), entry("paid:p:b2", 0, 200)],
            ),
            (
                "opening",
                "opening:1",
                "2025-06-01T16:00:00.000Z",
                Vec::new(),
            ),
            (
                "payment",
                "bank-2",
                "2025-06-02T01:00:00.000Z",
                vec![entry("payable:p:b7", 1, 0), entry("paid:p:b7", 0, 1)],
            ),
            (
                "run",
                "run:2",
                "2025-06-03T00:00:00.000Z",
                vec![entry("expense:p", 5, 0), entry("payable:p:b1", 0, 5)],
            ),
            // Names in byte order on both backends: capitals before small letters, Chinese
            // after both, and a name that is a prefix of another.
            (
                "run",
                "run:3",
                "2025-06-04T00:00:00.000Z",
                vec![
                    entry("expense:p", 9, 0),
                    entry("payable:p:杭宇智能", 0, 4),
                    entry("payable:p:B9", 0, 3),
                    entry("payable:p:b", 0, 2),
                ],
            ),
        ];
        store
            .transaction(&mut |tx| {
                for (kind, reference, at, entries) in &journals {
                    rows::insert_journal(tx, kind, reference, "memo", "someone", at, entries)?;
                }
                let all = rows::journals(tx, None)?;
                let filter =
                    |kind: &str, reference: &str, prefix: &str, from: &str, before: &str| {
                        JournalFilter {
                            through: i64::MAX,
                            kind: kind.to_owned(),
                            account_prefix: prefix.to_owned(),
                            reference: reference.to_owned(),
                            from: from.to_owned(),
                            before: before.to_owned(),
                        }
                    };
                for f in [
                    filter("", "", "", "", ""),
                    filter("run", "run:1", "", "", ""),
                    filter("run", "run:9", "", "", ""),
                    filter("", "", "paid:", "", ""),
                    filter("", "", "payable:p:b1", "", ""),
                    filter("", "", "", "2025-06-01T16:00:00.000Z", ""),
                    filter("", "", "", "", "2025-06-01T16:00:00.000Z"),
                    filter(
                        "",
                        "",
                        "payable:",
                        "2025-06-01T00:00:00.000Z",
                        "2025-06-03T00:00:00.000Z",
                    ),
                ] {
                    let expected: Vec<&rows::JournalRow> = all
                        .iter()
                        .rev()
                        .filter(|j| f.kind.is_empty() || j.kind == f.kind)
                        .filter(|j| f.reference.is_empty() || j.reference == f.reference)
                        .filter(|j| f.from.is_empty() || j.created_at >= f.from)
                        .filter(|j| f.before.is_empty() || j.created_at < f.before)
                        .filter(|j| {
                            f.account_prefix.is_empty()
                                || j.entries
                                    .iter()
                                    .any(|e| e.account.starts_with(&f.account_prefix))
                        })
                        .collect();
                    let n = expected.len() as i64;
                    assert_eq!(rows::journals_counted(tx, &f, 10)?, n, "{f:?}");
                    assert_eq!(rows::journals_counted(tx, &f, 1)?, n.min(2), "{f:?}");
                    for count in 1..=3 {
                        let mut read = Vec::new();
                        loop {
                            let window =
                                rows::journals_newest(tx, &f, read.len() as i64, count, 3)?;
                            assert!(window.len() as i64 <= count);
                            if window.is_empty() {
                                break;
                            }
                            read.extend(window);
                        }
                        assert_eq!(read.len(), expected.len(), "{f:?} in windows of {count}");
                        for (shown, whole) in read.iter().zip(&expected) {
                            assert_eq!(shown.entries, whole.entries.len() as i64);
                            let mut cut = (*whole).clone();
                            // Cut short under an account prefix: the first entries on those
                            // accounts, not the journal's first.
                            let matching_only =
                                whole.entries.len() > 3 && !f.account_prefix.is_empty();
                            if matching_only {
                                cut.entries
                                    .retain(|e| e.account.starts_with(&f.account_prefix));
                            }
                            cut.entries.truncate(3);
                            assert_eq!(shown.journal, cut, "{f:?}");
                            assert_eq!(shown.matching_only, matching_only, "{f:?}");
                        }
                    }
                }
                let mut sums = std::collections::BTreeMap::<String, (i64, i64)>::new();
                for e in all.iter().flat_map(|j| &j.entries) {
                    let s = sums.entry(e.account.clone()).or_default();
                    s.0 += e.debit_fen;
                    s.1 += e.credit_fen;
                }
                assert_eq!(rows::account_totals_drift(tx)?, Vec::new());
                for prefix in [
                    "",
                    "payable:p:",
                    "payable:p:b",
                    "payable:p:杭",
                    "paid:",
                    "nothing",
                ] {
                    let want: Vec<(String, i64, i64)> = sums
                        .iter()
                        .filter(|(a, _)| a.starts_with(prefix))
                        .map(|(a, (d, c))| (a.clone(), *d, *c))
                        .collect();
                    if !prefix.is_empty() {
                        assert_eq!(rows::accounts_count(tx, prefix)?, want.len() as i64);
                    }
                    for count in 1..=3 {
                        let mut read = Vec::new();
                        loop {
                            let window =
                                rows::account_totals_window(tx, prefix, read.len() as i64, count)?;
                            if window.is_empty() {
                                break;
                            }
                            read.extend(window);
                        }
                        assert_eq!(read, want, "{prefix:?} in windows of {count}");
                    }
                }
                Ok(())
            })
            .expect("the ledger reads");
    });
}

// The records list's "void: yes" filter reads the partial index of void records, for the whole
// table and for one provider (with its key range for a next page), not every record: SQLite
// chooses it by the statistics row its migration writes (PostgreSQL by the index's own size,
// measured in BENCHMARKS.md). The statements have the shape of `lists::records`.
#[test]
fn void_records_are_found_by_their_index_on_sqlite() {
    let db = sqlite_db();
    let reg = registry();
    let mut store = open_loaded(&db.url, &reg);
    let mut plans = Vec::new();
    store
        .transaction(&mut |sql| {
            for w in [
                "u.voided_at IS NOT NULL",
                "u.provider_id = 1 AND u.voided_at IS NOT NULL",
                "u.provider_id = 1 AND u.voided_at IS NOT NULL AND u.provider_id = 1 AND u.record_id > 'r'",
            ] {
                let rows = sql.query(
                    &format!(
                        "EXPLAIN QUERY PLAN SELECT u.provider_id, u.record_id, u.amount_fen \
                         FROM usage_records u WHERE {w} \
                         ORDER BY u.provider_id DESC, u.record_id DESC LIMIT 50"
                    ),
                    &[],
                )?;
                let plan: Vec<String> = rows
                    .iter()
                    .map(|r| r[3].text())
                    .collect::<Result<_, _>>()?;
                plans.push((w, plan.join("; ")));
            }
            Ok(())
        })
        .expect("plans");
    for (w, plan) in plans {
        assert!(plan.contains("usage_records_voided"), "{w}: {plan}");
    }
}
