//! The maintained balance figures equal the full year-to-date recomputation to the fen after
//! every step of random sequences of ingests, voids, settlement runs (posted and cancelled),
//! payments and registry loads, over small registries whose beneficiary caps, provider caps and pools
//! bind (docs/rules.md R6-R9, R12), read on the store itself and beside it as the server reads
//! them (a `BalanceReader`: a connection of its own and the store's accrual change log). What
//! was settled and paid out per payee, which the look-ups keep from run to run and payment to
//! payment, equals the rule applied to every posted line and payment read at once. Runs on
//! SQLite and on PostgreSQL.
//! Seeded by `SUANLI_PROPTEST_SEED`, or a fresh seed that the test prints.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRunner};
use suanli_app::balances::{self, BalanceReader, PendingCache};
use suanli_app::settlement as settle;
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_domain::usage::{Period, UsageRecord, validate};
use suanli_store::{Candidate, RegistryNames, Store};

const BENEFICIARIES: usize = 5;
const PROVIDERS: usize = 3;

/// The seed of this process's property tests: `SUANLI_PROPTEST_SEED`, else a fresh one.
fn proptest_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("SUANLI_PROPTEST_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SUANLI_PROPTEST_SEED={text:?} is not a u64")),
        Err(_) => {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
        }
    })
}

fn config(cases: u32) -> Config {
    let seed = proptest_seed();
    eprintln!("proptest seed {seed}: rerun with SUANLI_PROPTEST_SEED={seed}");
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Limits of one registry version, in fen; `None` leaves the limit out.
#[derive(Clone, Debug)]
struct Limits {
    city_pool: Option<i64>,
    city_beneficiary_cap: Option<i64>,
    city_provider_cap: Option<i64>,
    /// A grant's own cap for b2 (the foundation-model relaxation).
    b2_cap: Option<i64>,
    national_pool: Option<i64>,
    /// The municipal rate on domestic compute, in per cent.
    city_rate: u32,
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        proptest::option::of(100_000i64..3_000_000),
        proptest::option::of(20_000i64..400_000),
        proptest::option::of(50_000i64..800_000),
        proptest::option::of(10_000i64..600_000),
        proptest::option::of(100_000i64..2_000_000),
        prop_oneof![Just(15u32), Just(30), Just(33)],
    )
        .prop_map(
            |(
                city_pool,
                city_beneficiary_cap,
                city_provider_cap,
                b2_cap,
                national_pool,
                city_rate,
            )| {
                Limits {
                    city_pool,
                    city_beneficiary_cap,
                    city_provider_cap,
                    b2_cap,
                    national_pool,
                    city_rate,
                }
            },
        )
}

fn money(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// A registry: a municipal programme paying providers (pool, caps) and a national one paying
/// beneficiaries, stacked on domestic compute; three providers with a domestic and an other
/// compute SKU each; five enterprises, all granted the municipal programme, three the national.
fn registry_text(l: &Limits) -> String {
    let mut t = String::new();
    let opt = |name: &str, v: Option<i64>| {
        v.map(|v| format!("{name} = \"{}\"\n", money(v)))
            .unwrap_or_default()
    };
    t.push_str("[[programme]]\nid = \"city\"\nfunder = \"municipal\"\nyear = 2025\n");
    t.push_str(&opt("pool", l.city_pool));
    t.push_str(&opt("beneficiary_cap", l.city_beneficiary_cap));
    t.push_str(&opt("provider_cap", l.city_provider_cap));
    writeln!(
        t,
        "beneficiary_kinds = [\"enterprise\"]\npayee = \"provider\"\nrates = [ {{ category = \"compute\", chip_origin = \"domestic\", ratio = \"0.{:02}\" }}, {{ category = \"compute\", chip_origin = \"other\", ratio = \"0.20\" }} ]",
        l.city_rate
    )
    .unwrap();
    t.push_str("[[programme]]\nid = \"nat\"\nfunder = \"national\"\nyear = 2025\n");
    t.push_str(&opt("pool", l.national_pool));
    t.push_str("beneficiary_kinds = [\"enterprise\"]\npayee = \"beneficiary\"\nrates = [ { category = \"compute\", chip_origin = \"domestic\", ratio = \"0.30\" }, { category = \"compute\", chip_origin = \"other\", ratio = \"0.10\" } ]\n");
    t.push_str("[[stacking]]\nprimary = \"nat\"\ntop_up = \"city\"\nceilings = [ { category = \"compute\", chip_origin = \"domestic\", ratio = \"0.45\" }, { category = \"compute\", chip_origin = \"other\", ratio = \"0.25\" } ]\n");
    for p in 1..=PROVIDERS {
        writeln!(
            t,
            "[[provider]]\nid = \"p{p}\"\n[[sku]]\nid = \"d{p}\"\nprovider = \"p{p}\"\ncategory = \"compute\"\nchip_origin = \"domestic\"\nunit = \"gpu_hour\"\n[[sku]]\nid = \"o{p}\"\nprovider = \"p{p}\"\ncategory = \"compute\"\nchip_origin = \"other\"\nunit = \"gpu_hour\""
        )
        .unwrap();
    }
    for b in 1..=BENEFICIARIES {
        writeln!(
            t,
            "[[beneficiary]]\nid = \"b{b}\"\nkind = \"enterprise\"\n[[grant]]\nbeneficiary = \"b{b}\"\nprogramme = \"city\""
        )
        .unwrap();
        if b == 2 {
            t.push_str(&opt("cap", l.b2_cap));
        }
        if b <= 3 {
            writeln!(t, "[[grant]]\nbeneficiary = \"b{b}\"\nprogramme = \"nat\"").unwrap();
        }
    }
    t
}

#[derive(Clone, Debug)]
enum Step {
    /// Records of (beneficiary, provider, domestic SKU?, month, fen), one group.
    Ingest(Vec<(usize, usize, bool, u32, i64)>),
    /// Voids the n-th record ingested (modulo how many there are).
    Void(usize),
    /// Creates a run of the programme for the month, then posts it (or cancels it).
    Run(bool, u32, bool),
    /// Records a payment of the programme (city: to provider n; national: to beneficiary n),
    /// in fen; one the rules refuse changes nothing.
    Pay(bool, usize, i64),
    Load(Limits),
}

/// A record's amount: any, or one of a few, so that lines often demand the same and a limit
/// shared by largest remainder must break ties in key order (R7).
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 0i64..400_000,
        2 => prop::sample::select(vec![33_333i64, 100_001, 250_007]),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::collection::vec(
            (0..BENEFICIARIES, 0..PROVIDERS, any::<bool>(), 1u32..=4, amount()),
            1..6
        )
        .prop_map(Step::Ingest),
        2 => any::<usize>().prop_map(Step::Void),
        2 => (any::<bool>(), 1u32..=4, any::<bool>()).prop_map(|(c, m, p)| Step::Run(c, m, p)),
        1 => (any::<bool>(), 0..BENEFICIARIES, 1i64..300_000)
            .prop_map(|(c, n, fen)| Step::Pay(c, n, fen)),
        1 => limits().prop_map(Step::Load),
    ]
}

fn actor(name: &str) -> suanli_app::audit::Actor {
    suanli_app::audit::Actor {
        actor: format!("finance:{name}"),
        user: None,
        role: "finance".to_owned(),
        request_id: suanli_app::audit::new_request_id(),
    }
}

struct World {
    /// Shared with the balance reader, which reads every accrual through it the first time.
    shared: Arc<Mutex<Box<dyn Store>>>,
    registry: Registry,
    records: Vec<(String, String)>,
    next_id: usize,
}

impl World {
    fn store(&self) -> MutexGuard<'_, Box<dyn Store>> {
        self.shared.lock().expect("store lock")
    }

    fn load(&mut self, l: &Limits) {
        let text = registry_text(l);
        let (registry, _) = Registry::from_toml("test.toml", &text).expect("registry is valid");
        self.store()
            .registry_insert(
                &registry.content_hash,
                &text,
                &RegistryNames::of(&registry),
                chrono::Utc::now(),
            )
            .expect("registry stored");
        self.registry = registry;
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::Ingest(records) => {
                let mut group = Vec::new();
                for &(b, p, domestic, month, fen) in records {
                    self.next_id += 1;
                    let start = chrono::DateTime::parse_from_rfc3339(&format!(
                        "2025-{month:02}-{:02}T00:00:00+08:00",
                        self.next_id % 27 + 1
                    ))
                    .expect("time");
                    let record = UsageRecord {
                        provider: format!("p{}", p + 1),
                        record_id: format!("r{}", self.next_id),
                        beneficiary: format!("b{}", b + 1),
                        sku: format!("{}{}", if domestic { "d" } else { "o" }, p + 1),
                        start,
                        end: start + chrono::Duration::hours(1),
                        quantity: "1".parse().expect("decimal"),
                        amount: Fen(fen),
                    };
                    let class = validate(&self.registry, &record).expect("record is valid");
                    self.records
                        .push((record.provider.clone(), record.record_id.clone()));
                    group.push(Candidate {
                        period: Period::of_instant(record.end),
                        class,
                        capacity: None,
                        registry_version: 1,
                        record,
                    });
                }
                self.store().ingest(&group).expect("ingest");
            }
            Step::Void(n) => {
                if !self.records.is_empty() {
                    let (p, r) = self.records[n % self.records.len()].clone();
                    self.store()
                        .void(&p, &r, "wrong", chrono::Utc::now())
                        .expect("void");
                }
            }
            Step::Run(city, month, post) => {
                let programme = if *city { "city" } else { "nat" };
                // A run the rules refuse (nothing to post, an open run) changes nothing.
                let mut store = self.store();
                let Ok(run) = settle::create_run(
                    &mut **store,
                    programme,
                    &format!("2025-{month:02}"),
                    &actor("a"),
                ) else {
                    return;
                };
                if *post {
                    settle::approve_run(&mut **store, run.run.run_id, &actor("b"))
                        .expect("approve");
                    settle::post_run(&mut **store, run.run.run_id, &actor("b")).expect("post");
                } else {
                    settle::cancel_run(&mut **store, run.run.run_id, &actor("a")).expect("cancel");
                }
            }
            Step::Pay(city, n, fen) => {
                self.next_id += 1;
                let (programme, payee) = if *city {
                    ("city", format!("p{}", n % PROVIDERS + 1))
                } else {
                    ("nat", format!("b{}", n + 1))
                };
                let _ = suanli_app::ledger::record_payment(
                    &mut **self.store(),
                    Some(programme),
                    &payee,
                    Fen(*fen),
                    &format!("PAY-{}", self.next_id),
                    &actor("a"),
                    None,
                );
            }
            Step::Load(l) => self.load(l),
        }
    }
}

/// Settled and paid out per (beneficiary, programme, payee) as docs/rules.md ("Paid out")
/// reads, from scratch: every posted line with an amount in posting order, each payee's
/// payments of a programme attributed to them first in, first out.
fn paid_out_read_at_once(store: &mut dyn Store) -> BTreeMap<(String, String, String), (Fen, Fen)> {
    type Line = (
        (String, String, String, String, String, String),
        String,
        Fen,
    );
    let mut lines: BTreeMap<(String, String), Vec<Line>> = BTreeMap::new();
    let mut payments: HashMap<String, i64> = HashMap::new();
    store
        .transaction(&mut |tx| {
            lines.clear();
            payments.clear();
            for r in tx.query(
                "SELECT r.programme, l.payee, l.original_period, l.beneficiary, l.provider, \
                 l.category, l.chip_origin, l.registered_model, l.amount_fen \
                 FROM run_lines l JOIN settlement_runs r ON r.run_id = l.run_id \
                 WHERE r.status = 'posted' AND l.amount_fen <> 0 ORDER BY l.run_id, l.seq",
                &[],
            )? {
                let t = |i: usize| r[i].text();
                lines.entry((t(0)?, t(1)?)).or_default().push((
                    (t(2)?, t(3)?, t(4)?, t(5)?, t(6)?, t(7)?),
                    t(3)?,
                    Fen(r[8].int()?),
                ));
            }
            for r in tx.query(
                "SELECT e.account, CAST(SUM(e.credit_fen) - SUM(e.debit_fen) AS BIGINT) \
                 FROM journal_entries e JOIN journals j ON j.journal_id = e.journal_id \
                 WHERE j.kind = 'payment' GROUP BY e.account",
                &[],
            )? {
                payments.insert(r[0].text()?, r[1].int()?);
            }
            Ok(())
        })
        .expect("read the posted lines and payments");
    let mut out: BTreeMap<(String, String, String), (Fen, Fen)> = BTreeMap::new();
    for ((programme, payee), lines) in lines {
        for (_, beneficiary, amount) in &lines {
            let slot = out
                .entry((beneficiary.clone(), programme.clone(), payee.clone()))
                .or_default();
            slot.0 = slot.0.plus(*amount);
        }
        let account = suanli_domain::ledger::Account::Paid {
            programme: programme.clone(),
            payee: payee.clone(),
        }
        .to_string();
        let paid = Fen(payments.get(&account).copied().unwrap_or(0));
        for (beneficiary, amount) in suanli_domain::ledger::attribute_payments(lines, paid).paid_out
        {
            out.entry((beneficiary, programme.clone(), payee.clone()))
                .or_default()
                .1 = amount;
        }
    }
    out
}

/// Entitlements without the (programme, beneficiary) pairs at zero: a pair whose lines all
/// went to zero and a pair never seen are the same balance.
fn nonzero(m: HashMap<(String, String), Fen>) -> Vec<((String, String), Fen)> {
    let mut v: Vec<_> = m.into_iter().filter(|(_, f)| *f != Fen::ZERO).collect();
    v.sort();
    v
}

fn check_sequence(url: &str, first: &Limits, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut store = suanli_store::open(url).expect("store opens");
    let feed = store.accrual_feed();
    let shared = Arc::new(Mutex::new(store));
    let mut world = World {
        shared: shared.clone(),
        registry: Registry::from_toml("empty.toml", "")
            .expect("empty registry")
            .0,
        records: Vec::new(),
        next_id: 0,
    };
    world.load(first);
    // Beside the store, as the server reads: every complete read of the accruals goes through
    // the store and is counted; the rest comes from its change log.
    let complete_reads = Arc::new(AtomicUsize::new(0));
    let complete: balances::CompleteRead = {
        let (shared, complete_reads) = (shared.clone(), complete_reads.clone());
        Box::new(move |since| {
            complete_reads.fetch_add(1, Ordering::SeqCst);
            Ok(shared
                .lock()
                .expect("store lock")
                .accrual_changes_since(since)?)
        })
    };
    let mut reader = BalanceReader::new(url, feed, complete);
    // Between look-ups the reader catches up two changed keys at a time, so that look-ups
    // find keys waiting, and catch up on their own beneficiary's alone where they may.
    reader.catch_up_slice_at_most(2);
    // The cache read straight from the store leaves the overview's changed parts to its request whenever
    // more than one pair changed; the reader replaces them as it catches up.
    let mut cache = PendingCache::default();
    cache.keep_overview_at_most(1);
    for (i, step) in steps.iter().enumerate() {
        world.apply(step);
        // The balance thread catches up between look-ups, before the next one asks.
        if i % 2 == 1 {
            reader.follow(i % 4 == 1).expect("follow");
        }
        // Between look-ups the balance thread also takes in posts and payments; the look-ups
        // after it then read no posted run's lines.
        let refreshed = i % 3 == 2;
        if refreshed {
            reader.refresh_posted().expect("refresh");
        }
        let runs_read = reader.posted_runs_read();
        // Beside the store first: the reader's complete read locks the store itself. The
        // balances before anything else, so that each finds other beneficiaries' keys waiting.
        let beside_balances: Vec<_> = (1..=BENEFICIARIES)
            .map(|b| reader.balance(&format!("b{b}"), 2025).expect("balance"))
            .collect();
        if refreshed && i > 0 {
            prop_assert_eq!(
                reader.posted_runs_read(),
                runs_read,
                "look-ups after a refresh read posted lines (step {}: {:?})",
                i,
                step
            );
        }
        let beside = nonzero(reader.entitlements_to_date(2025).expect("beside"));
        let beside_overview = reader.programme_overview(2025).expect("overview");
        let mut store = world.store();
        let store = &mut **store;
        let cached_balances: Vec<_> = (1..=BENEFICIARIES)
            .map(|b| balances::balance(store, &mut cache, &format!("b{b}"), 2025).expect("balance"))
            .collect();
        let maintained =
            balances::entitlements_to_date(store, &mut cache, 2025).expect("maintained");
        let full = nonzero(balances::entitlements_recomputed(store, 2025).expect("full"));
        let mut kept_paid_out = BTreeMap::new();
        for (b, balances) in cached_balances.iter().enumerate() {
            for balance in balances {
                for p in &balance.paid_out {
                    kept_paid_out.insert(
                        (
                            format!("b{}", b + 1),
                            balance.programme.clone(),
                            p.payee.clone(),
                        ),
                        (p.settled, p.paid_out),
                    );
                }
            }
        }
        prop_assert_eq!(
            &kept_paid_out,
            &paid_out_read_at_once(store),
            "settled and paid out after step {} ({:?})",
            i,
            step
        );
        prop_assert_eq!(&nonzero(maintained), &full, "after step {} ({:?})", i, step);
        prop_assert_eq!(
            &beside,
            &full,
            "beside the store, after step {} ({:?})",
            i,
            step
        );
        // Balances and the overview from the maintained cache, and beside the store, equal
        // those of a cache built from scratch now.
        let mut fresh = PendingCache::default();
        for b in 1..=BENEFICIARIES {
            let rebuilt =
                balances::balance(store, &mut fresh, &format!("b{b}"), 2025).expect("balance");
            prop_assert_eq!(
                &cached_balances[b - 1],
                &rebuilt,
                "balance of b{} after step {}",
                b,
                i
            );
            prop_assert_eq!(
                &beside_balances[b - 1],
                &rebuilt,
                "balance of b{} beside the store after step {}",
                b,
                i
            );
        }
        let rebuilt = balances::programme_overview(store, &mut fresh, 2025).expect("overview");
        prop_assert_eq!(
            &balances::programme_overview(store, &mut cache, 2025).expect("overview"),
            &rebuilt,
            "overview after step {}",
            i
        );
        prop_assert_eq!(
            &beside_overview,
            &rebuilt,
            "overview beside the store after step {}",
            i
        );
    }
    // One server: only the first look-up read every accrual; the rest followed the log.
    prop_assert!(
        complete_reads.load(Ordering::SeqCst) <= 1,
        "{} complete reads",
        complete_reads.load(Ordering::SeqCst)
    );
    Ok(())
}

fn run_property(url_of: impl Fn() -> Option<suanli_testkit::TestDb>, cases: u32) {
    let mut runner = TestRunner::new(config(cases));
    runner
        .run(
            &(limits(), proptest::collection::vec(step(), 1..40)),
            |(first, steps)| {
                let Some(db) = url_of() else {
                    return Ok(());
                };
                check_sequence(&db.url, &first, &steps)
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

// On SQLite: the maintained figures equal the full recomputation after every step.
#[test]
fn maintained_balances_equal_the_full_recomputation_on_sqlite() {
    run_property(|| Some(suanli_testkit::sqlite("balances_incremental")), 48);
}

// On PostgreSQL (the store's change log and the ingest log's generation): the same.
#[test]
fn maintained_balances_equal_the_full_recomputation_on_postgres() {
    run_property(|| suanli_testkit::postgres("balances_incremental"), 8);
}
