//! The console's audit page on a ledger larger than one page, on SQLite and on PostgreSQL: the
//! journal (newest first) and the trial balance each show one bounded page with links to the
//! next, the filters (account prefix, days, run) select in the store, a long journal shows its
//! first entries and says how many it has, and the totals are the whole ledger's.

mod support;

use support::cli::{Db, pg_db, sqlite_db};
use support::console::{Browser, Fixture, Response, cny, settle_march, start_on};

/// Journals added behind the server's back, two entries each on accounts of their own.
const JOURNALS: usize = 130;
/// Entries of the one long journal added.
const LONG_ENTRIES: usize = 60;
/// The long journal's last entries, on accounts of their own.
const LATE_ENTRIES: usize = 4;
/// What a page shows at most.
const JOURNALS_PER_PAGE: usize = 50;
const ACCOUNTS_PER_PAGE: usize = 200;
const ENTRIES_SHOWN: usize = 50;

/// Runs `sql` (statements separated by `;`) on the fixture's database.
fn execute(f: &Fixture, sql: &str) {
    let url = &f.server.db.url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    } else {
        postgres::Client::connect(url, postgres::NoTls)
            .unwrap()
            .batch_execute(sql)
            .unwrap();
    }
}

/// The first column of `sql`'s rows, as text (the query casts it).
fn texts(f: &Fixture, sql: &str) -> Vec<String> {
    let url = &f.server.db.url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let c = rusqlite::Connection::open(path).unwrap();
        let mut s = c.prepare(sql).unwrap();
        s.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    } else {
        postgres::Client::connect(url, postgres::NoTls)
            .unwrap()
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }
}

/// The ledger beyond the worked example's run: [`JOURNALS`] payments, the first half on
/// 2025-04-10 and the rest on 2025-04-11 (Asia/Shanghai), each debiting `expense:test:NNN` and
/// crediting `payable:test:NNN` by 100 + NNN fen; then one journal of [`LONG_ENTRIES`] entries.
fn add_journals(f: &Fixture) {
    let mut sql = String::new();
    for n in 0..JOURNALS {
        let at = if n < JOURNALS / 2 {
            "2025-04-10T02:00:00.000Z"
        } else {
            "2025-04-11T02:00:00.000Z"
        };
        let amount = 100 + n;
        sql.push_str(&format!(
            "INSERT INTO journals (kind, reference, memo, created_by, created_at) \
             VALUES ('payment', 'T-{n:03}', 'test', 'tester', '{at}');\n\
             INSERT INTO journal_entries (journal_id, seq, account, debit_fen, credit_fen) \
             SELECT journal_id, 0, 'expense:test:{n:03}', {amount}, 0 FROM journals WHERE reference = 'T-{n:03}';\n\
             INSERT INTO journal_entries (journal_id, seq, account, debit_fen, credit_fen) \
             SELECT journal_id, 1, 'payable:test:{n:03}', 0, {amount} FROM journals WHERE reference = 'T-{n:03}';\n"
        ));
    }
    sql.push_str(
        "INSERT INTO journals (kind, reference, memo, created_by, created_at) \
         VALUES ('payment', 'T-LONG', 'test', 'tester', '2025-04-12T02:00:00.000Z');\n",
    );
    for seq in 0..LONG_ENTRIES {
        // Its last entries on accounts of their own, past the entries a page shows first.
        let (account, debit, credit) = match (seq % 2 == 0, seq >= LONG_ENTRIES - LATE_ENTRIES) {
            (true, false) => ("expense:long", 7, 0),
            (false, false) => ("payable:long", 0, 7),
            (true, true) => ("expense:late", 9, 0),
            (false, true) => ("payable:late", 0, 9),
        };
        sql.push_str(&format!(
            "INSERT INTO journal_entries (journal_id, seq, account, debit_fen, credit_fen) \
             SELECT journal_id, {seq}, '{account}', {debit}, {credit} FROM journals WHERE reference = 'T-LONG';\n"
        ));
    }
    // The running totals per account, as the store keeps them beside the entries it appends.
    sql.push_str(
        "DELETE FROM account_totals;\n\
         INSERT INTO account_totals (account, debit_fen, credit_fen, entries) \
         SELECT account, SUM(debit_fen), SUM(credit_fen), COUNT(*) FROM journal_entries GROUP BY account;\n",
    );
    execute(f, &sql);
}

fn get_ok(b: &Browser, path: &str) -> Response {
    let r = b.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r
}

/// The part of the page from `marker` to the end of its element `end`.
fn part<'a>(r: &'a Response, marker: &str, end: &str) -> &'a str {
    let at = r
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {}", r.body));
    &r.body[at..at + r.body[at..].find(end).unwrap()]
}

/// The first four cells (id, time, kind, reference) of each journal listed, in order: a
/// journal's first row holds them, spanning its rows.
fn journal_heads(r: &Response) -> Vec<Vec<String>> {
    part(r, "id=\"journal\"", "</table>")
        .split("<tr")
        .skip(1)
        .filter_map(|row| {
            let cells: Vec<String> = row
                .split("<td rowspan=\"")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..];
                    text[..text.find("</td>").unwrap()].to_owned()
                })
                .collect();
            (cells.len() == 4).then_some(cells)
        })
        .collect()
}

/// The journal ids listed, in order.
fn journal_ids(r: &Response) -> Vec<i64> {
    journal_heads(r)
        .iter()
        .map(|h| h[0].parse().unwrap())
        .collect()
}

/// The references of the journals listed, in order.
fn references(r: &Response) -> Vec<String> {
    journal_heads(r)
        .into_iter()
        .map(|mut h| h.remove(3))
        .collect()
}

/// The account codes of the trial balance shown, in order.
fn accounts(r: &Response) -> Vec<String> {
    part(r, "id=\"trial-balance\"", "</tbody>")
        .split("<code>")
        .skip(1)
        .map(|s| s[..s.find("</code>").unwrap()].to_owned())
        .collect()
}

/// The `data-total` of the element `id`.
fn total(r: &Response, id: &str) -> usize {
    let tag = part(r, &format!("id=\"{id}\""), ">");
    let at = tag.find("data-total=\"").unwrap() + "data-total=\"".len();
    tag[at..at + tag[at..].find('"').unwrap()].parse().unwrap()
}

/// The link `rel` of the pager `id`, as a path of the audit page.
fn link(r: &Response, id: &str, rel: &str) -> Option<String> {
    let nav = part(r, &format!("id=\"{id}\""), "</nav>");
    let at = nav.find(&format!("rel=\"{rel}\""))?;
    let before = &nav[..at];
    let href = &before[before.rfind("href=\"").unwrap() + "href=\"".len()..];
    Some(format!(
        "/audit{}",
        href[..href.find('"').unwrap()]
            .replace("&amp;", "&")
            .replace("&#38;", "&")
    ))
}

fn check_ledger(f: &Fixture) {
    // The worked example's March run, posted: its journal is the ledger's first.
    let _ = settle_march(f);
    add_journals(f);

    let mut all_ids: Vec<i64> = texts(f, "SELECT CAST(journal_id AS TEXT) FROM journals")
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    all_ids.sort_unstable_by(|a, b| b.cmp(a));
    assert!(all_ids.len() > 2 * JOURNALS_PER_PAGE, "{}", all_ids.len());
    let all_accounts = texts(
        f,
        "SELECT account FROM journal_entries GROUP BY account ORDER BY account",
    );
    assert!(all_accounts.len() > ACCOUNTS_PER_PAGE);
    let debits: i64 = texts(
        f,
        "SELECT CAST(SUM(debit_fen) AS TEXT) FROM journal_entries",
    )[0]
    .parse()
    .unwrap();
    let credits: i64 = texts(
        f,
        "SELECT CAST(SUM(credit_fen) AS TEXT) FROM journal_entries",
    )[0]
    .parse()
    .unwrap();
    assert_eq!(debits, credits);

    let auditor = Browser::sign_in(&f.http, &f.tokens.auditor);

    // The journal, newest first, a page at a time: the pages together are the whole journal.
    let first = get_ok(&auditor, "/audit");
    let mut shown = journal_ids(&first);
    assert_eq!(shown.len(), JOURNALS_PER_PAGE, "one page of journals");
    assert_eq!(
        accounts(&first).len(),
        ACCOUNTS_PER_PAGE,
        "one page of accounts"
    );
    assert_eq!(total(&first, "journal-count"), all_ids.len());
    assert_eq!(link(&first, "journal-pages", "prev"), None);
    let mut next = link(&first, "journal-pages", "next");
    let mut pages = 1;
    while let Some(path) = next {
        let r = get_ok(&auditor, &path);
        let ids = journal_ids(&r);
        assert!(!ids.is_empty() && ids.len() <= JOURNALS_PER_PAGE, "{path}");
        shown.extend(ids);
        next = link(&r, "journal-pages", "next");
        pages += 1;
        assert!(pages <= all_ids.len(), "the pages end");
    }
    assert_eq!(shown, all_ids, "every journal once, newest first");
    assert_eq!(pages, all_ids.len().div_ceil(JOURNALS_PER_PAGE));

    // The long journal shows its first entries and says how many it has.
    let long = part(&first, "T-LONG", "</tbody>");
    let long = &long[..long.find("entries-cut").expect("the long journal is cut")];
    assert_eq!(long.matches("<code>").count(), ENTRIES_SHOWN);
    let en = get_ok(&auditor, "/audit?lang=en");
    assert!(
        en.body.contains(&format!(
            "First {ENTRIES_SHOWN} of {LONG_ENTRIES} entries shown"
        )),
        "{}",
        en.body
    );

    // Selected by an account its first entries do not touch, the long journal shows the
    // entries on that account instead, and says so.
    let late = get_ok(&auditor, "/audit?account=expense:late&lang=en");
    assert_eq!(references(&late), ["T-LONG"]);
    let long = part(&late, "T-LONG", "</tbody>");
    let long = &long[..long.find("entries-cut").expect("the long journal is cut")];
    assert_eq!(
        long.matches("<code>expense:late</code>").count(),
        LATE_ENTRIES / 2
    );
    assert_eq!(long.matches("<code>").count(), LATE_ENTRIES / 2, "{long}");
    assert!(
        late.body.contains(&format!(
            "Entries on accounts starting with expense:late shown ({}; the journal has {LONG_ENTRIES})",
            LATE_ENTRIES / 2
        )),
        "{}",
        late.body
    );

    // The trial balance: one page of accounts, the next page the rest, and the totals are the
    // whole ledger's.
    assert_eq!(total(&first, "account-count"), all_accounts.len());
    let mut listed = accounts(&first);
    assert_eq!(listed.len(), ACCOUNTS_PER_PAGE, "one page of accounts");
    let second = link(&first, "account-pages", "next").expect("a next page of accounts");
    let second = get_ok(&auditor, &second);
    assert_eq!(
        journal_ids(&second)[..],
        all_ids[..JOURNALS_PER_PAGE],
        "the journal stays on its page"
    );
    listed.extend(accounts(&second));
    assert_eq!(listed, all_accounts);
    assert_eq!(link(&second, "account-pages", "next"), None);
    for page in [&first, &second] {
        let foot = part(page, "<tfoot>", "</tfoot>");
        assert_eq!(foot.matches(&cny(debits)).count(), 2, "{foot}");
        assert!(foot.contains("data-balanced=\"true\""), "{foot}");
    }

    // The account prefix selects the journals with an entry on such an account, and the trial
    // balance's accounts; the links keep it.
    let by_account = get_ok(&auditor, "/audit?account=expense:test:00");
    assert_eq!(total(&by_account, "journal-count"), 10);
    let want: Vec<String> = (0..10).rev().map(|n| format!("T-{n:03}")).collect();
    assert_eq!(references(&by_account), want);
    let want: Vec<String> = (0..10).map(|n| format!("expense:test:{n:03}")).collect();
    assert_eq!(accounts(&by_account), want);
    assert_eq!(total(&by_account, "account-count"), 10);
    let payable = get_ok(&auditor, "/audit?account=payable:test:");
    assert_eq!(total(&payable, "journal-count"), JOURNALS);
    let next = link(&payable, "journal-pages", "next").unwrap();
    assert!(next.contains("account=payable%3Atest%3A"), "{next}");
    let rest = get_ok(&auditor, &next);
    assert_eq!(
        references(&rest)[0],
        format!("T-{:03}", JOURNALS - 1 - JOURNALS_PER_PAGE)
    );

    // The run selects its posting only; the days select by the Asia/Shanghai day.
    let by_run = get_ok(&auditor, "/audit?run=1");
    assert_eq!(references(&by_run), ["run:1"]);
    assert_eq!(total(&by_run, "journal-count"), 1);
    assert!(by_run.body.contains("data-balanced=\"true\""));
    assert_eq!(total(&get_ok(&auditor, "/audit?run=2"), "journal-count"), 0);
    let day = get_ok(&auditor, "/audit?from=2025-04-11&to=2025-04-11");
    assert_eq!(total(&day, "journal-count"), JOURNALS - JOURNALS / 2);
    let days = get_ok(&auditor, "/audit?from=2025-04-10&to=2025-04-12");
    assert_eq!(total(&days, "journal-count"), JOURNALS + 1);

    // The posted run is offered for re-derive.
    assert!(part(&first, "id=\"posted-runs\"", "</table>").contains("/audit/runs/1/rederive"));

    // A page past the end (HTTP 404), or not a number (HTTP 400), is refused beside its pager.
    let beyond = auditor.get("/audit?page=99");
    assert_eq!(beyond.status, 404, "{}", beyond.body);
    assert_eq!(beyond.error_field().as_deref(), Some("page"));
    let bad = auditor.get("/audit?accounts_page=x");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.error_field().as_deref(), Some("accounts_page"));
}

fn fixture(db: Db) -> Fixture {
    start_on(db, &[])
}

#[test]
fn ledger_pages_on_sqlite() {
    check_ledger(&fixture(sqlite_db().expect("SQLite")));
}

#[test]
fn ledger_pages_on_postgres() {
    let Some(db) = pg_db() else {
        return;
    };
    check_ledger(&fixture(db));
}
