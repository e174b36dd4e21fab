//! A generated world for the property tests: a registry (programmes with rate tables at three
//! levels of specificity, stacking rules, SKUs with list prices and capacities, grants with cap
//! overrides) and usage records aimed at the edges (period boundaries, list-price and capacity
//! limits, unknown ids, records without a grant). It is plain data: `model.rs` reads it as the
//! rules' independent restatement, and `toml`/`fields` turn it into what the engine reads.

use chrono::{DateTime, FixedOffset, NaiveDate};
use proptest::prelude::*;
use suanli_domain::money::Fen;

/// Line classes in line-key order: compute domestic, compute other, data, model unregistered,
/// model registered. The index is the class throughout the model.
pub const CLASSES: [(&str, &str); 5] = [
    ("compute", "chip_origin = \"domestic\""),
    ("compute", "chip_origin = \"other\""),
    ("data", ""),
    ("model", "registered_model = false"),
    ("model", "registered_model = true"),
];

/// The category (0 compute, 1 data, 2 model) of each class.
pub const CATEGORY_OF_CLASS: [usize; 5] = [0, 0, 1, 2, 2];
pub const CATEGORIES: [&str; 3] = ["compute", "data", "model"];

/// Funder levels, highest first.
pub const FUNDERS: [&str; 4] = ["national", "provincial", "municipal", "district"];

pub const PROVIDERS: usize = 2;

#[derive(Clone, Debug)]
pub struct ProgrammeSpec {
    /// Index into [`FUNDERS`].
    pub funder: usize,
    /// Rates in permille: an entry naming no key, one per category, one per class (the data
    /// class has no entry of its own: its category entry is already fully specific).
    pub default_rate: Option<u32>,
    pub category_rates: [Option<u32>; 3],
    pub class_rates: [Option<u32>; 5],
    /// Limits in fen.
    pub pool: Option<i64>,
    pub beneficiary_cap: Option<i64>,
    pub provider_cap: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct StackingSpec {
    pub primary: usize,
    pub top_up: usize,
    /// Per class, the ceiling's excess over the primary's own ratio (permille); the registry
    /// refuses a ceiling below the primary's ratio, so the world never writes one.
    pub bonus: [Option<u32>; 5],
}

#[derive(Clone, Debug)]
pub struct SkuSpec {
    pub provider: usize,
    pub class: usize,
    /// Fen per unit.
    pub list_price: Option<i64>,
    /// Tenths of a unit per hour.
    pub capacity: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct World {
    pub programmes: Vec<ProgrammeSpec>,
    pub stacking: Vec<StackingSpec>,
    pub skus: Vec<SkuSpec>,
    /// Per beneficiary, per programme: no grant, a grant, or a grant with a cap override (fen).
    pub grants: Vec<Vec<Option<Option<i64>>>>,
}

/// A usage record as the world holds it. Unknown ids are `None` and written as ids the
/// registry does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSpec {
    pub id: String,
    pub provider: Option<usize>,
    pub beneficiary: Option<usize>,
    pub sku: Option<usize>,
    /// Unix seconds.
    pub start: i64,
    pub end: i64,
    /// The offset the times are written in, in hours (the instant is what counts).
    pub offset_hours: i32,
    /// Thousandths of a unit.
    pub quantity_milli: i64,
    pub amount: i64,
}

/// Unix seconds of the first instant of a month of 2025 in Asia/Shanghai (UTC+8). January 2026
/// is month 13.
pub fn month_start(month: u32) -> i64 {
    let (year, month) = if month > 12 {
        (2026, month - 12)
    } else {
        (2025, month)
    };
    let date = NaiveDate::from_ymd_opt(year, month, 1).expect("valid month");
    date.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp()
        - 8 * 3600
}

fn permille(r: u32) -> String {
    format!("{}.{:03}", r / 1000, r % 1000)
}

fn money(fen: i64) -> String {
    Fen(fen).to_string()
}

impl World {
    pub fn programme_id(p: usize) -> String {
        format!("prog{p}")
    }

    pub fn beneficiary_id(b: usize) -> String {
        format!("b{b}")
    }

    pub fn provider_id(p: usize) -> String {
        format!("pv{p}")
    }

    /// The registry file.
    pub fn toml(&self) -> String {
        let mut t = String::new();
        for (i, p) in self.programmes.iter().enumerate() {
            t += &format!(
                "[[programme]]\nid = \"prog{i}\"\nfunder = \"{}\"\nyear = 2025\n",
                FUNDERS[p.funder]
            );
            t += "beneficiary_kinds = [\"enterprise\"]\npayee = \"provider\"\n";
            if let Some(v) = p.pool {
                t += &format!("pool = \"{}\"\n", money(v));
            }
            if let Some(v) = p.beneficiary_cap {
                t += &format!("beneficiary_cap = \"{}\"\n", money(v));
            }
            if let Some(v) = p.provider_cap {
                t += &format!("provider_cap = \"{}\"\n", money(v));
            }
            t += "rates = [\n";
            if let Some(r) = p.default_rate {
                t += &format!("  {{ ratio = \"{}\" }},\n", permille(r));
            }
            for (c, rate) in p.category_rates.iter().enumerate() {
                if let Some(r) = rate {
                    t += &format!(
                        "  {{ category = \"{}\", ratio = \"{}\" }},\n",
                        CATEGORIES[c],
                        permille(*r)
                    );
                }
            }
            for (class, rate) in CLASSES.iter().zip(&p.class_rates) {
                if let (Some(r), false) = (rate, class.1.is_empty()) {
                    t += &format!(
                        "  {{ category = \"{}\", {}, ratio = \"{}\" }},\n",
                        class.0,
                        class.1,
                        permille(*r)
                    );
                }
            }
            t += "]\n";
        }
        for s in &self.stacking {
            t += &format!(
                "[[stacking]]\nprimary = \"prog{}\"\ntop_up = \"prog{}\"\nceilings = [\n",
                s.primary, s.top_up
            );
            for (c, class) in CLASSES.iter().enumerate() {
                if let Some(ceiling) = self.ceiling(s, c) {
                    let extra = if class.1.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", class.1)
                    };
                    t += &format!(
                        "  {{ category = \"{}\"{extra}, ratio = \"{}\" }},\n",
                        class.0,
                        permille(ceiling)
                    );
                }
            }
            t += "]\n";
        }
        for p in 0..PROVIDERS {
            t += &format!("[[provider]]\nid = \"pv{p}\"\n");
        }
        for (i, s) in self.skus.iter().enumerate() {
            let class = CLASSES[s.class];
            let unit = if class.0 == "compute" {
                "gpu_hour"
            } else {
                "item"
            };
            t += &format!(
                "[[sku]]\nid = \"s{i}\"\nprovider = \"pv{}\"\ncategory = \"{}\"\nunit = \"{unit}\"\n",
                s.provider, class.0
            );
            if !class.1.is_empty() {
                t += &format!("{}\n", class.1);
            }
            if let Some(price) = s.list_price {
                t += &format!("list_price = \"{}\"\n", money(price));
            }
            if let Some(capacity) = s.capacity {
                t += &format!("capacity = \"{}.{}\"\n", capacity / 10, capacity % 10);
            }
        }
        for (b, grants) in self.grants.iter().enumerate() {
            t += &format!("[[beneficiary]]\nid = \"b{b}\"\nkind = \"enterprise\"\n");
            for (p, grant) in grants.iter().enumerate() {
                if let Some(cap) = grant {
                    t += &format!("[[grant]]\nbeneficiary = \"b{b}\"\nprogramme = \"prog{p}\"\n");
                    if let Some(c) = cap {
                        t += &format!("cap = \"{}\"\n", money(*c));
                    }
                }
            }
        }
        t
    }

    /// The programme's own rate for a class: the most specific entry that matches (R4).
    pub fn rate(&self, programme: usize, class: usize) -> Option<u32> {
        let p = &self.programmes[programme];
        p.class_rates[class]
            .or(p.category_rates[CATEGORY_OF_CLASS[class]])
            .or(p.default_rate)
    }

    /// The stacking rule's combined ceiling for a class, never below the primary's own ratio.
    pub fn ceiling(&self, rule: &StackingSpec, class: usize) -> Option<u32> {
        rule.bonus[class]
            .map(|bonus| (self.rate(rule.primary, class).unwrap_or(0) + bonus).min(1000))
    }

    /// The record as the eight text fields of a usage file row.
    pub fn fields(&self, r: &RecordSpec) -> [String; 8] {
        let offset = FixedOffset::east_opt(r.offset_hours * 3600).expect("valid offset");
        let time = |s: i64| {
            DateTime::from_timestamp(s, 0)
                .expect("in range")
                .with_timezone(&offset)
                .to_rfc3339()
        };
        [
            r.provider.map_or("pv-unknown".into(), World::provider_id),
            r.id.clone(),
            r.beneficiary
                .map_or("b-unknown".into(), World::beneficiary_id),
            r.sku.map_or("s-unknown".into(), |s| format!("s{s}")),
            time(r.start),
            time(r.end),
            format!("{}.{:03}", r.quantity_milli / 1000, r.quantity_milli % 1000),
            money(r.amount),
        ]
    }
}

fn rate() -> impl Strategy<Value = Option<u32>> {
    // Round ratios make ties between packages likely; odd ones exercise half-up rounding.
    let value = prop_oneof![
        3 => prop::sample::select(vec![0u32, 150, 300, 450, 1000]),
        1 => prop::sample::select(vec![100, 200, 250, 333, 500]),
        2 => 0u32..=1000,
    ];
    proptest::option::weighted(0.5, value)
}

fn limit(max: i64) -> impl Strategy<Value = Option<i64>> {
    proptest::option::weighted(0.5, prop_oneof![1 => Just(0i64), 9 => 0..max])
}

fn programme() -> impl Strategy<Value = ProgrammeSpec> {
    (
        0usize..4,
        rate(),
        [rate(), rate(), rate()],
        [rate(), rate(), rate(), rate(), rate()],
        limit(400_000),
        limit(150_000),
        limit(200_000),
    )
        .prop_map(
            |(
                funder,
                default_rate,
                category_rates,
                mut class_rates,
                pool,
                beneficiary_cap,
                provider_cap,
            )| {
                class_rates[2] = None;
                ProgrammeSpec {
                    funder,
                    default_rate,
                    category_rates,
                    class_rates,
                    pool,
                    beneficiary_cap,
                    provider_cap,
                }
            },
        )
}

fn sku() -> impl Strategy<Value = SkuSpec> {
    (
        0..PROVIDERS,
        0usize..5,
        proptest::option::weighted(0.4, 1i64..5_000),
        proptest::option::weighted(0.4, 1i64..200),
    )
        .prop_map(|(provider, class, list_price, capacity)| SkuSpec {
            provider,
            class,
            list_price,
            capacity,
        })
}

/// A world of one to three programmes of 2025, up to two stacking rules (distinct primaries, so
/// the most favourable package is never decided by anything but the documented ties), eight
/// SKUs and up to five beneficiaries.
pub fn world() -> impl Strategy<Value = World> {
    // Bonuses of 0.15 and 0.30 over round rates make a pair's total tie with a single programme.
    let one_bonus = || {
        proptest::option::weighted(
            0.7,
            prop_oneof![prop::sample::select(vec![0u32, 150, 300]), 0u32..=600],
        )
    };
    let bonus = [
        one_bonus(),
        one_bonus(),
        one_bonus(),
        one_bonus(),
        one_bonus(),
    ];
    let grant = proptest::option::weighted(0.7, proptest::option::weighted(0.3, 0i64..100_000));
    (
        proptest::collection::vec(programme(), 1..=3),
        proptest::collection::vec((0usize..3, 0usize..3, bonus), 1..=2),
        proptest::collection::vec(sku(), 1..=8),
        proptest::collection::vec(proptest::collection::vec(grant, 3), 1..=5),
    )
        .prop_map(|(programmes, rules, skus, mut grants)| {
            let n = programmes.len();
            let mut stacking: Vec<StackingSpec> = Vec::new();
            for (primary, top_up, bonus) in rules {
                let (primary, top_up) = (primary % n, top_up % n);
                let taken = stacking
                    .iter()
                    .any(|s| s.primary == primary || (s.primary == top_up && s.top_up == primary));
                if primary != top_up && !taken {
                    stacking.push(StackingSpec {
                        primary,
                        top_up,
                        bonus,
                    });
                }
            }
            grants.iter_mut().for_each(|g| g.truncate(n));
            World {
                programmes,
                stacking,
                skus,
                grants,
            }
        })
}

/// The random choices behind one record, made concrete by [`RecordRaw::build`] once the world
/// and the period anchors are known.
#[derive(Clone, Debug)]
pub struct RecordRaw {
    sku: usize,
    /// Below 3: unknown provider; below 6: unknown SKU; below 9: unknown beneficiary; below 14:
    /// the other provider than the SKU's; else a well-formed record.
    mischief: u8,
    beneficiary: usize,
    anchor: usize,
    end_delta: i64,
    duration: i64,
    offset_hours: i32,
    quantity_mode: u8,
    quantity_milli: i64,
    amount_mode: u8,
    amount: i64,
}

pub fn record_raw() -> impl Strategy<Value = RecordRaw> {
    (
        (any::<usize>(), 0u8..100, any::<usize>(), any::<usize>()),
        prop_oneof![
            Just(-1i64),
            Just(0),
            Just(1),
            Just(-3600),
            -3 * 86_400i64..3 * 86_400,
            0i64..28 * 86_400,
        ],
        prop_oneof![1 => Just(0i64), 3 => 1i64..7_200, 3 => (1i64..48).prop_map(|h| h * 3600)],
        prop::sample::select(vec![8, 8, 8, 0, 9, -5]),
        (0u8..5, 0i64..20_000, 0u8..7, 0i64..200_000),
    )
        .prop_map(
            |(
                (sku, mischief, beneficiary, anchor),
                end_delta,
                duration,
                offset_hours,
                (quantity_mode, quantity_milli, amount_mode, amount),
            )| RecordRaw {
                sku,
                mischief,
                beneficiary,
                anchor,
                end_delta,
                duration,
                offset_hours,
                quantity_mode,
                quantity_milli,
                amount_mode,
                amount,
            },
        )
}

impl RecordRaw {
    /// The record: its end near one of `anchors` (period boundaries), its quantity at, just
    /// under or just over the SKU's capacity for its duration, its amount at, under or just
    /// over quantity × list price + 0.01.
    pub fn build(&self, world: &World, id: String, anchors: &[i64]) -> RecordSpec {
        let sku_index = self.sku % world.skus.len();
        let sku = &world.skus[sku_index];
        let end = anchors[self.anchor % anchors.len()] + self.end_delta;
        let start = end - self.duration;
        let mut provider = Some(sku.provider);
        let mut sku_id = Some(sku_index);
        let mut beneficiary = Some(self.beneficiary % world.grants.len());
        match self.mischief {
            0..3 => provider = None,
            3..6 => sku_id = None,
            6..9 => beneficiary = None,
            9..14 => provider = Some(1 - sku.provider),
            _ => {}
        }
        // Quantity × 36 ≤ capacity (tenths per hour) × seconds is the capacity bound in
        // thousandths of a unit.
        let quantity_milli = match (sku.capacity, self.duration > 0) {
            (Some(capacity), true) => {
                let most = capacity * self.duration / 36;
                match self.quantity_mode {
                    0 => most,
                    1 => most + 1,
                    2 => (most - 1).max(0),
                    3 => self.quantity_milli % (most + 1),
                    _ => self.quantity_milli,
                }
            }
            _ => self.quantity_milli,
        };
        // amount ≤ quantity × list price + 0.01 is, in thousandths of a fen,
        // amount × 1000 ≤ quantity_milli × price + 1000.
        let amount = match sku.list_price {
            Some(price) => {
                let most = (quantity_milli * price + 1000) / 1000;
                match self.amount_mode {
                    0 => most,
                    1 => most + 1,
                    2 => self.amount % (most + 1),
                    3 => 0,
                    4 => self.amount,
                    _ => most.min([10_000, 33_333][usize::from(self.amount_mode - 5)]),
                }
            }
            None if self.amount_mode == 3 => 0,
            // Equal bases on several lines give equal remainders when a limit shares them, so
            // the largest-remainder tie rule decides fen.
            None if self.amount_mode >= 5 => [10_000, 33_333][usize::from(self.amount_mode - 5)],
            None => self.amount,
        };
        RecordSpec {
            id,
            provider,
            beneficiary,
            sku: sku_id,
            start,
            end,
            offset_hours: self.offset_hours,
            quantity_milli,
            amount,
        }
    }
}
