//! The console's lists over HTTP, on SQLite and on PostgreSQL: each list's filters and pages
//! select the rows they should (rows in and rows out), bad parameters are refused naming their
//! field, a provider sees only its own usage records and voids one from the list, the audit log
//! shows its chain's state, every export holds exactly the filtered rows (XLSX amounts are
//! numbers), and each list is refused to the roles that may not read it.

mod support;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use support::cli::{Db, pg_db, sqlite_db};
use support::console::{Browser, Fixture, Response, cny, settle_march, start_on};

/// The `data-id`s of the rows of the table `data-list="{list}"`, in order.
fn ids(r: &Response, list: &str) -> Vec<String> {
    let marker = format!("data-list=\"{list}\"");
    let at = r
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("{marker} in {} {}", r.status, r.body));
    let end = at + r.body[at..].find("</table>").unwrap();
    r.body[at..end]
        .split("<tr data-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

/// The `data-total` of the page's count.
fn total(r: &Response) -> u64 {
    let at = r.body.find("data-total=\"").expect("a count") + "data-total=\"".len();
    r.body[at..at + r.body[at..].find('"').unwrap()]
        .parse()
        .unwrap()
}

/// The field and code of the page's refusal.
fn refused(r: &Response) -> (String, String) {
    let at = r
        .body
        .find("id=\"error\"")
        .unwrap_or_else(|| panic!("an error in {} {}", r.status, r.body));
    let tag = &r.body[at..at + r.body[at..].find('>').unwrap()];
    let attr = |name: &str| {
        let from = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        tag[from..from + tag[from..].find('"').unwrap()].to_owned()
    };
    (attr("data-field"), attr("data-code"))
}

/// The page's link `rel="{rel}"` (`next`, `prev`), as a path on `base`.
fn link(r: &Response, base: &str, rel: &str) -> Option<String> {
    let marker = format!("rel=\"{rel}\"");
    let at = r.body.find(&marker)?;
    let from = r.body[..at].rfind("href=\"").unwrap() + "href=\"".len();
    let href = &r.body[from..from + r.body[from..].find('"').unwrap()];
    Some(format!("{base}{}", href.replace("&#38;", "&")))
}

fn get_ok(b: &Browser, path: &str) -> Response {
    let r = b.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r
}

/// The export at `path` as CSV rows (the byte-order mark checked and removed).
fn csv_rows(b: &Browser, path: &str) -> Vec<Vec<String>> {
    let r = b.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(
        r.header("content-type").unwrap().starts_with("text/csv"),
        "{:?}",
        r.headers
    );
    assert!(
        r.header("content-disposition")
            .unwrap()
            .starts_with("attachment"),
    );
    let text = r
        .body
        .strip_prefix('\u{feff}')
        .unwrap_or_else(|| panic!("a byte-order mark: {:?}", &r.body[..10.min(r.body.len())]));
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The export at `path` as XLSX rows, read back with calamine.
fn xlsx_rows(b: &Browser, path: &str) -> Vec<Vec<Data>> {
    // The HTTP helper reads bodies as text; the workbook is binary, so read it raw.
    let stream = std::net::TcpStream::connect(&b.addr).unwrap();
    let mut stream = stream;
    use std::io::{Read, Write};
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        b.addr, b.cookies
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    assert!(head.contains("spreadsheetml"), "{head}");
    let mut body = raw[split + 4..].to_vec();
    if head.to_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[end + 2..end + 2 + size]);
            rest = &rest[end + 2 + size + 2..];
        }
        body = out;
    }
    let mut book = Xlsx::new(Cursor::new(body)).expect("a workbook");
    let name = book.sheet_names()[0].clone();
    let range = book.worksheet_range(&name).unwrap();
    range.rows().map(<[Data]>::to_vec).collect()
}

fn check_lists(f: &Fixture) {
    let (f1, _f2) = settle_march(f);
    let auditor = Browser::sign_in(&f.http, &f.tokens.auditor);
    let dc_a = Browser::sign_in(&f.http, &f.tokens.dc_a);
    let ent_a = Browser::sign_in(&f.http, &f.tokens.ent_a);

    // Role access: the finance lists are the readers'; usage records also a provider's own.
    for path in [
        "/finance/enterprises",
        "/finance/providers",
        "/finance/runs",
        "/finance/payments",
        "/audit/log",
    ] {
        assert_eq!(dc_a.get(path).status, 403, "{path} to a provider");
        assert_eq!(ent_a.get(path).status, 403, "{path} to an enterprise");
        assert_eq!(auditor.get(path).status, 200, "{path} to an auditor");
        assert_eq!(f1.get(path).status, 200, "{path} to finance");
        assert_eq!(
            dc_a.get(&format!("{path}?export=csv")).status,
            403,
            "{path} export to a provider"
        );
    }

    // Usage records: everyone's to finance; a provider's own only, filters in and out.
    let all = get_ok(&f1, "/records");
    assert_eq!(ids(&all, "records"), ["r1", "r4", "r5", "r2", "r3"]);
    assert_eq!(total(&all), 5);
    let own = get_ok(&dc_a, "/records");
    assert_eq!(ids(&own, "records"), ["r1", "r4", "r5"]);
    assert!(
        !own.body.contains("data-id=\"r2\""),
        "no other provider's record"
    );
    let other = dc_a.get("/records?provider=dc-b");
    assert_eq!(other.status, 403, "{}", other.body);
    let exported = dc_a.get("/records?provider=dc-b&export=csv");
    assert_eq!(exported.status, 403);
    assert_eq!(
        ids(&get_ok(&f1, "/records?provider=dc-b"), "records"),
        ["r2", "r3"]
    );
    assert_eq!(
        ids(&get_ok(&f1, "/records?beneficiary=ent-a"), "records"),
        ["r1"]
    );
    assert_eq!(ids(&get_ok(&f1, "/records?sku=a-data"), "records"), ["r4"]);
    assert_eq!(
        ids(&get_ok(&f1, "/records?period=2025-03&q=r3"), "records"),
        ["r3"]
    );
    assert!(ids(&get_ok(&f1, "/records?period=2025-04"), "records").is_empty());
    assert!(ids(&get_ok(&f1, "/records?beneficiary=nobody"), "records").is_empty());
    assert!(ids(&get_ok(&f1, "/records?void=yes"), "records").is_empty());
    // An enterprise sees the records made for it.
    assert_eq!(ids(&get_ok(&ent_a, "/records"), "records"), ["r1"]);
    assert_eq!(ent_a.get("/records?beneficiary=ent-b").status, 403);

    // Pages: bounded, keeping the filters; past the last page is refused naming `page`. A
    // page of records links to the next page after its last row and to the previous one
    // before its first row.
    let p1 = get_ok(&f1, "/records?per=2&void=no");
    assert_eq!(ids(&p1, "records"), ["r1", "r4"]);
    assert!(link(&p1, "", "prev").is_none());
    let next = link(&p1, "/records", "next").unwrap();
    assert!(
        next.starts_with("/records?void=no&per=2&page=2&after=") && next.ends_with("%3Ar4"),
        "{next}"
    );
    let p2 = get_ok(&f1, &next);
    assert_eq!(ids(&p2, "records"), ["r5", "r2"]);
    let p3 = get_ok(&f1, &link(&p2, "/records", "next").unwrap());
    assert_eq!(ids(&p3, "records"), ["r3"]);
    assert!(link(&p3, "", "next").is_none(), "{}", p3.body);
    let back = link(&p3, "/records", "prev").unwrap();
    assert!(back.contains("page=2&before="), "{back}");
    let back2 = get_ok(&f1, &back);
    assert_eq!(ids(&back2, "records"), ["r5", "r2"]);
    assert!(back2.body.contains("data-page=\"2\""), "{}", back2.body);
    assert_eq!(
        link(&back2, "/records", "prev").unwrap(),
        "/records?void=no&per=2"
    );
    // By number, the same pages.
    assert_eq!(
        ids(&get_ok(&f1, "/records?per=2&void=no&page=2"), "records"),
        ["r5", "r2"]
    );
    assert_eq!(
        ids(&get_ok(&f1, "/records?per=2&void=no&page=3"), "records"),
        ["r3"]
    );
    let past = f1.get("/records?per=2&page=4");
    assert_eq!(past.status, 404, "{}", past.body);
    assert_eq!(refused(&past), ("page".into(), "page_beyond_end".into()));
    let past = f1.get("/records?per=2&page=2&after=999999%3Ar1");
    assert_eq!(past.status, 404, "after the last row: {}", past.body);
    // A number reaches the counted part of the list (100,000 rows): page 2,001 of 50 starts
    // at row 100,001, and is refused before anything is read.
    assert_eq!(f1.get("/records?page=2000").status, 404);
    for path in ["/records?page=2001", "/records?per=200&page=501"] {
        let deep = f1.get(path);
        assert_eq!(deep.status, 400, "{path}: {}", deep.body);
        assert_eq!(refused(&deep), ("page".into(), "page_too_deep".into()));
        assert!(
            deep.body.contains("页码只到第 100,000 条记录"),
            "{}",
            deep.body
        );
    }

    // Bad parameters name their field, on a Chinese page in Chinese.
    for (path, field, code) in [
        ("/records?page=0", "page", "page_not_a_number"),
        ("/records?per=500", "per", "per_out_of_range"),
        ("/records?void=maybe", "void", "not_a_choice"),
        ("/records?period=2025-3", "period", "period_not_a_month"),
        ("/finance/runs?sort=amount", "sort", "not_a_choice"),
        ("/finance/runs?state=done", "state", "not_a_choice"),
        (
            "/finance/payments?colour=red",
            "colour",
            "unknown_parameter",
        ),
        (
            "/audit/log?from=2025-04-02&to=2025-04-01",
            "to",
            "range_reversed",
        ),
        ("/audit/log?from=yesterday", "from", "day_not_a_date"),
        ("/finance/enterprises?year=20x5", "year", "year_not_a_year"),
        ("/records?export=pdf", "export", "not_a_choice"),
        ("/records?after=r4", "after", "cursor_invalid"),
        ("/records?page=2&after=x%3Ar4", "after", "cursor_invalid"),
        ("/records?page=2&before=1%3A", "before", "cursor_invalid"),
        (
            "/records?page=2&after=1%3Ar1&before=1%3Ar2",
            "before",
            "cursor_invalid",
        ),
        ("/finance/runs?after=1%3Ar1", "after", "unknown_parameter"),
    ] {
        let r = f1.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(refused(&r), (field.into(), code.into()), "{path}");
    }
    let zh = f1.get("/records?page=0");
    assert!(zh.body.contains("页码应为从 1 开始的整数"), "{}", zh.body);

    // A provider voids a record from its list, through the void confirmation.
    assert!(own.body.contains("action=\"/provider/void\""));
    assert!(
        !all.body.contains("action=\"/provider/void\""),
        "finance may not void"
    );
    let voided = dc_a.post_confirmed(
        "/provider/void",
        "provider=dc-a&record_id=r4&reason=duplicate+meter+read",
    );
    assert_eq!(voided.status, 200, "{}", voided.body);
    assert_eq!(ids(&get_ok(&dc_a, "/records?void=yes"), "records"), ["r4"]);
    assert_eq!(
        ids(&get_ok(&dc_a, "/records?void=no"), "records"),
        ["r1", "r5"]
    );

    // Runs: by state, period and programme, names before ids.
    let posted = get_ok(&auditor, "/finance/runs?state=posted");
    assert_eq!(ids(&posted, "runs"), ["1"]);
    assert!(ids(&get_ok(&auditor, "/finance/runs?state=open"), "runs").is_empty());
    assert!(ids(&get_ok(&auditor, "/finance/runs?period=2025-04"), "runs").is_empty());
    assert!(
        ids(
            &get_ok(
                &auditor,
                "/finance/runs?programme=national-intelligence-2025"
            ),
            "runs"
        )
        .is_empty()
    );
    let march = get_ok(
        &auditor,
        "/finance/runs?programme=hz-municipal-2025&period=2025-03",
    );
    assert_eq!(ids(&march, "runs"), ["1"]);
    // The programme is picked by name among the registry's; one it no longer holds still
    // filters, and the picker keeps it.
    assert!(
        march.body.contains("<option value=\"hz-municipal-2025\" selected>杭州市级算力券 2025 (hz-municipal-2025)</option>")
            && march.body.contains("<option value=\"national-intelligence-2025\">国家智能券 2025 (national-intelligence-2025)</option>"),
        "{}",
        march.body
    );
    let gone = get_ok(&auditor, "/finance/runs?programme=old-2024");
    assert!(ids(&gone, "runs").is_empty());
    assert!(
        gone.body
            .contains("<option value=\"old-2024\" selected>old-2024</option>"),
        "{}",
        gone.body
    );

    // Payments: one booked to dc-a; filtered in and out; exported with exact amounts.
    let paid = f1.post_confirmed(
        "/finance/payments",
        "payee=dc-a&programme=hz-municipal-2025&amount=1234.56&reference=BANK-1",
    );
    assert_eq!(paid.status, 200, "{}", paid.body);
    let payments = get_ok(&auditor, "/finance/payments?payee=dc-a");
    assert_eq!(ids(&payments, "payments").len(), 1);
    assert!(payments.body.contains("¥1,234.56"), "{}", payments.body);
    assert!(
        ids(
            &get_ok(&auditor, "/finance/payments?payee=dc-b"),
            "payments"
        )
        .is_empty()
    );
    assert!(
        ids(
            &get_ok(&auditor, "/finance/payments?state=awaiting"),
            "payments"
        )
        .is_empty()
    );
    assert_eq!(
        ids(
            &get_ok(
                &auditor,
                "/finance/payments?programme=hz-municipal-2025&state=booked"
            ),
            "payments"
        )
        .len(),
        1
    );
    let rows = csv_rows(&auditor, "/finance/payments?payee=dc-a&export=csv");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].contains(&"金额".to_owned()), "{:?}", rows[0]);
    let amount = rows[0].iter().position(|h| h == "金额").unwrap();
    assert_eq!(rows[1][amount], "1234.56");
    let book = xlsx_rows(&auditor, "/finance/payments?payee=dc-a&export=xlsx");
    assert_eq!(book.len(), 2);
    assert_eq!(book[0][amount], Data::String("金额".into()));
    assert_eq!(book[1][amount], Data::Float(1234.56), "{:?}", book[1]);
    // A cell a spreadsheet would read as a formula is exported as text.
    let formula = f1.post_confirmed(
        "/finance/payments",
        "payee=dc-a&programme=hz-municipal-2025&amount=1.00&reference=%3DSUM%28A1%29",
    );
    assert_eq!(formula.status, 200, "{}", formula.body);
    let rows = csv_rows(
        &auditor,
        "/finance/payments?payee=dc-a&sort=amount&dir=asc&export=csv",
    );
    let reference = rows[0].iter().position(|h| h == "凭证号").unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[1][reference], "'=SUM(A1)", "{rows:?}");
    assert_eq!(rows[1][amount], "1.00");
    let book = xlsx_rows(
        &auditor,
        "/finance/payments?payee=dc-a&sort=amount&dir=asc&export=xlsx",
    );
    assert_eq!(
        book[1][reference],
        Data::String("=SUM(A1)".into()),
        "text, not a formula"
    );
    assert_eq!(book[1][amount], Data::Float(1.0));
    // English headers on an English page.
    let en = csv_rows(&auditor, "/finance/payments?payee=dc-a&export=csv&lang=en");
    assert!(en[0].contains(&"Amount".to_owned()), "{:?}", en[0]);

    // Exports hold exactly the filtered rows, the whole list and not only the page shown.
    let rows = csv_rows(&f1, "/records?provider=dc-b&per=1&export=csv");
    let record = rows[0].iter().position(|h| h == "记录编号").unwrap();
    let got: Vec<&str> = rows[1..].iter().map(|r| r[record].as_str()).collect();
    assert_eq!(got, ["r2", "r3"]);
    let amount = rows[0].iter().position(|h| h == "金额").unwrap();
    assert_eq!(rows[1][amount], "1000000.00");
    let book = xlsx_rows(&f1, "/records?void=no&export=xlsx");
    let got: Vec<String> = book[1..].iter().map(|r| r[0].to_string()).collect();
    assert_eq!(got, ["r1", "r5", "r2", "r3"]);
    let amount = book[0]
        .iter()
        .position(|h| *h == Data::String("金额".into()))
        .unwrap();
    assert_eq!(book[1][amount], Data::Float(1_000_000.0));
    assert_eq!(book[2][amount], Data::Float(1_000_000.0));
    let own_export = csv_rows(&dc_a, "/records?export=csv");
    assert_eq!(own_export.len(), 4, "dc-a's three records: {own_export:?}");

    // Enterprises: by name or id; the at-cap list matches the finance page's count.
    let found = get_ok(&auditor, "/finance/enterprises?q=ENT-A");
    assert_eq!(ids(&found, "enterprises"), ["ent-a"]);
    let everyone = get_ok(&auditor, "/finance/enterprises?sort=id");
    assert_eq!(
        ids(&everyone, "enterprises"),
        ["ent-a", "ent-b", "ent-c", "ent-d", "uni-u"]
    );
    let finance = get_ok(&auditor, "/finance");
    for programme in ["hz-municipal-2025", "national-intelligence-2025"] {
        let link = format!("id=\"at-cap-{programme}\"");
        let at = finance.body.find(&link).unwrap_or_else(|| panic!("{link}"));
        let count_at = at + finance.body[at..].find("class=\"at-cap\">").unwrap() + 15;
        let count: usize = finance.body
            [count_at..count_at + finance.body[count_at..].find('<').unwrap()]
            .parse()
            .unwrap();
        let listed = get_ok(
            &auditor,
            &format!("/finance/enterprises?state=at_cap&programme={programme}&year=2025"),
        );
        assert_eq!(ids(&listed, "enterprises").len(), count, "{programme}");
        let near = get_ok(
            &auditor,
            &format!("/finance/enterprises?state=near_cap&programme={programme}&year=2025"),
        );
        let below = get_ok(
            &auditor,
            &format!("/finance/enterprises?state=below_cap&programme={programme}&year=2025"),
        );
        let none = get_ok(
            &auditor,
            &format!("/finance/enterprises?programme={programme}&year=2025"),
        );
        assert!(
            ids(&listed, "enterprises").len()
                + ids(&near, "enterprises").len()
                + ids(&below, "enterprises").len()
                <= ids(&none, "enterprises").len(),
            "each granted enterprise is in one position"
        );
    }
    let rows = csv_rows(&auditor, "/finance/enterprises?q=ent&export=csv");
    assert_eq!(rows.len(), 5, "ent-a … ent-d and the header: {rows:?}");

    // Providers: names before ids.
    let providers = get_ok(&auditor, "/finance/providers?q=b");
    assert_eq!(ids(&providers, "providers"), ["dc-b"]);
    assert!(
        providers
            .body
            .contains(">B <small class=\"muted\">dc-b</small>")
    );

    // The audit log: its chain's state and head hash; filters by action, actor and day.
    let log = get_ok(&auditor, "/audit/log");
    assert!(log.body.contains("data-intact=\"true\""), "{}", log.body);
    assert!(log.body.contains("id=\"head-hash\""));
    let void = get_ok(&auditor, "/audit/log?action=record.void");
    assert_eq!(ids(&void, "audit").len(), 1);
    let posts = get_ok(&auditor, "/audit/log?action=run.post");
    assert_eq!(ids(&posts, "audit").len(), 1);
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .date_naive();
    let today_all = get_ok(&auditor, &format!("/audit/log?from={today}&to={today}"));
    assert_eq!(total(&today_all), total(&log), "everything happened today");
    let yesterday = today.pred_opt().unwrap();
    assert!(
        ids(
            &get_ok(&auditor, &format!("/audit/log?to={yesterday}")),
            "audit"
        )
        .is_empty()
    );
    assert!(ids(&get_ok(&auditor, "/audit/log?actor=nobody-at-all"), "audit").is_empty());
    // Actions by name, the code beside; picked by name; exported as both.
    assert!(
        posts
            .body
            .contains("<td>结算批次过账 <small class=\"muted\">run.post</small></td>")
            && posts
                .body
                .contains("<option value=\"run.post\" selected>结算批次过账</option>"),
        "{}",
        posts.body
    );
    let en = get_ok(&auditor, "/audit/log?action=run.post&lang=en");
    assert!(
        en.body
            .contains("<td>Run posted <small class=\"muted\">run.post</small></td>"),
        "{}",
        en.body
    );
    let rows = csv_rows(&auditor, "/audit/log?action=run.post&export=csv&lang=zh");
    assert_eq!(rows.len(), 2);
    let at = rows[0]
        .iter()
        .position(|h| h == "操作类型")
        .expect("the action's column");
    assert_eq!(rows[0][at + 1], "操作类型 编号");
    assert_eq!(
        (rows[1][at].as_str(), rows[1][at + 1].as_str()),
        ("结算批次过账", "run.post")
    );
}

/// An export longer than one chunk of a thousand rows walks the whole list, across providers,
/// in order: 1,300 April records for each of dc-a and dc-b.
fn a_long_export_has_every_record(f: &Fixture) {
    let mut want = Vec::new();
    for (provider, sku, price, token) in [
        ("dc-a", "a-dom", "20.00", &f.tokens.dc_a),
        ("dc-b", "b-oth", "25.00", &f.tokens.dc_b),
    ] {
        let mut csv = String::from(support::cli::HEADER);
        for i in 0..1300 {
            let id = format!("m{i:05}");
            csv.push_str(&format!(
                "{provider},{id},ent-a,{sku},2025-04-01T00:00:00+08:00,2025-04-01T01:00:00+08:00,1,{price}\n"
            ));
            want.push(id);
        }
        let file = f.server.file(&format!("many-{provider}.csv"), &csv);
        let o = f.server.run(token, &["usage", "import", "--file", &file]);
        assert!(
            o.status.success(),
            "{provider}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let rows = csv_rows(&f1, "/records?period=2025-04&export=csv");
    let got: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(got.len(), 2600);
    assert_eq!(got, want);
    let providers: Vec<&str> = rows[1..].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(providers[1299], "dc-a");
    assert_eq!(providers[1300], "dc-b");
    // Newest first, the same walk backwards.
    let rows = csv_rows(&f1, "/records?period=2025-04&dir=desc&export=csv");
    let got: Vec<&str> = rows[1..].iter().rev().map(|r| r[0].as_str()).collect();
    assert_eq!(got, want);

    // The pages' links walk the same list, across providers, forwards to the last page and
    // back to the first, each page where its number puts it.
    for dir in ["asc", "desc"] {
        let mut pages = Vec::new();
        let mut at = Some(format!("/records?period=2025-04&dir={dir}&per=200"));
        while let Some(path) = at {
            let page = get_ok(&f1, &path);
            let shown = ids(&page, "records");
            assert!(
                page.body
                    .contains(&format!("data-page=\"{}\"", pages.len() + 1)),
                "{path}"
            );
            pages.push(shown);
            at = link(&page, "/records", "next");
            if at.is_none() {
                // Back from the last page through the previous pages' links.
                let mut back = link(&page, "/records", "prev");
                let mut n = pages.len() - 1;
                while let Some(path) = back {
                    let page = get_ok(&f1, &path);
                    assert_eq!(ids(&page, "records"), pages[n - 1], "{path}");
                    n -= 1;
                    back = link(&page, "/records", "prev");
                }
                assert_eq!(n, 0, "back to the first page");
            }
        }
        assert_eq!(pages.len(), 13, "{dir}");
        let mut walked: Vec<String> = pages.concat();
        if dir == "desc" {
            walked.reverse();
        }
        assert_eq!(walked, want, "{dir}");
    }
}

fn fixture(db: Db) -> Fixture {
    start_on(db, &[])
}

/// Edits an audit entry behind the server's back: the audit log then shows a broken chain.
fn tampered_chain_shows(f: &Fixture) {
    let sql = "UPDATE audit_log SET actor = 'someone else' WHERE seq = 2";
    let url = &f.server.db.url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute(sql, [])
            .unwrap();
    } else {
        postgres::Client::connect(url, postgres::NoTls)
            .unwrap()
            .execute(sql, &[])
            .unwrap();
    }
    let auditor = Browser::sign_in(&f.http, &f.tokens.auditor);
    let log = get_ok(&auditor, "/audit/log");
    assert!(log.body.contains("data-intact=\"false\""), "{}", log.body);
}

/// `suanli index` on the fixture's database: `args` after `index`, then the database; must
/// succeed. Returns stdout.
fn index(f: &Fixture, args: &[&str]) -> String {
    let out = support::bin()
        .arg("index")
        .args(args)
        .args(["--database-url", &f.server.db.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "index {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Both optional indexes of usage records, built through the CLI on the running server's
/// empty database: listed, built once, then written by ingest for every record.
fn build_record_indexes(f: &Fixture) {
    let listed = index(f, &["list"]);
    assert!(
        listed.contains("enterprise   usage_records_by_beneficiary   absent")
            && listed.contains("month        usage_records_by_period        absent"),
        "{listed}"
    );
    for which in ["enterprise", "month"] {
        let built = index(f, &["create", which]);
        assert!(
            built.contains(&format!("built the index of usage records by {which}")),
            "{built}"
        );
        let again = index(f, &["create", which]);
        assert!(again.contains("is already there"), "{again}");
    }
    let listed = index(f, &["list"]);
    assert_eq!(listed.matches("present").count(), 2, "{listed}");
    // The lists' filtered page is a range of the index (SQLite's plan of the same shape).
    if let Some(path) = f.server.db.url.strip_prefix("sqlite://") {
        let c = rusqlite::Connection::open(path).unwrap();
        for (column, index) in [
            ("beneficiary_id", "usage_records_by_beneficiary"),
            ("period", "usage_records_by_period"),
        ] {
            let plan: Vec<String> = c
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT u.record_id FROM usage_records u \
                     WHERE 1 = 1 AND u.{column} = ?1 ORDER BY u.provider_id, u.record_id LIMIT 50"
                ))
                .unwrap()
                .query_map([1], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                plan.iter().any(|p| p.contains(index))
                    && !plan.iter().any(|p| p.contains("TEMP B-TREE")),
                "{column}: {plan:?}"
            );
        }
    }
}

/// The indexes dropped through the CLI: gone, and dropping again says so.
fn drop_record_indexes(f: &Fixture) {
    for which in ["enterprise", "month"] {
        let dropped = index(f, &["drop", which]);
        assert!(
            dropped.contains(&format!("dropped the index of usage records by {which}")),
            "{dropped}"
        );
        let again = index(f, &["drop", which]);
        assert!(again.contains("is not there"), "{again}");
    }
    assert_eq!(index(f, &["list"]).matches("absent").count(), 2);
}

#[test]
fn lists_on_sqlite() {
    let f = fixture(sqlite_db().expect("SQLite"));
    check_lists(&f);
    a_long_export_has_every_record(&f);
    tampered_chain_shows(&f);
}

#[test]
fn lists_on_postgres() {
    let Some(db) = pg_db() else {
        return;
    };
    let f = fixture(db);
    check_lists(&f);
    a_long_export_has_every_record(&f);
    tampered_chain_shows(&f);
}

/// The same lists with both optional indexes of usage records: the same rows in the same order.
#[test]
fn lists_with_record_indexes_on_sqlite() {
    let f = fixture(sqlite_db().expect("SQLite"));
    build_record_indexes(&f);
    check_lists(&f);
    a_long_export_has_every_record(&f);
    drop_record_indexes(&f);
}

#[test]
fn lists_with_record_indexes_on_postgres() {
    let Some(db) = pg_db() else {
        return;
    };
    let f = fixture(db);
    build_record_indexes(&f);
    check_lists(&f);
    a_long_export_has_every_record(&f);
    drop_record_indexes(&f);
}

/// A run of 250 lines (one per enterprise, each paid to the enterprise) on `db`: its page
/// shows them 100 at a time with the run's count and sum, pages beyond the end or not numbers
/// are refused naming `page`, an enterprise's lines are found by its id, and the post's
/// confirmation lists the 50 largest payees by name and sums the other 200 in one row.
fn run_lines_are_paged(db: Db) {
    let http = format!("127.0.0.1:{}", support::console::free_port());
    let s =
        support::cli::Server::start_with(db, &["--http-addr", &http, "--token-recheck-secs", "0"]);
    let admin = s.token(&["--role", "admin"]);
    let f1 = s.token(&["--role", "finance"]);
    let f2 = s.token(&["--role", "finance"]);
    let dc_a = s.token(&["--role", "provider", "--provider", "dc-a"]);
    let ids: Vec<String> = (0..250).map(|i| format!("e{i:03}")).collect();
    let registry = s.file(
        "wide.toml",
        &support::cli::wide_registry("wide-2025", "", &ids),
    );
    s.ok(&admin, &["registry", "import", "--file", &registry]);
    let mut usage = support::cli::HEADER.to_owned();
    for (i, id) in ids.iter().enumerate() {
        usage.push_str(&support::cli::may_record(i as u64, id, 1_000 + i as i64));
    }
    let usage = s.file("may.csv", &usage);
    s.ok(&dc_a, &["usage", "import", "--file", &usage]);
    let run = support::cli::run_id(&s.ok(
        &f1,
        &[
            "settle",
            "create",
            "--programme",
            "wide-2025",
            "--period",
            "2025-05",
        ],
    ));
    // Each line: half of 10.00 + i fen, rounded half-up once.
    let line = |i: i64| (1_000 + i + 1) / 2;
    let total: i64 = (0..250).map(line).sum();
    let b = Browser::sign_in(&http, &f1);
    let base = format!("/finance/runs/{run}");
    let rows = |r: &Response| r.body.matches("class=\"explain-link\"").count();

    let first = get_ok(&b, &base);
    assert_eq!(rows(&first), 100);
    assert!(first.body.contains("data-lines=\"250\""), "{}", first.body);
    assert!(first.body.contains("data-selected=\"250\""));
    assert!(
        first
            .body
            .contains(&format!("<dd id=\"run-total\">{}</dd>", cny(total))),
        "{}",
        first.body
    );
    assert!(first.body.contains("第 1 / 3 页"));
    let second = get_ok(&b, &link(&first, "", "next").expect("a next page"));
    assert_eq!(rows(&second), 100);
    assert!(second.body.contains("data-page=\"2\""));
    let last = get_ok(&b, &link(&first, "", "last").expect("a last page"));
    assert_eq!(rows(&last), 50);
    assert!(link(&last, "", "next").is_none());
    // The lines of the three pages are the run's, each once.
    let mut seen: Vec<&str> = [&first, &second, &last]
        .iter()
        .flat_map(|r| r.body.split("<td data-beneficiary=\"").skip(1))
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 250);

    let beyond = b.get(&format!("{base}?page=4"));
    assert_eq!(beyond.status, 404, "{}", beyond.body);
    assert_eq!(refused(&beyond), ("page".into(), "page_beyond_end".into()));
    let word = b.get(&format!("{base}?page=two"));
    assert_eq!(word.status, 400, "{}", word.body);
    assert_eq!(refused(&word), ("page".into(), "page_not_a_number".into()));

    let one = get_ok(&b, &format!("{base}?beneficiary=e007"));
    assert_eq!(rows(&one), 1);
    assert!(one.body.contains("data-selected=\"1\""));
    assert!(one.body.contains(&format!("{}</td>", cny(line(7)))));
    assert!(one.body.contains("value=\"e007\""), "the filter is kept");
    let none = get_ok(&b, &format!("{base}?beneficiary=nobody"));
    assert_eq!(rows(&none), 0);
    assert!(none.body.contains("data-selected=\"0\""));

    // The post's confirmation: the 50 largest payees, then the other 200 summed.
    s.ok(&f2, &["settle", "approve", &run]);
    let confirm = b.post(&format!("{base}/post"), "");
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("data-lines=\"250\""));
    assert!(confirm.body.contains("data-payees=\"250\""));
    let listed: Vec<&str> = confirm
        .body
        .split("<td data-payee=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    // The largest first; equal shares (half-up makes pairs) by the payee's id.
    let mut by_share: Vec<(i64, String)> =
        (0..250).map(|i| (-line(i), format!("e{i:03}"))).collect();
    by_share.sort();
    let largest: Vec<&str> = by_share[..50].iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(listed, largest);
    assert!(
        confirm
            .body
            .contains("<tr id=\"confirm-others\" data-payees=\"200\"><td>其余 200 个收款方</td><td class=\"num\">200</td>"),
        "{}",
        confirm.body
    );
    let others: i64 = by_share[50..].iter().map(|(share, _)| -share).sum();
    let at = confirm.body.find("id=\"confirm-others\"").unwrap();
    assert!(
        confirm.body[at..].contains(&format!("{}</td>", cny(others))),
        "{}",
        &confirm.body[at..]
    );
    let posted = b.post_confirmed(&format!("{base}/post"), "");
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert!(get_ok(&b, &base).body.contains("data-status=\"posted\""));
}

#[test]
fn run_lines_are_paged_on_sqlite() {
    run_lines_are_paged(sqlite_db().expect("SQLite"));
}

#[test]
fn run_lines_are_paged_on_postgres() {
    let Some(db) = pg_db() else {
        return;
    };
    run_lines_are_paged(db);
}
