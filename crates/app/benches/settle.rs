//! Settlement-day benchmark: create and post a run for N beneficiaries × 3 providers ×
//! one month from accruals on PostgreSQL, then time balance look-ups.
//! `cargo bench -p suanli-app --bench settle` (N from SUANLI_BENCH_BENEFICIARIES, default 100,000;
//! database from SUANLI_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test).

use std::fmt::Write as _;
use std::time::Instant;

use suanli_app::settlement as settle;
use suanli_store::RegistryNames;

fn main() -> anyhow::Result<()> {
    // The run's phases are logged with their elapsed time.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .init();
    let n: usize = std::env::var("SUANLI_BENCH_BENEFICIARIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let db = suanli_testkit::postgres("bench_settle")
        .ok_or_else(|| anyhow::anyhow!("the benchmark needs PostgreSQL"))?;
    run(&db.url, n)
}

fn run(url: &str, n: usize) -> anyhow::Result<()> {
    let mut text = String::from(
        "[[programme]]\nid = \"city\"\nfunder = \"municipal\"\nyear = 2025\npool = \"1000000000.00\"\nbeneficiary_cap = \"8000000.00\"\n\
         beneficiary_kinds = [\"enterprise\"]\npayee = \"provider\"\nfunding = [ { funder = \"city\", share = \"0.5\" }, { funder = \"district\", share = \"0.5\" } ]\n\
         rates = [ { category = \"compute\", chip_origin = \"domestic\", ratio = \"0.30\" } ]\n",
    );
    for p in 1..=3 {
        writeln!(
            text,
            "[[provider]]\nid = \"p{p}\"\n[[sku]]\nid = \"s{p}\"\nprovider = \"p{p}\"\ncategory = \"compute\"\nchip_origin = \"domestic\"\nunit = \"gpu_hour\""
        )?;
    }
    for b in 1..=n {
        writeln!(
            text,
            "[[beneficiary]]\nid = \"b{b}\"\nkind = \"enterprise\"\n[[grant]]\nbeneficiary = \"b{b}\"\nprogramme = \"city\""
        )?;
    }
    let started = Instant::now();
    let (registry, _) = suanli_domain::Registry::from_toml("bench.toml", &text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "registry of {n} beneficiaries parsed in {:.2?}",
        started.elapsed()
    );
    // As `suanli serve` does when it loads or restores a version: settlement reuses the parse.
    let registry = std::sync::Arc::new(registry);
    suanli_app::registry::remember_registry(&registry.content_hash, registry.clone());
    let mut store = suanli_store::open(url)?;
    store.registry_insert(
        &registry.content_hash,
        &text,
        &RegistryNames::of(&registry),
        chrono::Utc::now(),
    )?;
    // Accruals as ingest leaves them: one row per (beneficiary, provider, class, month).
    let mut pg = postgres::Client::connect(url, postgres::NoTls)?;
    pg.batch_execute(&format!(
        "INSERT INTO accruals (beneficiary, provider, category, chip_origin, registered_model, period, amount_fen, records) \
         SELECT 'b' || i, 'p' || j, 'compute', 'domestic', '', '2025-03', 100000 + i * 7 + j, 1 \
         FROM generate_series(1, {n}) i, generate_series(1, 3) j"
    ))?;

    let bench_actor = |actor: &str| suanli_app::audit::Actor {
        actor: actor.to_owned(),
        user: None,
        role: "finance".to_owned(),
        request_id: suanli_app::audit::new_request_id(),
    };
    let started = Instant::now();
    let run = settle::create_run(
        &mut *store,
        "city",
        "2025-03",
        &bench_actor("finance:bench-a"),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let created = started.elapsed();
    settle::approve_run(&mut *store, run.run.run_id, &bench_actor("finance:bench-b"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let posting = Instant::now();
    settle::post_run(&mut *store, run.run.run_id, &bench_actor("finance:bench-b"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let posted = posting.elapsed();
    println!(
        "run of {} lines: create (preview) {created:.2?}, post {posted:.2?}, create + post {:.2?}",
        run.lines.len(),
        created + posted
    );

    let mut cache = suanli_app::balances::PendingCache::default();
    // The first look-up after the state changed fills the cache (the year's entitlement and
    // every beneficiary's posted total); it is reported on its own.
    let first = Instant::now();
    suanli_app::balances::balance(&mut *store, &mut cache, "b1", 2025)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "first balance look-up (fills the cache): {:.2?}",
        first.elapsed()
    );
    let mut lookups = Vec::new();
    let mut state: u64 = 42;
    for _ in 0..2_000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = format!("b{}", (state >> 33) as usize % n + 1);
        let t = Instant::now();
        suanli_app::balances::balance(&mut *store, &mut cache, &b, 2025)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        lookups.push(t.elapsed());
    }
    lookups.sort();
    println!(
        "balance look-ups: p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?} ({} samples)",
        lookups[lookups.len() / 2],
        lookups[lookups.len() * 99 / 100],
        lookups[lookups.len() * 999 / 1000],
        lookups.len()
    );
    Ok(())
}
