//! The console explains every run line and prints a run's settlement statement, on both
//! backends: the worked example of docs/rules.md through the real server (January brings
//! 杭宇智能 (ent-d) near its cap, March's line is cut by it, April claws back a voided record
//! and adds a late one), then the explanation's figures and sentences to the fen in zh-CN and
//! English, the records it came from (search by id, void state), who may open which
//! explanation, the links from the run page and the enterprise page, the statement's lines
//! and totals, and the provider's receivable.

mod support;

use suanli_testkit::TestDb as Db;
use support::cli::{HEADER, Server, pg_db, run_id, sqlite_db};
use support::console::{Browser, Response, cny, free_port};
use support::root;

/// ent-d's name in the registry: the explanation names it before its id.
const ENT_D: &str = "杭宇智能";

/// The page's text with askama's escapes undone, for comparing sentences.
fn text(r: &Response) -> String {
    r.body
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
}

fn has(what: &str, r: &Response, expected: &str) {
    assert!(
        text(r).contains(expected),
        "{what}: {expected:?} not in:\n{}",
        r.body
    );
}

/// The value of the first `name="line" value="…"` field of the page (a line's search form).
fn line_token(r: &Response) -> String {
    let at = r
        .body
        .find("name=\"line\" value=\"")
        .unwrap_or_else(|| panic!("a line search form: {}", r.body));
    let rest = &r.body[at + "name=\"line\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The `data-id` of every row of the table `data-list="list"`.
fn rows(r: &Response, list: &str) -> Vec<String> {
    let marker = format!("data-list=\"{list}\"");
    let Some(at) = r.body.find(&marker) else {
        return Vec::new();
    };
    let table = &r.body[at..at + r.body[at..].find("</table>").unwrap()];
    table
        .split("<tr data-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

/// Σ of the `subsidy` column of `settle export`'s CSV, in fen.
fn exported_total(s: &Server, token: &str, run: &str) -> i64 {
    let out = s.db.dir.join(format!("export-{run}.csv"));
    s.ok(
        token,
        &["settle", "export", run, "--out", out.to_str().unwrap()],
    );
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let subsidy = l.split(',').nth(9).unwrap();
            let (yuan, fen) = subsidy.split_once('.').unwrap();
            let sign = if yuan.starts_with('-') { -1 } else { 1 };
            let yuan: i64 = yuan.trim_start_matches('-').parse().unwrap();
            sign * (yuan * 100 + fen.parse::<i64>().unwrap())
        })
        .sum()
}

fn explained(db: Db) {
    let http = format!("127.0.0.1:{}", free_port());
    let s = Server::start_with(db, &["--http-addr", &http, "--token-recheck-secs", "0"]);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let auditor = s.token(&["--role", "auditor"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let dc_b = s.token(&["--role", "provider", "--provider", "dc-b"]);
    let ent_d = s.token(&["--role", "beneficiary", "--beneficiary", "ent-d"]);
    let ent_b = s.token(&["--role", "beneficiary", "--beneficiary", "ent-b"]);
    let registry = std::fs::read_to_string(root().join("examples/worked/registry.toml"))
        .unwrap()
        .replace("name = \"ent-d\"", &format!("name = \"{ENT_D}\""));
    let file = s.file("registry.toml", &registry);
    s.ok(&admin, &["registry", "import", "--file", &file]);
    let settle = |period: &str, post: bool| -> String {
        let id = run_id(&s.ok(
            &f1,
            &[
                "settle",
                "create",
                "--programme",
                "hz-municipal-2025",
                "--period",
                period,
            ],
        ));
        s.ok(&f2, &["settle", "approve", &id]);
        if post {
            s.ok(&f1, &["settle", "post", &id]);
        }
        id
    };

    // January: ent-d receives 7,900,000.00 of its 8,000,000.00 cap.
    let jan = s.file("jan.csv", &format!("{HEADER}dc-a,j1,ent-d,a-dom,2025-01-01T00:00:00+08:00,2025-01-11T00:00:00+08:00,1316667,26333333.33\n"));
    s.ok(&dc_a, &["usage", "import", "--file", &jan]);
    let january = settle("2025-01", true);
    // March: the worked example; ent-d's demand of 300,000.00 is cut to the 100,000.00 left.
    let usage = std::fs::read_to_string(root().join("examples/worked/usage.csv")).unwrap();
    for (provider, token) in [("dc-a", &dc_a), ("dc-b", &dc_b)] {
        let mine: String = usage
            .lines()
            .filter(|l| l.starts_with(&format!("{provider},")))
            .map(|l| format!("{l}\n"))
            .collect();
        let f = s.file(&format!("march-{provider}.csv"), &format!("{HEADER}{mine}"));
        s.ok(token, &["usage", "import", "--file", &f]);
    }
    let march = settle("2025-03", true);
    // April: dc-b voids ent-b's settled March record and reports a late one for ent-c; the
    // run is approved, not posted.
    s.ok(
        &dc_b,
        &[
            "usage",
            "void",
            "--provider",
            "dc-b",
            "--record-id",
            "r2",
            "--reason",
            "billed in error",
        ],
    );
    let late = s.file("late.csv", &format!("{HEADER}dc-b,r9,ent-c,b-oth,2025-03-20T00:00:00+08:00,2025-03-21T00:00:00+08:00,100,2000.00\n"));
    s.ok(&dc_b, &["usage", "import", "--file", &late]);
    let april = settle("2025-04", false);

    let finance = Browser::sign_in(&http, &f1);
    let reader = Browser::sign_in(&http, &auditor);

    // ent-b's voided March record was settled: until April's run posts, the enterprise page
    // shows what it owes back as a negative pending, labelled, not floored to zero.
    for (lang, label) in [("zh", "（应追回）"), ("en", "(owed back)")] {
        let page = finance.get(&format!(
            "/enterprise?beneficiary=ent-b&year=2025&lang={lang}"
        ));
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains("<dd class=\"pending\">-¥")
                && page
                    .body
                    .contains(&format!("<small class=\"owed-back\">{label}</small>")),
            "a claw-back to come is shown as owed back ({lang}): {}",
            page.body
        );
    }

    // ent-d's March line in English: ratio, base, demand, the cap's cut, what it settles.
    let page = finance.get(&format!(
        "/finance/runs/{march}/explain?beneficiary=ent-d&lang=en"
    ));
    assert_eq!(page.status, 200, "{}", page.body);
    for expected in [
        "杭州市级算力券 2025".to_owned(),
        format!("{ENT_D}<small>ent-d</small>"),
        "<dd class=\"ratio\">30%</dd>".to_owned(),
        "<dd class=\"base\">¥1,000,000.00</dd>".to_owned(),
        "<dd class=\"demand\">¥300,000.00</dd>".to_owned(),
        "<dd class=\"entitlement\">¥100,000.00</dd>".to_owned(),
        "<dd class=\"settled-before\">¥0.00</dd>".to_owned(),
        "<dd class=\"change\">¥100,000.00</dd>".to_owned(),
        "ratio 30%: the own rate of 杭州市级算力券 2025 (hz-municipal-2025) for compute / domestic chips (R4)".to_owned(),
        format!("base ¥1,000,000.00: the line's usage records of 2025-03 when run {march} was created; its 1 record(s) not void now total the same"),
        "demand ¥300,000.00 = ¥1,000,000.00 × 30%, rounded half up once (R6)".to_owned(),
        format!(
            "demand ¥300,000.00, cut to ¥100,000.00: the 2025 cap of ¥8,000,000.00 for {ENT_D} (ent-d) was reached with run {march} (¥7,900,000.00 counted before 2025-03: earlier months ¥7,900,000.00; ¥100,000.00 left, shared by 1 line(s) wanting ¥300,000.00)"
        ),
        "entitled ¥100,000.00 for 2025-03, settled by this run".to_owned(),
    ] {
        has("ent-d's March line, English", &page, &expected);
    }
    assert_eq!(rows(&page, "line-records"), ["r5"], "the line's one record");
    // The same in Chinese.
    let page = finance.get(&format!(
        "/finance/runs/{march}/explain?beneficiary=ent-d&lang=zh"
    ));
    for expected in [
        "比例 30%：杭州市级算力券 2025 (hz-municipal-2025) 对「算力 / 国产芯片」的自有费率（R4）"
            .to_owned(),
        "需求 ¥300,000.00 = ¥1,000,000.00 × 30%，四舍五入一次（R6）".to_owned(),
        format!(
            "需求 ¥300,000.00，削减至 ¥100,000.00：{ENT_D} (ent-d) 的 2025 年企业额度上限 ¥8,000,000.00 在第 {march} 批结算中用满（2025-03 之前已计入 ¥7,900,000.00：以前月份 ¥7,900,000.00；剩余 ¥100,000.00，由 1 行共享，合计需求 ¥300,000.00）"
        ),
        "2025-03 应享 ¥100,000.00，由本批结算".to_owned(),
    ] {
        has("ent-d's March line, Chinese", &page, &expected);
    }
    assert!(
        !text(&page).contains("cut to"),
        "no English on a Chinese page"
    );

    // ent-a's March line is stacked: the national voucher is the primary, the municipal one
    // tops it up to the ceiling.
    let page = reader.get(&format!(
        "/finance/runs/{march}/explain?beneficiary=ent-a&lang=en"
    ));
    for expected in [
        "ratio 15%: compute / domestic chips is stacked (R5); 国家智能券 2025 (national-intelligence-2025) is the primary at 30%, and 杭州市级算力券 2025 (hz-municipal-2025) tops it up with min(its own 30%, the ceiling 45% − 30%) = 15%<",
        "<dd class=\"person payee\">A (dc-a), on the enterprise's behalf</dd>",
    ] {
        has("ent-a's stacked line", &page, expected);
    }
    let page = reader.get(&format!(
        "/finance/runs/{march}/explain?beneficiary=ent-a&lang=zh"
    ));
    has(
        "ent-a's stacked line, Chinese",
        &page,
        "比例 15%：「算力 / 国产芯片」可叠加享受（R5）；国家智能券 2025 (national-intelligence-2025) 为主项目（30%），杭州市级算力券 2025 (hz-municipal-2025) 叠加 min(自有费率 30%，上限 45% − 30%) = 15%<",
    );
    has("ent-a's payee", &page, "A (dc-a)（代企业收取）");

    // April's adjustment lines: ent-b's claw-back of the voided record, ent-c's late record.
    let page = reader.get(&format!(
        "/finance/runs/{april}/explain?beneficiary=ent-b&lang=en"
    ));
    assert_eq!(page.status, 200, "{}", page.body);
    for expected in [
        "data-adjustment=\"true\"",
        "<dd class=\"entitlement\">¥0.00</dd>",
        "<dd class=\"settled-before\">¥200,000.00</dd>",
        "<dd class=\"change\">-¥200,000.00</dd>",
        "adjusts 2025-03 (R9): entitled now ¥0.00, settled before ¥200,000.00, change -¥200,000.00 (a claw-back)",
        "no ratio: nothing of the line is left in its month",
        "(billed in error), not in this run's base",
    ] {
        has("ent-b's claw-back", &page, expected);
    }
    assert_eq!(rows(&page, "line-records"), ["r2"]);
    assert!(page.body.contains("data-id=\"r2\" data-void=\"true\""));
    let page = reader.get(&format!(
        "/finance/runs/{april}/explain?beneficiary=ent-c&lang=zh"
    ));
    for expected in [
        "调整 2025-03（R9）：现应享 ¥150,300.00，此前已结算 ¥150,000.00，本批变动 ¥300.00（补记）",
        "<dd class=\"settled-before\">¥150,000.00</dd>",
        "<dd class=\"change\">¥300.00</dd>",
    ] {
        has("ent-c's late record", &page, expected);
    }

    // The records of a line: searched by the beginning of their id and by void state.
    let first = reader.get(&format!("/finance/runs/{april}/explain?beneficiary=ent-c"));
    let token = line_token(&first);
    let all = rows(&first, "line-records");
    assert!(all.contains(&"r9".to_owned()) && all.len() > 1, "{all:?}");
    let search = |q: &str, void: &str| {
        rows(
            &reader.get(&format!(
                "/finance/runs/{april}/explain?beneficiary=ent-c&line={token}&q={q}&void={void}"
            )),
            "line-records",
        )
    };
    assert_eq!(search("r9", ""), ["r9"]);
    assert_eq!(search("r9", "yes"), Vec::<String>::new());
    assert_eq!(search("", "no"), all, "none of ent-c's records is void");
    let bad = reader.get(&format!(
        "/finance/runs/{april}/explain?beneficiary=ent-c&void=maybe&line={token}"
    ));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_field().as_deref(), Some("void"));
    let long = reader.get(&format!(
        "/finance/runs/{april}/explain?beneficiary=ent-c&line={token}&q={}",
        "r".repeat(129)
    ));
    assert_eq!(long.status, 400);
    assert_eq!(long.error_field().as_deref(), Some("q"));

    // Links: every line of the run page, and each posted line on the enterprise's page.
    let run_page = finance.get(&format!("/finance/runs/{march}"));
    // The run's lines name their parties before their ids, and give ratios as percentages.
    assert!(
        run_page
            .body
            .contains("杭宇智能 <small class=\"muted\">ent-d</small>"),
        "names before ids: {}",
        run_page.body
    );
    assert!(
        !run_page.body.contains("<td class=\"num\">0.") && run_page.body.contains("%</td>"),
        "ratios as percentages: {}",
        run_page.body
    );
    let links = run_page
        .body
        .matches(&format!(
            "href=\"/finance/runs/{march}/explain?beneficiary="
        ))
        .count();
    assert_eq!(
        links,
        run_page.body.matches("class=\"explain-link\"").count(),
        "every link is an explanation"
    );
    assert!(
        links >= 4,
        "each of the run's lines links its explanation: {links}"
    );
    assert!(run_page.body.contains("id=\"statement-link\""));
    let open_page = finance.get(&format!("/finance/runs/{april}"));
    assert!(open_page.body.contains("id=\"statement-link\""), "approved");
    let own = Browser::sign_in(&http, &ent_d);
    let home = own.get("/enterprise?year=2025");
    assert_eq!(home.status, 200, "{}", home.body);
    assert_eq!(
        rows(&home, "posted-lines").len(),
        2,
        "January's and March's lines: {}",
        home.body
    );
    assert!(
        home.body
            .contains("<td>A <small class=\"muted\">dc-a</small></td>"),
        "the provider named before its id: {}",
        home.body
    );
    let href_at = home
        .body
        .find(&format!("href=\"/enterprise/runs/{march}/explain?line="))
        .expect("March's line is linked");
    let href = &home.body[href_at + 6..];
    let href = href[..href.find('"').unwrap()].replace("&#38;", "&");

    // Who may open which explanation.
    let mine = own.get(&href);
    assert_eq!(mine.status, 200, "{}", mine.body);
    has("the enterprise's own line", &mine, "削减至 ¥100,000.00");
    assert_eq!(
        own.get(&format!("/enterprise/runs/{march}/explain")).status,
        200
    );
    let other = own.get(&format!(
        "/enterprise/runs/{march}/explain?beneficiary=ent-a"
    ));
    assert_eq!(
        other.status, 403,
        "another enterprise's lines: {}",
        other.body
    );
    assert!(
        other.body.contains("data-code=\"other_party\""),
        "{}",
        other.body
    );
    assert_eq!(
        own.get(&format!("/finance/runs/{march}/explain?beneficiary=ent-a"))
            .status,
        403,
        "the finance route is not an enterprise's"
    );
    assert_eq!(
        own.get(&format!("/finance/runs/{march}/statement")).status,
        403
    );
    let ent_b_page = Browser::sign_in(&http, &ent_b);
    assert_eq!(
        ent_b_page
            .get(&format!("/enterprise/runs/{january}/explain"))
            .status,
        404,
        "ent-b has no line in January's run"
    );
    let provider = Browser::sign_in(&http, &dc_a);
    assert_eq!(
        provider
            .get(&format!("/finance/runs/{march}/explain?beneficiary=ent-d"))
            .status,
        403
    );
    assert_eq!(
        provider
            .get(&format!(
                "/enterprise/runs/{march}/explain?beneficiary=ent-d"
            ))
            .status,
        403
    );
    let missing = finance.get(&format!("/finance/runs/{march}/explain"));
    assert_eq!(missing.status, 400);
    assert_eq!(missing.error_field().as_deref(), Some("beneficiary"));

    // The settlement statement of the posted March run: lines with names, totals equal to
    // the run's export, who created and approved it.
    let total = exported_total(&s, &auditor, &march);
    let sheet = reader.get(&format!("/finance/runs/{march}/statement?lang=en"));
    assert_eq!(sheet.status, 200, "{}", sheet.body);
    for expected in [
        "Settlement statement".to_owned(),
        "杭州市级算力券 2025".to_owned(),
        "<dd id=\"period\">2025-03</dd>".to_owned(),
        format!("<dd id=\"statement-total\">{}</dd>", cny(total)),
        format!(
            "<td class=\"num\" id=\"lines-total\"><b>{}</b></td>",
            cny(total)
        ),
        format!("{ENT_D}<br><small class=\"muted\">ent-d</small>"),
        "finance ".to_owned(),
        "@page { size: A4".to_owned(),
    ] {
        has("the March statement", &sheet, &expected);
    }
    let lines = rows(&sheet, "statement-lines");
    assert_eq!(
        lines.len(),
        run_page.body.matches("class=\"explain-link\"").count(),
        "one statement line per run line"
    );
    let person = |id: &str| -> String {
        let page = text(&sheet);
        let marker = format!("id=\"{id}\">");
        let rest = &page[page.find(&marker).unwrap() + marker.len()..];
        rest[..rest.find("<small>").unwrap()].to_owned()
    };
    let (creator, approver) = (person("creator"), person("approver"));
    assert!(
        creator.starts_with("finance ") && approver.starts_with("finance "),
        "persons named: {creator} / {approver}"
    );
    assert_ne!(creator, approver, "two persons");
    let zh = reader.get(&format!("/finance/runs/{march}/statement?lang=zh"));
    for expected in ["结算单", "按收款方汇总", "合计", "签批"] {
        has("the March statement, Chinese", &zh, expected);
    }
    // Each payee's statement: its lines of the run and their total, linked from the whole
    // run's table of payees; the payees' statements together are the run's.
    let payees = rows(&sheet, "statement-payees");
    assert!(!payees.is_empty());
    let (mut lines_of_payees, mut total_of_payees) = (0, 0i64);
    for payee in &payees {
        let link = format!("/finance/runs/{march}/statement?payee={payee}");
        has("a link to the payee's statement", &sheet, &link);
        let part = reader.get(&format!("{link}&lang=en"));
        assert_eq!(part.status, 200, "{}", part.body);
        has(
            "the payee's statement",
            &part,
            &format!("id=\"statement-payee\" data-payee=\"{payee}\""),
        );
        has("the payee's statement", &part, "id=\"whole-statement\"");
        let own = rows(&part, "statement-lines");
        assert!(!own.is_empty(), "{payee} has lines");
        assert_eq!(rows(&part, "statement-payees"), std::slice::from_ref(payee));
        let page = text(&part);
        let marker = "<dd id=\"statement-total\">";
        let rest = &page[page.find(marker).unwrap() + marker.len()..];
        let shown = &rest[..rest.find('<').unwrap()];
        let fen = |t: &str| {
            let negative = t.starts_with('-');
            let digits: String = t.chars().filter(char::is_ascii_digit).collect();
            let v: i64 = digits.parse().unwrap();
            if negative { -v } else { v }
        };
        lines_of_payees += own.len();
        total_of_payees += fen(shown);
    }
    assert_eq!(
        lines_of_payees,
        lines.len(),
        "the payees' lines are the run's"
    );
    assert_eq!(total_of_payees, total, "the payees' totals are the run's");
    // A payee without a line in the run is refused, naming the field.
    let none = reader.get(&format!(
        "/finance/runs/{march}/statement?payee=nobody&lang=zh"
    ));
    assert_eq!(none.status, 404, "{}", none.body);
    assert_eq!(none.error_field().as_deref(), Some("payee"));
    has("no such payee", &none, "data-code=\"payee_not_in_run\"");
    has(
        "no such payee, Chinese",
        &none,
        "该收款方在本批次中没有明细",
    );
    // April's statement: approved, with its claw-back, and the totals of both directions.
    let total = exported_total(&s, &auditor, &april);
    assert_eq!(total, -20_000_000 + 30_000, "a claw-back and a late record");
    let sheet = reader.get(&format!("/finance/runs/{april}/statement?lang=en"));
    assert_eq!(sheet.status, 200, "{}", sheet.body);
    for expected in [
        format!("<dd id=\"statement-total\">{}</dd>", cny(total)),
        "<dd id=\"statement-increases\">¥300.00</dd>".to_owned(),
        "<dd id=\"statement-claw-backs\">-¥200,000.00</dd>".to_owned(),
        "not posted yet".to_owned(),
    ] {
        has("the April statement", &sheet, &expected);
    }
    // An open run has no statement to sign.
    let may = s.file("may.csv", &format!("{HEADER}dc-a,m1,ent-a,a-dom,2025-05-01T00:00:00+08:00,2025-05-02T00:00:00+08:00,10,100.00\n"));
    s.ok(&dc_a, &["usage", "import", "--file", &may]);
    s.ok(&f2, &["settle", "post", &april]);
    let open = run_id(&s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "hz-municipal-2025",
            "--period",
            "2025-05",
        ],
    ));
    let refused = reader.get(&format!("/finance/runs/{open}/statement"));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("data-code=\"run_not_approved\""),
        "{}",
        refused.body
    );
    // A payee's part of it neither: the run's state is said first.
    let refused = reader.get(&format!("/finance/runs/{open}/statement?payee=dc-a"));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("data-code=\"run_not_approved\""));
    assert!(
        !finance
            .get(&format!("/finance/runs/{open}"))
            .body
            .contains("id=\"statement-link\""),
        "no statement link on an open run"
    );

    // The provider's page calls its money receivable, in both languages.
    let dc_b_page = Browser::sign_in(&http, &dc_b);
    has(
        "receivable, English",
        &dc_b_page.get("/provider?lang=en"),
        "Subsidy receivable",
    );
    let zh = dc_b_page.get("/provider?lang=zh");
    has("receivable, Chinese", &zh, "应收补贴");
    has("receivable, Chinese", &zh, "已拨付给本服务商");
}

/// A run of more lines than a statement lists (here, as a debug build may be told, one) gives
/// its totals and its payees' totals, each linked to the payee's statement, which lists the
/// payee's lines; the figures are those of the run.
#[test]
fn a_large_runs_statement_is_summarised_by_payee() {
    let f = support::console::start_with_env(&[("SUANLI_TEST_STATEMENT_LINES_MAX", "1")]);
    let (f1, _f2) = support::console::settle_march(&f);
    let run = f1.get("/finance/runs/1");
    let marker = "id=\"run-total\">";
    let rest = &run.body[run.body.find(marker).unwrap() + marker.len()..];
    let total = rest[..rest.find('<').unwrap()].to_owned();
    for (lang, words) in [("en", "too many to list here"), ("zh", "此处不逐条列出")] {
        let sheet = f1.get(&format!("/finance/runs/1/statement?lang={lang}"));
        assert_eq!(sheet.status, 200, "{}", sheet.body);
        has(
            "the summarised statement",
            &sheet,
            "id=\"statement-summarised\"",
        );
        has("the summarised statement", &sheet, words);
        has(
            "the summarised statement",
            &sheet,
            &format!("<dd id=\"statement-total\">{total}</dd>"),
        );
        assert!(rows(&sheet, "statement-lines").is_empty(), "no line listed");
        let payees = rows(&sheet, "statement-payees");
        assert!(!payees.is_empty());
        for payee in payees {
            has(
                "a link to the payee's statement",
                &sheet,
                &format!("/finance/runs/1/statement?payee={payee}"),
            );
        }
    }
    // A payee's statement lists its lines however large the run.
    let sheet = f1.get("/finance/runs/1/statement");
    let payee = rows(&sheet, "statement-payees").remove(0);
    let part = f1.get(&format!("/finance/runs/1/statement?payee={payee}"));
    assert_eq!(part.status, 200, "{}", part.body);
    assert!(!rows(&part, "statement-lines").is_empty());
    assert!(!part.body.contains("id=\"statement-summarised\""));
}

#[test]
fn run_lines_explained_and_statement_on_sqlite() {
    explained(sqlite_db().unwrap());
}

#[test]
fn run_lines_explained_and_statement_on_postgres() {
    if let Some(db) = pg_db() {
        explained(db);
    }
}
