//! Safer actions in the console, over plain HTTP: the month picker, four eyes in the page (the
//! creator is not offered approval), confirmations that say what will happen before posting,
//! cancelling or paying, refusals shown next to the field in the page's language with the input
//! kept, codes translated wherever they are shown, and charts with axes, gridlines and tables.

mod support;

use support::console::{Browser, Response, start};

/// The text of the element with `id`, up to its first tag's end.
fn element<'a>(r: &'a Response, id: &str) -> &'a str {
    let at = r
        .body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in {}", r.body));
    let start = at + r.body[at..].find('>').unwrap() + 1;
    let end = start + r.body[start..].find('<').unwrap();
    &r.body[start..end]
}

// The period is a month picker bounded to the year, and the server still checks it.
#[test]
fn period_is_a_month_picker() {
    let f = start();
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let page = f1.get("/finance");
    assert!(
        page.body.contains(
            "id=\"period\" name=\"period\" type=\"month\" required min=\"2025-01\" max=\"2025-12\""
        ),
        "{}",
        page.body
    );
    for bad in ["2025-3", "2025-13", "2025-00", "25-03", "2025-03-01"] {
        let r = f1.post(
            "/finance/runs",
            &format!("programme=hz-municipal-2025&period={bad}"),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.error_field().as_deref(), Some("period"), "{bad}");
    }
}

// The creator of a run is not offered its approval; another finance person is.
#[test]
fn approve_is_not_offered_to_the_creator() {
    let f = start();
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let f2 = Browser::sign_in(&f.http, &f.tokens.finance_2);
    assert_eq!(
        f1.post(
            "/finance/runs",
            "programme=hz-municipal-2025&period=2025-03"
        )
        .status,
        303
    );
    let own = f1.get("/finance/runs/1");
    assert!(!own.body.contains("id=\"approve\""), "{}", own.body);
    assert!(own.body.contains("id=\"four-eyes-note\""));
    assert!(
        own.body.contains("id=\"cancel\""),
        "the creator may still cancel"
    );
    assert_eq!(
        f1.post("/finance/runs/1/approve", "").status,
        403,
        "and the server still refuses"
    );
    let other = f2.get("/finance/runs/1");
    assert!(other.body.contains("id=\"approve\""), "{}", other.body);
    assert!(!other.body.contains("id=\"four-eyes-note\""));
    let _ = element(&other, "run-total");
}

/// The error element of a page: its field, its code and its text.
fn refusal(r: &Response) -> (String, String, String) {
    let at = r
        .body
        .find("id=\"error\"")
        .unwrap_or_else(|| panic!("an error in {}", r.body));
    let tag_end = at + r.body[at..].find('>').unwrap();
    let attr = |name: &str| {
        let tag = &r.body[at..tag_end];
        let from = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        tag[from..from + tag[from..].find('"').unwrap()].to_owned()
    };
    let text_end = tag_end + r.body[tag_end..].find("</p>").unwrap();
    (
        attr("data-field"),
        attr("data-code"),
        r.body[tag_end + 1..text_end].to_owned(),
    )
}

// A refused payment comes back as the form with the input kept and the refusal next to the
// field, in Chinese on a Chinese page and in English on an English one.
#[test]
fn refused_forms_keep_the_input_and_speak_the_page_language() {
    let f = start();
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let r = f1.post(
        "/finance/payments",
        "payee=dc-a&programme=hz-municipal-2025&amount=abc&reference=BANK-7",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let (field, code, text) = refusal(&r);
    assert_eq!(
        (field.as_str(), code.as_str()),
        ("amount", "amount_not_a_number")
    );
    assert!(text.contains("请填写金额"), "{text}");
    assert!(
        !text.contains("decimal"),
        "no English on a Chinese page: {text}"
    );
    for kept in [
        "id=\"payee\" name=\"payee\" required maxlength=\"200\" value=\"dc-a\"",
        "<option value=\"hz-municipal-2025\" selected>杭州市级算力券 2025 (hz-municipal-2025)</option>",
        "value=\"abc\"><p class=\"error\" id=\"error\" data-field=\"amount\"",
        "value=\"BANK-7\"",
    ] {
        assert!(r.body.contains(kept), "{kept} in {}", r.body);
    }

    // The same in English.
    let en = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let _ = en.get("/finance?lang=en");
    let r = request_en(
        &en,
        "/finance/payments",
        "payee=nobody&amount=1.00&reference=R",
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let (field, code, text) = refusal(&r);
    assert_eq!(
        (field.as_str(), code.as_str()),
        ("payee", "payee_owed_nothing")
    );
    assert!(text.starts_with("nothing is owed to this payee"), "{text}");

    // A refused run: the month outside the programme's year is kept beside its error.
    let r = f1.post(
        "/finance/runs",
        "programme=national-intelligence-2025&period=2024-12",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let (field, code, text) = refusal(&r);
    assert_eq!(
        (field.as_str(), code.as_str()),
        ("period", "period_outside_year")
    );
    assert!(text.contains("财政年度"), "{text}");
    assert!(r.body.contains("value=\"2024-12\""), "{}", r.body);
    assert!(
        r.body
            .contains("<option value=\"national-intelligence-2025\" selected>国家智能券 2025 (national-intelligence-2025)</option>")
    );

    // Four eyes: the run's page again, the refusal beside its actions, in Chinese.
    assert_eq!(
        f1.post(
            "/finance/runs",
            "programme=hz-municipal-2025&period=2025-03"
        )
        .status,
        303
    );
    let r = f1.post("/finance/runs/1/approve", "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("id=\"lines\""),
        "the run's page: {}",
        r.body
    );
    let (_, code, text) = refusal(&r);
    assert_eq!(code, "four_eyes");
    assert!(
        text.contains("四眼原则") && !text.contains("four eyes"),
        "{text}"
    );

    // An error page shows the code's text, not the use case's English.
    let provider = Browser::sign_in(&f.http, &f.tokens.dc_a);
    let r = provider.get("/finance");
    assert_eq!(r.status, 403);
    let (field, code, text) = refusal(&r);
    assert_eq!((field.as_str(), code.as_str()), ("role", "role_refused"));
    assert!(!r.body.contains("needs one of the roles"), "{}", r.body);
    assert!(text.contains("无权"), "{text}");
}

/// Posts `fields` as `b` with the English language cookie.
fn request_en(b: &Browser, path: &str, fields: &str) -> Response {
    support::console::request(
        &b.addr,
        "POST",
        path,
        &format!("{}; suanli_lang=en", b.cookies),
        Some(format!("csrf={}&{fields}", b.csrf).as_bytes()),
    )
}

/// The confirmation token a confirmation page carries.
fn token(r: &Response) -> String {
    let at = r
        .body
        .find("name=\"confirm\" value=\"")
        .unwrap_or_else(|| panic!("a confirmation in {}", r.body));
    let rest = &r.body[at + "name=\"confirm\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The run's status as its page shows it.
fn status_of(b: &Browser, run: u32) -> String {
    let page = b.get(&format!("/finance/runs/{run}"));
    let at = page.body.find("data-status=\"").unwrap() + "data-status=\"".len();
    page.body[at..at + page.body[at..].find('"').unwrap()].to_owned()
}

// Posting and cancelling a run show what will happen (total, lines, each payee) and act only
// on that confirmation, from that session, for the run as it was shown.
#[test]
fn run_actions_are_confirmed_first() {
    let f = start();
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let f2 = Browser::sign_in(&f.http, &f.tokens.finance_2);
    let create = "programme=hz-municipal-2025&period=2025-03";
    assert_eq!(f1.post("/finance/runs", create).status, 303);

    // A cancel confirmed while the run was open is stale once it is approved.
    let cancel = f1.post("/finance/runs/1/cancel", "");
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    assert!(cancel.body.contains("data-action=\"cancel\""));
    let stale = token(&cancel);
    assert_eq!(f2.post("/finance/runs/1/approve", "").status, 303);
    let r = f1.post("/finance/runs/1/cancel", &format!("confirm={stale}"));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(refusal(&r).1, "run_changed_since_confirmed");
    assert_eq!(
        status_of(&f1, 1),
        "approved",
        "the stale confirmation did nothing"
    );

    // The post's confirmation: what will be booked, and nothing booked yet.
    let shown = f2.post("/finance/runs/1/post", "");
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(
        element(&shown, "confirm-total"),
        element(&f2.get("/finance/runs/1"), "run-total")
    );
    assert_eq!(element(&shown, "confirm-total"), "¥800,000.00");
    assert_eq!(element(&shown, "confirm-lines"), "4");
    for payee in ["dc-a", "dc-b"] {
        assert!(
            shown
                .body
                .contains(&format!("<tr><td data-payee=\"{payee}\">")),
            "{payee} among the payees: {}",
            shown.body
        );
    }
    assert!(
        shown
            .body
            .contains("<td class=\"num\">¥450,000.00</td></tr>"),
        "what dc-a will be owed: {}",
        shown.body
    );
    assert!(shown.body.contains("过账不可撤销"));
    assert_eq!(
        status_of(&f2, 1),
        "approved",
        "showing the confirmation posts nothing"
    );

    // Another session's confirmation, or a made-up one, does nothing.
    let theirs = token(&f1.post("/finance/runs/1/post", ""));
    for wrong in [theirs.as_str(), "00"] {
        let r = f2.post("/finance/runs/1/post", &format!("confirm={wrong}"));
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(status_of(&f2, 1), "approved");
    }
    let r = f2.post(
        "/finance/runs/1/post",
        &format!("confirm={}", token(&shown)),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(status_of(&f2, 1), "posted");

    // A posted run is not offered a cancel confirmation: it cannot be cancelled.
    let r = f1.post("/finance/runs/1/cancel", "");
    assert_eq!(r.status, 409);
    assert_eq!(refusal(&r).1, "run_posted");
}

// A payment shows payee, programme, amount and what is owed before and after, and books only
// what was confirmed.
#[test]
fn payments_are_confirmed_first() {
    let f = start();
    let (_f1, f2) = {
        let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
        assert_eq!(
            f1.post(
                "/finance/runs",
                "programme=hz-municipal-2025&period=2025-03"
            )
            .status,
            303
        );
        let f2 = Browser::sign_in(&f.http, &f.tokens.finance_2);
        assert_eq!(f2.post("/finance/runs/1/approve", "").status, 303);
        assert_eq!(f2.post_confirmed("/finance/runs/1/post", "").status, 303);
        (f1, f2)
    };
    let journal = || f2.get("/audit").body.matches("<tr>").count();
    let before = journal();
    let fields = "payee=dc-a&amount=1000.50&reference=BANK-1";
    let shown = f2.post("/finance/payments", fields);
    assert_eq!(shown.status, 200, "{}", shown.body);
    // The payee named from the registry (dc-a is "A"), its id beside.
    assert!(
        shown.body.contains(
            "id=\"confirm-payee\" data-payee=\"dc-a\">A <small class=\"muted\">dc-a</small>"
        ),
        "{}",
        shown.body
    );
    assert_eq!(element(&shown, "confirm-amount"), "¥1,000.50");
    assert_eq!(element(&shown, "confirm-after"), "¥448,999.50");
    assert!(
        shown.body.contains(
            "<dd>杭州市级算力券 2025 <small class=\"muted\">hz-municipal-2025</small></dd>"
        ),
        "the programme that pays"
    );
    assert_eq!(journal(), before, "showing the confirmation books nothing");

    // The confirmation is of that payment: another amount with it books nothing.
    let confirm = token(&shown);
    let r = f2.post(
        "/finance/payments",
        &format!("payee=dc-a&amount=2000.00&reference=BANK-1&confirm={confirm}"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(refusal(&r).1, "payment_changed_since_confirmed");
    assert!(r.body.contains("value=\"2000.00\""), "the input is kept");
    assert_eq!(journal(), before);

    let r = f2.post("/finance/payments", &format!("{fields}&confirm={confirm}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"payment-result\""));
    assert!(journal() > before, "the confirmed payment is booked");
}

// Codes are shown by name in the page's language: accounts (credit balances as positive
// amounts owed), journal kinds, line classes, roles.
#[test]
fn codes_are_translated_where_shown() {
    let f = start();
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    assert_eq!(
        f1.post(
            "/finance/runs",
            "programme=hz-municipal-2025&period=2025-03"
        )
        .status,
        303
    );
    let f2 = Browser::sign_in(&f.http, &f.tokens.finance_2);
    assert_eq!(f2.post("/finance/runs/1/approve", "").status, 303);
    assert_eq!(f2.post_confirmed("/finance/runs/1/post", "").status, 303);

    let run = f2.get("/finance/runs/1");
    assert!(
        run.body.contains("<td>算力 / 国产芯片</td>"),
        "{}",
        run.body
    );
    // Programmes and parties by name first, their ids beside: the finance page's pools and
    // runs, the enterprise's cards, the provider's receivables.
    let named = "杭州市级算力券 2025 <small class=\"muted\">hz-municipal-2025</small>";
    let finance = f2.get("/finance");
    assert!(
        finance.body.contains(&format!("<h2>{named}</h2>")),
        "{}",
        finance.body
    );
    assert!(
        finance.body.contains(&format!("<td>{named}</td>")),
        "{}",
        finance.body
    );
    let enterprise = f2.get("/enterprise?beneficiary=ent-a");
    assert!(
        enterprise
            .body
            .contains(&format!("<h2>{named} <small>2025</small></h2>")),
        "{}",
        enterprise.body
    );
    let provider = f2.get("/provider?provider=dc-a");
    assert!(
        provider
            .body
            .contains("<small>A <small class=\"muted\">dc-a</small></small></h1>"),
        "{}",
        provider.body
    );
    assert!(
        provider.body.contains(&format!(
            "<h3 data-programme=\"hz-municipal-2025\">{named}</h3>"
        )),
        "{}",
        provider.body
    );
    let audit = f2.get("/audit");
    for named in [
        // Named from the registry: programme 杭州市级算力券 2025, provider dc-a "A".
        "资金池支出 · 杭州市级算力券 2025 · 市级",
        "应付款 · 杭州市级算力券 2025 · A",
        "结算过账",
    ] {
        assert!(audit.body.contains(named), "{named} in {}", audit.body);
    }
    // dc-a's payable: a credit balance, shown as the positive amount owed.
    let table = &audit.body[audit.body.find("id=\"trial-balance\"").unwrap()..];
    let row = &table[table
        .find("<code>payable:hz-municipal-2025:dc-a</code>")
        .unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.ends_with("<td class=\"num\"></td><td class=\"num\">¥450,000.00</td>"),
        "{row}"
    );
    assert!(
        !table[..table.find("</table>").unwrap()].contains("-¥"),
        "no negative balance"
    );
    let en = f2.get("/audit?lang=en");
    assert!(
        en.body
            .contains("Subsidy expense · 杭州市级算力券 2025 · city")
    );
    assert!(en.body.contains("Credit balance (owed)"));
}

// Every chart names its axes, draws gridlines, gives each bar's value on hover, and has a
// table of its figures beside it.
#[test]
fn charts_have_axes_gridlines_and_tables() {
    let f = start();
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    assert_eq!(
        f1.post(
            "/finance/runs",
            "programme=hz-municipal-2025&period=2025-03"
        )
        .status,
        303
    );
    let f2 = Browser::sign_in(&f.http, &f.tokens.finance_2);
    assert_eq!(f2.post("/finance/runs/1/approve", "").status, 303);
    assert_eq!(f2.post_confirmed("/finance/runs/1/post", "").status, 303);
    let enterprise = Browser::sign_in(&f.http, &f.tokens.ent_a).get("/enterprise");
    let finance = f2.get("/finance");
    let provider = Browser::sign_in(&f.http, &f.tokens.dc_a).get("/provider");
    for (page, r, charts, axes, row) in [
        (
            "enterprise",
            &enterprise,
            1,
            ["月份", "金额（元）"],
            "<tr><th scope=\"row\">3月</th><td>¥150,000.00</td>",
        ),
        (
            "finance",
            &finance,
            2,
            ["月份", "金额（元）"],
            "<tr><th scope=\"row\">3月</th><td>¥800,000.00</td></tr>",
        ),
        (
            "provider",
            &provider,
            1,
            ["日期（日）", "记录数"],
            "<tr><th scope=\"row\">",
        ),
    ] {
        assert_eq!(
            r.body.matches("<svg class=\"chart\"").count(),
            charts,
            "{page}: {}",
            r.body
        );
        assert_eq!(
            r.body
                .matches("<table class=\"chart-data\"><caption>")
                .count(),
            charts,
            "{page}: a table beside each chart"
        );
        assert!(r.body.contains("<line class=\"grid\""), "{page}: gridlines");
        for name in axes {
            assert!(
                r.body.contains("class=\"axis-name\"") && r.body.contains(&format!(">{name}</")),
                "{page}: axis {name}"
            );
        }
        assert!(r.body.contains(row), "{page}: {row} in {}", r.body);
    }
    // The March bar's value on hover.
    assert!(
        enterprise
            .body
            .contains("<title>3月 杭州市级算力券 2025: ¥150,000.00</title>"),
        "{}",
        enterprise.body
    );
    // The tallest column's gridline is labelled with its value in whole yuan.
    assert!(
        finance.body.contains(">¥800,000</text>"),
        "{}",
        finance.body
    );
}

// A provider voids its own usage record only after seeing it and what voiding does; others
// cannot; a wrong record id comes back next to its field with the input kept.
#[test]
fn voids_are_confirmed_first() {
    let f = start();
    let dc_a = Browser::sign_in(&f.http, &f.tokens.dc_a);
    let page = dc_a.get("/provider");
    assert!(page.body.contains("id=\"void-form\""), "{}", page.body);
    let finance = Browser::sign_in(&f.http, &f.tokens.finance_1);
    assert!(
        !finance
            .get("/provider?provider=dc-a")
            .body
            .contains("id=\"void-form\""),
        "finance reads a provider but does not void its records"
    );

    let shown = dc_a.post("/provider/void", "record_id=r1&reason=double+charge");
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("data-action=\"void\""));
    assert_eq!(element(&shown, "confirm-amount"), "¥1,000,000.00");
    assert!(shown.body.contains("不再计入补贴"), "what voiding does");
    assert!(!shown.body.contains("id=\"already-voided\""));
    let again = dc_a.post("/provider/void", "record_id=r1&reason=double+charge");
    assert!(
        !again.body.contains("id=\"already-voided\""),
        "showing the confirmation voids nothing"
    );

    // Another reason with this confirmation voids nothing.
    let confirm = token(&shown);
    let r = dc_a.post(
        "/provider/void",
        &format!("record_id=r1&reason=other&confirm={confirm}"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(refusal(&r).1, "record_changed_since_confirmed");

    let r = dc_a.post(
        "/provider/void",
        &format!("record_id=r1&reason=double+charge&confirm={confirm}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("id=\"void-result\" data-voided=\"true\""),
        "{}",
        r.body
    );
    let after = dc_a.post("/provider/void", "record_id=r1&reason=double+charge");
    assert!(
        after.body.contains("id=\"already-voided\""),
        "{}",
        after.body
    );

    // A record that does not exist: the form again, the id kept, the error beside it.
    let r = dc_a.post("/provider/void", "record_id=nope&reason=x");
    assert_eq!(r.status, 404, "{}", r.body);
    let (field, code, _) = refusal(&r);
    assert_eq!(
        (field.as_str(), code.as_str()),
        ("record_id", "record_not_found")
    );
    assert!(r.body.contains("value=\"nope\""));

    // Another provider's records, or finance: refused.
    let dc_b = Browser::sign_in(&f.http, &f.tokens.dc_b);
    let r = dc_b.post("/provider/void", "provider=dc-a&record_id=r4&reason=x");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = finance.post("/provider/void", "provider=dc-a&record_id=r4&reason=x");
    assert_eq!(r.status, 403, "{}", r.body);
}

// A journal filter that is not valid is kept as typed with its error beside it; the journal is
// listed without it.
#[test]
fn a_bad_journal_filter_is_shown_beside_the_field() {
    let f = start();
    let auditor = Browser::sign_in(&f.http, &f.tokens.auditor);
    let r = auditor.get("/audit?from=2025-13-40&account=payable");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("id=\"journal\""), "the page: {}", r.body);
    assert!(
        r.body.contains(
            "name=\"from\" type=\"date\" value=\"2025-13-40\"><span class=\"error\" id=\"error\" data-field=\"from\" data-code=\"day_not_a_date\">"
        ),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("value=\"payable\""),
        "the other filters are kept"
    );
    let r = auditor.get("/audit?run=abc");
    assert_eq!(r.status, 400);
    assert_eq!(refusal_field(&r), "run");
}

fn refusal_field(r: &Response) -> String {
    r.error_field().expect("an error naming its field")
}
