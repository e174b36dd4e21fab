//! Each role's month in the web console, in a real browser: one `suanli serve` on SQLite with
//! the console, named persons (two finance people for four eyes, an enterprise person, a
//! provider person, an auditor), the worked example's registry, and usage posted by the
//! providers through the CLI (`suanli usage import`). Then `node e2e/month.mjs` walks the month
//! twice, in zh-CN (March 2025) and in English (April 2025), at 390 px (finance also at
//! 1280 px): finance creates the run with the month picker and sees the preview, a second
//! finance person approves and posts it, a payment above the four-eyes amount is recorded and
//! the other finance person confirms it, finance downloads the payee's statement of the run;
//! the enterprise checks its balance figures; the provider reads its rejected records in the
//! walk's language and voids one of its records through the confirmation; the auditor filters the journal and finds the walk's actions under the
//! persons' names.
//!
//! The figures the pages must show are computed here, independently of the server, from
//! docs/rules.md (R5 stacking, R6 lines, R9 runs, R12 and "The words for money", the first in,
//! first out rule of "Paid out, to whom"), and handed to the script in a plan file.
//!
//! Screenshots of every step go to `<test dir>/screenshots/month/` and are copied to
//! `<target dir>/screenshots/month/`. Skips when Chromium, Node or `e2e/node_modules` is
//! missing, unless `SUANLI_REQUIRE_BROWSER=1` (CI), then it fails.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::browser::{chromium, kept, missing};
use support::cli::{HEADER, Server, sqlite_db};
use support::console::{cny, free_port};
use support::{bin, root};

/// dc-a's rows the server rejects (an unknown SKU, an unknown enterprise, an end before the
/// start): the provider page says each in the walk's language (`usage import` exits 3).
const DC_A_REJECTED_ROWS: &str = "dc-a,bad-1,ent-a,no-such-sku,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n\
dc-a,bad-2,ent-nobody,a-dom,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n\
dc-a,bad-3,ent-a,a-dom,2025-03-01T02:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n";

/// The console password of every person of the walk.
const PASSWORD: &str = "walk the month 2025";

/// Fen of whole yuan.
const fn yuan(y: i64) -> i64 {
    y * 100
}

/// Payments of more than this many fen need a second finance person (four eyes).
const CONFIRM_ABOVE_FEN: i64 = yuan(100_000);

const MUNICIPAL: &str = "hz-municipal-2025";
const NATIONAL: &str = "national-intelligence-2025";
/// The municipal programme's cap per beneficiary and pool (examples/worked/registry.toml).
const MUNICIPAL_CAP: i64 = yuan(8_000_000);
const MUNICIPAL_POOL: i64 = yuan(250_000_000);

/// A person of the walk: login, display name and what `user create` needs for the role.
struct Person {
    key: &'static str,
    login: &'static str,
    name: &'static str,
    role: &'static [&'static str],
}

const PEOPLE: [Person; 5] = [
    Person {
        key: "finance1",
        login: "wang.fang",
        name: "王芳",
        role: &["--role", "finance"],
    },
    Person {
        key: "finance2",
        login: "li.qiang",
        name: "李强",
        role: &["--role", "finance"],
    },
    Person {
        key: "enterprise",
        login: "zhang.min",
        name: "张敏",
        role: &["--role", "beneficiary", "--beneficiary", "ent-a"],
    },
    Person {
        key: "provider",
        login: "zhao.lei",
        name: "赵磊",
        role: &["--role", "provider", "--provider", "dc-a"],
    },
    Person {
        key: "auditor",
        login: "chen.jing",
        name: "陈静",
        role: &["--role", "auditor"],
    },
];

/// A usage record as a provider posts it; `month` is the 2025 month holding its end.
struct Record {
    provider: &'static str,
    id: &'static str,
    beneficiary: &'static str,
    sku: &'static str,
    start: &'static str,
    end: &'static str,
    quantity: &'static str,
    fen: i64,
    month: u32,
}

const fn rec(
    provider: &'static str,
    id: &'static str,
    beneficiary: &'static str,
    sku: &'static str,
    window: (&'static str, &'static str, u32),
    quantity: &'static str,
    fen: i64,
) -> Record {
    Record {
        provider,
        id,
        beneficiary,
        sku,
        start: window.0,
        end: window.1,
        quantity,
        fen,
        month: window.2,
    }
}

const MARCH: (&str, &str, u32) = ("2025-03-01T00:00:00+08:00", "2025-03-11T00:00:00+08:00", 3);
const MARCH_DAY: (&str, &str, u32) = ("2025-03-01T00:00:00+08:00", "2025-03-02T00:00:00+08:00", 3);
const APRIL: (&str, &str, u32) = ("2025-04-01T00:00:00+08:00", "2025-04-11T00:00:00+08:00", 4);
const APRIL_LATE: (&str, &str, u32) = ("2025-04-20T00:00:00+08:00", "2025-04-21T00:00:00+08:00", 4);

/// The worked example's March (docs/rules.md, without ent-d's opening balance) and two April
/// records of ent-a at dc-a.
const RECORDS: [Record; 7] = [
    rec(
        "dc-a",
        "r1",
        "ent-a",
        "a-dom",
        MARCH,
        "50000",
        yuan(1_000_000),
    ),
    rec(
        "dc-b",
        "r2",
        "ent-b",
        "b-oth",
        MARCH,
        "40000",
        yuan(1_000_000),
    ),
    rec(
        "dc-b",
        "r3",
        "ent-c",
        "b-oth",
        MARCH,
        "40000",
        yuan(1_000_000),
    ),
    rec(
        "dc-a",
        "r4",
        "uni-u",
        "a-data",
        MARCH_DAY,
        "1000",
        yuan(500_000),
    ),
    rec(
        "dc-a",
        "r5",
        "ent-d",
        "a-dom",
        MARCH,
        "50000",
        yuan(1_000_000),
    ),
    rec(
        "dc-a",
        "r6",
        "ent-a",
        "a-dom",
        APRIL,
        "20000",
        yuan(400_000),
    ),
    rec(
        "dc-a",
        "r7",
        "ent-a",
        "a-dom",
        APRIL_LATE,
        "5000",
        yuan(100_000),
    ),
];

/// One language's walk: the month settled, the payment recorded, the record voided.
struct Walk {
    lang: &'static str,
    month: u32,
    payment_fen: i64,
    reference: &'static str,
    void: &'static str,
    void_reason: &'static str,
}

const WALKS: [Walk; 2] = [
    Walk {
        lang: "zh",
        month: 3,
        payment_fen: yuan(200_000),
        reference: "BANK-2025-0401",
        void: "r7",
        void_reason: "重复计费",
    },
    Walk {
        lang: "en",
        month: 4,
        payment_fen: yuan(280_000),
        reference: "BANK-2025-0502",
        void: "r4",
        void_reason: "billed twice",
    },
];

/// (category, chip origin) of the worked registry's SKUs.
fn class_of(sku: &str) -> (&'static str, &'static str) {
    match sku {
        "a-dom" => ("compute", "domestic"),
        "b-oth" => ("compute", "other"),
        "a-data" => ("data", ""),
        other => panic!("no SKU {other} in the worked registry"),
    }
}

/// The programmes `beneficiary` holds grants of (examples/worked/registry.toml).
fn grants(beneficiary: &str) -> (bool, bool) {
    // (national, municipal)
    match beneficiary {
        "ent-a" | "ent-c" => (true, true),
        "ent-b" | "ent-d" => (false, true),
        "uni-u" => (true, false),
        other => panic!("no beneficiary {other} in the worked registry"),
    }
}

/// Each programme's ratio in percent on a line of `beneficiary` and `class`, by R4 and R5:
/// the rate tables, the stacking rule's ceilings where both programmes are eligible, else the
/// single most favourable programme (a tie goes to the higher funder level, national).
fn ratios(beneficiary: &str, class: (&str, &str)) -> BTreeMap<&'static str, i64> {
    let (national, municipal) = grants(beneficiary);
    let national = national.then_some(match class {
        ("compute", "domestic") => 30,
        ("compute", _) => 10,
        _ => 30,
    });
    let municipal = municipal
        .then_some(match class {
            ("compute", "domestic") => Some(30),
            ("compute", _) => Some(20),
            _ => None,
        })
        .flatten();
    let ceiling = match class {
        ("compute", "domestic") => Some(45),
        ("compute", _) => Some(25),
        _ => None,
    };
    let mut out = BTreeMap::new();
    match (national, municipal, ceiling) {
        (Some(n), Some(m), Some(c)) => {
            out.insert(NATIONAL, n);
            out.insert(MUNICIPAL, m.min(c - n));
        }
        (Some(n), Some(m), None) if m > n => {
            out.insert(MUNICIPAL, m);
        }
        (Some(n), _, _) => {
            out.insert(NATIONAL, n);
        }
        (None, Some(m), _) => {
            out.insert(MUNICIPAL, m);
        }
        (None, None, _) => {}
    }
    out.retain(|_, r| *r > 0);
    out
}

/// A line key of R6, in the engine's line order: beneficiary, provider, category, chip origin.
type LineKey = (String, String, String, String);

/// Each line's subsidy of `programme` in `month` from the records `live` keeps: R6's
/// round_half_up(Σ base × ratio) to the fen, once per line.
fn lines(programme: &str, month: u32, live: &dyn Fn(&Record) -> bool) -> BTreeMap<LineKey, i64> {
    let mut base: BTreeMap<LineKey, (i64, i64)> = BTreeMap::new();
    for r in RECORDS.iter().filter(|r| r.month == month && live(r)) {
        let class = class_of(r.sku);
        let Some(&ratio) = ratios(r.beneficiary, class).get(programme) else {
            continue;
        };
        let key = (
            r.beneficiary.to_owned(),
            r.provider.to_owned(),
            class.0.to_owned(),
            class.1.to_owned(),
        );
        let line = base.entry(key).or_insert((0, ratio));
        line.0 += r.fen;
    }
    base.into_iter()
        .map(|(k, (fen, pct))| (k, (fen * pct + 50) / 100))
        .collect()
}

/// `1234567.89`, as a CSV export and the payment form write fen.
fn plain(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// What the walk does to the books, step by step, and what each page must show then.
#[derive(Default)]
struct Books {
    voided: Vec<&'static str>,
    /// Posted municipal lines per month (what each run posted).
    posted: BTreeMap<u32, BTreeMap<LineKey, i64>>,
    /// Each payee's slices of the municipal programme in posting order: (beneficiary, fen).
    slices: BTreeMap<String, Vec<(String, i64)>>,
    /// Payments booked per payee (municipal).
    paid: BTreeMap<String, i64>,
}

impl Books {
    /// Whether a record still counts (it was not voided).
    fn live(&self) -> impl Fn(&Record) -> bool + 'static {
        let voided = self.voided.clone();
        move |r: &Record| !voided.contains(&r.id)
    }

    /// Settles `month` of the municipal programme (R9: the month's lines; the model has no
    /// adjustments, so it checks that earlier months are unchanged). Returns the run's lines.
    fn settle(&mut self, month: u32) -> BTreeMap<LineKey, i64> {
        let live = self.live();
        for (m, posted) in &self.posted {
            assert_eq!(
                &lines(MUNICIPAL, *m, &live),
                posted,
                "the walk's model has no adjustment lines: month {m} must not change after posting"
            );
        }
        let run = lines(MUNICIPAL, month, &live);
        for ((beneficiary, provider, ..), fen) in &run {
            self.slices
                .entry(provider.clone())
                .or_default()
                .push((beneficiary.clone(), *fen));
        }
        let total: i64 =
            self.posted.values().flat_map(|l| l.values()).sum::<i64>() + run.values().sum::<i64>();
        assert!(total <= MUNICIPAL_POOL, "the model has no pool cut");
        self.posted.insert(month, run.clone());
        run
    }

    fn settled_to(&self, payee: &str) -> i64 {
        self.slices
            .get(payee)
            .map_or(0, |s| s.iter().map(|x| x.1).sum())
    }

    fn outstanding(&self, payee: &str) -> i64 {
        self.settled_to(payee) - self.paid.get(payee).copied().unwrap_or(0)
    }

    /// "Paid out, to whom": the payee's payments cover its slices from the oldest on; what
    /// they cover of `beneficiary`'s slices is paid out on its behalf.
    fn paid_out_for(&self, payee: &str, beneficiary: &str) -> i64 {
        let mut left = self.paid.get(payee).copied().unwrap_or(0);
        let mut covered = 0;
        for (b, fen) in self.slices.get(payee).into_iter().flatten() {
            let part = left.min(*fen);
            left -= part;
            if b == beneficiary {
                covered += part;
            }
        }
        covered
    }

    /// The enterprise's balance card of `programme` (R12, "The words for money"), as the page
    /// shows it in `lang`.
    fn card(&self, lang: &str, beneficiary: &str, programme: &str) -> Value {
        let live = self.live();
        let entitled: i64 = (1..=12)
            .flat_map(|m| lines(programme, m, &live))
            .filter(|((b, ..), _)| b == beneficiary)
            .map(|(_, fen)| fen)
            .sum();
        let (settled, cap, to_providers) = if programme == MUNICIPAL {
            let settled: i64 = self
                .posted
                .values()
                .flatten()
                .filter(|((b, ..), _)| b == beneficiary)
                .map(|(_, fen)| fen)
                .sum();
            let to_providers: i64 = self
                .slices
                .keys()
                .map(|payee| self.paid_out_for(payee, beneficiary))
                .sum();
            (settled, Some(MUNICIPAL_CAP), to_providers)
        } else {
            // The walk settles only the municipal programme.
            (0, None, 0)
        };
        assert!(entitled <= MUNICIPAL_CAP, "the model has no cap cut");
        let pending = entitled - settled;
        let no_cap = if lang == "zh" { "无上限" } else { "No cap" };
        json!({
            "programme": programme,
            "cap": cap.map_or_else(|| no_cap.to_owned(), cny),
            "entitled": cny(entitled),
            "settled": cny(settled),
            "pending": cny(pending),
            "remaining": cap.map_or_else(
                || "—".to_owned(),
                |c| cny((c - settled - pending.max(0)).max(0)),
            ),
            "paid_out_self": cny(0),
            "paid_out_providers": cny(to_providers),
        })
    }
}

/// The plan of both walks: what each step does and what each page must show.
fn plan() -> Value {
    let mut books = Books::default();
    let mut walks = Vec::new();
    for w in &WALKS {
        let run = books.settle(w.month);
        let mut payees: BTreeMap<&str, (usize, i64)> = BTreeMap::new();
        for ((_, provider, ..), fen) in &run {
            let p = payees.entry(provider.as_str()).or_default();
            p.0 += 1;
            p.1 += fen;
        }
        let payee = "dc-a";
        let owed_now = books.outstanding(payee);
        assert!(
            w.payment_fen > CONFIRM_ABOVE_FEN && w.payment_fen <= owed_now,
            "the walk's payment needs a second person and is owed"
        );
        *books.paid.entry(payee.to_owned()).or_default() += w.payment_fen;
        let export: Vec<Value> = run
            .iter()
            .filter(|((_, provider, ..), _)| provider == payee)
            .map(|((b, p, c, o), fen)| {
                json!({"beneficiary": b, "provider": p, "category": c, "chip_origin": o,
                       "subsidy": plain(*fen)})
            })
            .collect();
        let enterprise = vec![
            books.card(w.lang, "ent-a", MUNICIPAL),
            books.card(w.lang, "ent-a", NATIONAL),
        ];
        let settled_total: i64 = books
            .posted
            .values()
            .flatten()
            .filter(|((b, ..), _)| b == "ent-a")
            .map(|(_, fen)| fen)
            .sum();
        let payables = json!({
            "programme": MUNICIPAL,
            "settled": cny(books.settled_to(payee)),
            "paid_out": cny(books.paid[payee]),
            "outstanding": cny(books.outstanding(payee)),
        });
        let void = RECORDS
            .iter()
            .find(|r| r.id == w.void)
            .expect("the voided record");
        assert_eq!(
            void.provider, payee,
            "the provider voids one of its own records"
        );
        books.voided.push(w.void);
        walks.push(json!({
            "lang": w.lang,
            "period": format!("2025-{:02}", w.month),
            "programme": MUNICIPAL,
            "run": {
                "lines": run.len(),
                "total": cny(run.values().sum()),
                "payees": payees.iter().map(|(p, (n, fen))| json!({"payee": p, "lines": n, "amount": cny(*fen)})).collect::<Vec<_>>(),
            },
            "payment": {
                "payee": payee,
                "programme": MUNICIPAL,
                "amount": plain(w.payment_fen),
                "shown": cny(w.payment_fen),
                "reference": w.reference,
                "owed_now": cny(owed_now),
                "too_much": plain(owed_now + 1),
                "owed_after": cny(owed_now - w.payment_fen),
            },
            "export": {"payee": payee, "rows": export},
            "pool_settled": cny(books.posted.values().flat_map(|l| l.values()).sum()),
            "enterprise": {"beneficiary": "ent-a", "cards": enterprise, "settled_total": cny(settled_total)},
            "provider": {"payables": payables},
            "void": {"record": void.id, "amount": cny(void.fen), "reason": w.void_reason},
        }));
    }
    json!({ "walks": walks })
}

/// A named person with a console password and a token of their own (the token signs the
/// person's CLI commands, such as a provider's usage import).
fn create_person(url: &str, p: &Person) -> String {
    let o = bin()
        .args([
            "user",
            "create",
            "--database-url",
            url,
            "--login",
            p.login,
            "--name",
            p.name,
        ])
        .args(p.role)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "user create {}: {}",
        p.login,
        String::from_utf8_lossy(&o.stderr)
    );
    support::set_password(url, p.login, PASSWORD);
    let printed = support::token_create(url, &["--user", p.login]);
    printed
        .split_whitespace()
        .find(|w| w.starts_with("sl_"))
        .expect("a token is printed")
        .to_owned()
}

fn copy_dir(from: &Path, to: &Path) -> usize {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(from).into_iter().flatten().flatten() {
        if std::fs::copy(entry.path(), to.join(entry.file_name())).is_ok() {
            n += 1;
        }
    }
    n
}

#[test]
fn each_role_walks_its_month_in_both_languages() {
    if let Some(why) = missing() {
        let required = std::env::var("SUANLI_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "browser test required (SUANLI_REQUIRE_BROWSER=1) but {why}"
        );
        eprintln!("skipping the browser test: {why}");
        return;
    }
    let plan = plan();

    let http = format!("127.0.0.1:{}", free_port());
    let db = sqlite_db().expect("a SQLite database");
    let above = CONFIRM_ABOVE_FEN.to_string();
    let server = Server {
        process: support::Server::start_with_env(
            &db.url,
            &["--http-addr", &http],
            &[("SUANLI_LEDGER_PAYMENT_CONFIRM_ABOVE_FEN", above.as_str())],
        ),
        db,
    };
    let tokens: BTreeMap<&str, String> = PEOPLE
        .iter()
        .map(|p| (p.key, create_person(&server.db.url, p)))
        .collect();
    let admin = server.token(&["--role", "admin"]);
    let dc_b = server.token(&["--role", "provider", "--provider", "dc-b"]);
    let registry = root().join("examples/worked/registry.toml");
    server.ok(
        &admin,
        &["registry", "import", "--file", registry.to_str().unwrap()],
    );
    // Usage as the providers post it: each its own file through `suanli usage import`.
    for (provider, token) in [("dc-a", &tokens["provider"]), ("dc-b", &dc_b)] {
        let mut csv = HEADER.to_owned();
        for r in RECORDS.iter().filter(|r| r.provider == provider) {
            csv += &format!(
                "{},{},{},{},{},{},{},{}\n",
                r.provider,
                r.id,
                r.beneficiary,
                r.sku,
                r.start,
                r.end,
                r.quantity,
                plain(r.fen)
            );
        }
        let rejected = if provider == "dc-a" {
            // Rows the server rejects, so the provider page lists rejects in both languages.
            csv += DC_A_REJECTED_ROWS;
            3
        } else {
            0
        };
        let file = server.file(&format!("{provider}.csv"), &csv);
        let o = server.run(token, &["usage", "import", "--file", &file]);
        assert_eq!(
            o.status.code(),
            Some(rejected),
            "{provider}'s import: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    let shots = server.db.dir.join("screenshots/month");
    let mut plan = plan;
    plan["url"] = json!(format!("http://{http}"));
    plan["out"] = json!(shots.display().to_string());
    plan["password"] = json!(PASSWORD);
    // Names from the registry, shown as they are in both languages.
    plan["data_names"] = json!(["杭州市级算力券 2025", "国家智能券 2025"]);
    plan["people"] = PEOPLE
        .iter()
        .map(|p| (p.key.to_owned(), json!({"login": p.login, "name": p.name})))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let plan_file = server.file("plan.json", &plan.to_string());
    let status = Command::new("node")
        .current_dir(root().join("e2e"))
        .args(["month.mjs", "--plan", &plan_file])
        .env("CHROMIUM", chromium())
        .status()
        .expect("node runs");
    let kept = kept("screenshots/month");
    let n = copy_dir(&shots, &kept);
    eprintln!("{n} screenshots in {}", kept.display());
    assert!(
        status.success(),
        "e2e/month.mjs failed (its output above names the step, role and language); screenshots in {}",
        kept.display()
    );
    // Every step of both walks left its screenshot (finance's at both widths).
    let steps = std::fs::read_to_string(shots.join("steps.txt")).expect("steps.txt was written");
    let walked: Vec<&str> = steps.lines().collect();
    for lang in ["zh", "en"] {
        for role in ["finance", "enterprise", "provider", "auditor"] {
            assert!(
                walked
                    .iter()
                    .any(|l| l.starts_with(&format!("{lang} {role} "))),
                "{role} walked in {lang}: {steps}"
            );
        }
    }
    let pngs: Vec<String> = std::fs::read_dir(&kept)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".png"))
        .collect();
    for line in &walked {
        // `lang role step page`: the page's screenshot at 390 px, and at 1280 px for finance.
        let [lang, role, _, page] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("a step line: {line:?}");
        };
        let widths: &[&str] = if role == "finance" {
            &["390", "1280"]
        } else {
            &["390"]
        };
        for width in widths {
            let suffix = format!("-{role}-{page}-{width}.png");
            assert!(
                pngs.iter()
                    .any(|f| f.starts_with(&format!("{lang}-")) && f.ends_with(&suffix)),
                "the screenshot of {line} at {width} px is kept in {}",
                kept.display()
            );
        }
    }
}

/// The model itself, on the worked example's March (docs/rules.md): A 150,000.00 municipal
/// (stacked 15%), B 200,000.00 (20%), C 150,000.00 (25% − 10%), D 300,000.00 (no opening
/// balance here, so no cap), U nothing municipal (data).
#[test]
fn the_model_reproduces_the_worked_example() {
    let march = lines(MUNICIPAL, 3, &|_| true);
    let by: BTreeMap<&str, i64> = march.iter().map(|(k, v)| (k.0.as_str(), *v)).collect();
    assert_eq!(
        by,
        BTreeMap::from([
            ("ent-a", yuan(150_000)),
            ("ent-b", yuan(200_000)),
            ("ent-c", yuan(150_000)),
            ("ent-d", yuan(300_000)),
        ])
    );
    let national = lines(NATIONAL, 3, &|_| true);
    let by: BTreeMap<&str, i64> = national.iter().map(|(k, v)| (k.0.as_str(), *v)).collect();
    assert_eq!(
        by,
        BTreeMap::from([
            ("ent-a", yuan(300_000)),
            ("ent-c", yuan(100_000)),
            ("uni-u", yuan(150_000)),
        ])
    );
    assert_eq!(cny(123_456_789), "¥1,234,567.89");
    assert_eq!(cny(-5), "-¥0.05");
}
