//! The web console over plain HTTP, without a browser: sign-in with good, bad and revoked
//! tokens, the gRPC services' role rules on every page and action (HTTP 403), CSRF, four eyes,
//! money and language, statements, re-derive, and adversarial forms that each get a named error
//! and change nothing.

mod support;

use support::console::{Browser, Fixture, request, settle_march, start};

/// What the ledger and the runs look like: the trial balance table and the runs table, as shown
/// to an auditor (neither carries a session token or a time of the request).
fn state(f: &Fixture) -> String {
    let auditor = Browser::sign_in(&f.http, &f.tokens.auditor);
    let audit = auditor.get("/audit");
    let finance = auditor.get("/finance");
    assert_eq!(audit.status, 200);
    assert_eq!(finance.status, 200);
    let slice = |body: &str, id: &str| {
        let start = body.find(id).unwrap_or_else(|| panic!("{id} in {body}"));
        let end = start + body[start..].find("</table>").unwrap();
        body[start..end].to_owned()
    };
    format!(
        "{}\n{}\n{}",
        slice(&audit.body, "id=\"trial-balance\""),
        slice(&audit.body, "id=\"journal\""),
        slice(&finance.body, "id=\"runs\"")
    )
}

// Sign-in, sessions, roles, four eyes, CSRF, money, language, statements and re-derive.
#[test]
fn console_enforces_roles_and_shows_the_ledger() {
    let f = start();
    let http = f.http.as_str();

    // Not signed in: pages lead to the sign-in form, which is Chinese by default.
    let r = request(http, "GET", "/finance", "", None);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/signin"));
    let r = request(http, "GET", "/signin", "", None);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("lang=\"zh-CN\"") && r.body.contains("登录"));
    let r = request(http, "POST", "/finance/runs", "", Some(b"programme=x"));
    assert_eq!(r.status, 401, "a post without a session");
    // The tab's icon, which every page names and browsers ask /favicon.ico for.
    assert!(
        r.body
            .contains("<link rel=\"icon\" href=\"/assets/icon.svg\"")
    );
    for path in ["/assets/icon.svg", "/favicon.ico"] {
        let r = request(http, "GET", path, "", None);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("image/svg+xml"), "{path}");
        assert!(r.body.starts_with("<svg"), "{path}");
    }

    // A bad token is refused with the field named; a good one gets a strict, HttpOnly cookie.
    let r = request(http, "POST", "/signin", "", Some(b"token=sl_nonsense"));
    assert_eq!(r.status, 401);
    assert_eq!(r.error_field().as_deref(), Some("token"));
    let r = request(
        http,
        "POST",
        "/signin",
        "",
        Some(format!("token={}", f.tokens.finance_1).as_bytes()),
    );
    assert_eq!(r.status, 303);
    let cookie = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("suanli_session="))
        .map(|(_, v)| v.clone())
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(&f.tokens.finance_1),
        "the cookie is not the token"
    );

    // Finance 1 creates; CSRF is required; finance 1 cannot approve its own run (four eyes).
    let f1 = Browser::sign_in(http, &f.tokens.finance_1);
    let page = f1.get("/finance");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"create-run\""));
    let no_csrf = f1.post_raw(
        "/finance/runs",
        b"programme=hz-municipal-2025&period=2025-03",
    );
    assert_eq!(no_csrf.status, 403, "a form without the CSRF token");
    let wrong_csrf = f1.post_raw(
        "/finance/runs",
        b"csrf=0000&programme=hz-municipal-2025&period=2025-03",
    );
    assert_eq!(wrong_csrf.status, 403, "a form with another CSRF token");
    let created = f1.post(
        "/finance/runs",
        "programme=hz-municipal-2025&period=2025-03",
    );
    assert_eq!(created.status, 303, "{}", created.body);
    let run = f1.get("/finance/runs/1");
    assert!(run.body.contains("data-status=\"open\""));
    assert!(
        run.body.contains("¥150,000.00"),
        "preview lines before approval"
    );
    let own = f1.post("/finance/runs/1/approve", "");
    assert_eq!(own.status, 403, "four eyes: {}", own.body);

    // Before posting, the enterprise has nothing paid.
    let ent_a = Browser::sign_in(http, &f.tokens.ent_a);
    let before = ent_a.get("/enterprise");
    assert_eq!(before.status, 200);
    assert!(
        before.body.contains("id=\"received-total\">¥0.00<"),
        "{}",
        before.body
    );

    // Finance 2 approves and posts; the enterprise sees it paid, with thousands separators.
    let f2 = Browser::sign_in(http, &f.tokens.finance_2);
    assert_eq!(f2.post("/finance/runs/1/approve", "").status, 303);
    assert_eq!(f2.post_confirmed("/finance/runs/1/post", "").status, 303);
    assert!(
        f2.get("/finance/runs/1")
            .body
            .contains("data-status=\"posted\"")
    );
    let after = ent_a.get("/enterprise");
    assert!(
        after.body.contains("id=\"received-total\">¥150,000.00<"),
        "{}",
        after.body
    );
    assert!(after.body.contains("¥8,000,000.00"), "the cap");
    assert!(
        after.body.contains("¥7,850,000.00"),
        "remaining = cap − paid"
    );

    // A beneficiary sees only itself; a provider no finance or audit page or action.
    assert_eq!(ent_a.get("/enterprise?beneficiary=ent-b").status, 403);
    assert_eq!(
        ent_a
            .get("/enterprise/statement.csv?beneficiary=ent-b")
            .status,
        403
    );
    assert_eq!(ent_a.get("/finance").status, 403);
    let dc_a = Browser::sign_in(http, &f.tokens.dc_a);
    for path in ["/finance", "/finance/runs/1", "/audit", "/enterprise"] {
        let r = dc_a.get(path);
        assert_eq!(r.status, 403, "provider on {path}");
        assert!(r.body.contains("HTTP 403"), "a readable page");
    }
    assert_eq!(
        dc_a.post(
            "/finance/runs",
            "programme=hz-municipal-2025&period=2025-04"
        )
        .status,
        403
    );
    assert_eq!(dc_a.get("/provider?provider=dc-b").status, 403);

    // The provider view: payables, daily outcomes and rejects by reason with examples.
    let provider = dc_a.get("/provider");
    assert_eq!(provider.status, 200);
    assert!(
        provider.body.contains("¥450,000.00"),
        "owed by hz-municipal"
    );
    assert!(provider.body.contains("unknown_sku") && provider.body.contains("bad-1"));
    assert!(provider.body.contains("sku_not_of_provider"));
    let statement = dc_a.get("/provider/statement.csv");
    assert_eq!(statement.status, 200);
    assert!(
        statement
            .header("content-type")
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        statement
            .body
            .starts_with("programme,period,beneficiary,provider,")
    );
    assert!(statement.body.contains(
        "hz-municipal-2025,2025-03,ent-a,dc-a,compute,domestic,,1000000.00,0.15,150000.00,,1,"
    ));

    // The enterprise statement, and the language switch (kept in a cookie).
    let csv = ent_a.get("/enterprise/statement.csv?year=2025");
    assert_eq!(csv.body.lines().count(), 2, "{}", csv.body);
    let en = ent_a.get("/enterprise?lang=en");
    assert!(en.body.contains("lang=\"en\"") && en.body.contains("Enterprise balance"));
    assert_eq!(en.set_cookie("suanli_lang").as_deref(), Some("en"));
    let again = request(
        http,
        "GET",
        "/enterprise",
        &format!("{}; suanli_lang=en", ent_a.cookies),
        None,
    );
    assert!(again.body.contains("Settled this year"));

    // The auditor: a balanced trial balance, and re-derive matches byte for byte.
    let auditor = Browser::sign_in(http, &f.tokens.auditor);
    let audit = auditor.get("/audit");
    assert!(
        audit.body.contains("data-balanced=\"true\""),
        "{}",
        audit.body
    );
    assert!(audit.body.contains("payable:hz-municipal-2025:dc-a"));
    let filtered = auditor.get("/audit?run=1&account=expense");
    assert!(filtered.body.contains("run:1"));
    assert!(
        filtered
            .body
            .contains("href=\"?run=1&amp;account=expense&lang=en\""),
        "the language switch keeps the filters"
    );
    let other = auditor.get("/enterprise?beneficiary=ent-b&year=2025");
    assert_eq!(other.status, 200, "an auditor reads any enterprise");
    assert!(other.body.contains("¥200,000.00"));
    let rederived = auditor.post("/audit/runs/1/rederive", "");
    assert_eq!(rederived.status, 200, "{}", rederived.body);
    assert!(rederived.body.contains("data-matches=\"true\""));
    assert_eq!(auditor.post("/finance/runs/1/cancel", "").status, 403);

    // A revoked token ends its session and cannot sign in again.
    f.server.ok(
        "",
        &[
            "token",
            "revoke",
            "--token",
            &f.tokens.ent_a,
            "--database-url",
            &f.server.db.url,
        ],
    );
    let r = ent_a.get("/enterprise");
    assert_eq!(r.status, 303, "revoked: back to sign-in");
    let r = request(
        http,
        "POST",
        "/signin",
        "",
        Some(format!("token={}", f.tokens.ent_a).as_bytes()),
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("revoked"), "{}", r.body);

    // Sign-out ends the session.
    let out = f2.post("/signout", "");
    assert_eq!(out.status, 303);
    assert_eq!(f2.get("/finance").status, 303);
}

/// (name, who posts, path, fields after the CSRF token, expected status, field named).
type Case<'a> = (&'a str, &'a Browser, &'a str, Vec<u8>, u16, &'a str);

// Adversarial console forms: each bad input gets its HTTP status and the offending field named,
// and the ledger and the runs are unchanged after all of them.
#[test]
fn adversarial_console_forms_change_nothing() {
    let f = start();
    let (f1, _f2) = settle_march(&f);
    let before = state(&f);
    let long = "x".repeat(201);
    let provider = Browser::sign_in(&f.http, &f.tokens.dc_a);
    let auditor = Browser::sign_in(&f.http, &f.tokens.auditor);
    let revoked = Browser::sign_in(&f.http, &f.tokens.finance_2);
    f.server.ok(
        "",
        &[
            "token",
            "revoke",
            "--token",
            &f.tokens.finance_2,
            "--database-url",
            &f.server.db.url,
        ],
    );
    let pay = |amount: &str| format!("payee=dc-a&amount={amount}&reference=BANK-1");
    let cases: Vec<Case> = vec![
        (
            "amount not a number",
            &f1,
            "/finance/payments",
            pay("abc").into_bytes(),
            400,
            "amount",
        ),
        (
            "amount with exponent",
            &f1,
            "/finance/payments",
            pay("1e5").into_bytes(),
            400,
            "amount",
        ),
        (
            "negative amount",
            &f1,
            "/finance/payments",
            pay("-5.00").into_bytes(),
            400,
            "amount",
        ),
        (
            "zero amount",
            &f1,
            "/finance/payments",
            pay("0").into_bytes(),
            400,
            "amount",
        ),
        (
            "too many decimals",
            &f1,
            "/finance/payments",
            pay("1.005").into_bytes(),
            400,
            "amount",
        ),
        (
            "huge amount",
            &f1,
            "/finance/payments",
            pay("99999999999999999999999").into_bytes(),
            400,
            "amount",
        ),
        (
            "more than owed",
            &f1,
            "/finance/payments",
            pay("450000.01").into_bytes(),
            409,
            "amount",
        ),
        (
            "thousands separator",
            &f1,
            "/finance/payments",
            pay("1%2C000").into_bytes(),
            400,
            "amount",
        ),
        (
            "missing amount",
            &f1,
            "/finance/payments",
            b"payee=dc-a&reference=R".to_vec(),
            400,
            "amount",
        ),
        (
            "missing payee",
            &f1,
            "/finance/payments",
            b"amount=1.00&reference=R".to_vec(),
            400,
            "payee",
        ),
        (
            "missing reference",
            &f1,
            "/finance/payments",
            b"payee=dc-a&amount=1.00".to_vec(),
            400,
            "reference",
        ),
        (
            "unknown payee",
            &f1,
            "/finance/payments",
            b"payee=nobody&amount=1.00&reference=R".to_vec(),
            409,
            "payee",
        ),
        (
            "unknown programme",
            &f1,
            "/finance/payments",
            b"payee=dc-a&programme=nope&amount=1.00&reference=R".to_vec(),
            409,
            "programme",
        ),
        (
            "oversized reference",
            &f1,
            "/finance/payments",
            format!("payee=dc-a&amount=1.00&reference={long}").into_bytes(),
            400,
            "reference",
        ),
        (
            "invalid UTF-8 payee",
            &f1,
            "/finance/payments",
            b"payee=%FF%FE&amount=1.00&reference=R".to_vec(),
            400,
            "payee",
        ),
        (
            "raw invalid UTF-8",
            &f1,
            "/finance/payments",
            b"payee=\xff\xfe&amount=1.00&reference=R".to_vec(),
            400,
            "payee",
        ),
        (
            "repeated field",
            &f1,
            "/finance/payments",
            b"payee=dc-a&payee=dc-b&amount=1.00&reference=R".to_vec(),
            400,
            "payee",
        ),
        (
            "bad escape",
            &f1,
            "/finance/payments",
            b"payee=dc-a&amount=1%2&reference=R".to_vec(),
            400,
            "amount",
        ),
        (
            "period not a month",
            &f1,
            "/finance/runs",
            b"programme=hz-municipal-2025&period=2025-13".to_vec(),
            400,
            "period",
        ),
        (
            "period wrong type",
            &f1,
            "/finance/runs",
            b"programme=hz-municipal-2025&period=march".to_vec(),
            400,
            "period",
        ),
        (
            "period of another year",
            &f1,
            "/finance/runs",
            b"programme=hz-municipal-2025&period=2024-12".to_vec(),
            400,
            "period",
        ),
        (
            "unknown programme run",
            &f1,
            "/finance/runs",
            b"programme=nope-2025&period=2025-04".to_vec(),
            404,
            "programme",
        ),
        (
            "missing programme",
            &f1,
            "/finance/runs",
            b"period=2025-04".to_vec(),
            400,
            "programme",
        ),
        (
            "period already posted",
            &f1,
            "/finance/runs",
            b"programme=hz-municipal-2025&period=2025-02".to_vec(),
            409,
            "run",
        ),
        (
            "run id not a number",
            &f1,
            "/finance/runs/abc/approve",
            Vec::new(),
            400,
            "run",
        ),
        (
            "negative run id",
            &f1,
            "/finance/runs/-1/post",
            Vec::new(),
            400,
            "run",
        ),
        (
            "unknown run",
            &f1,
            "/finance/runs/999/approve",
            Vec::new(),
            404,
            "run",
        ),
        (
            "cancel a posted run",
            &f1,
            "/finance/runs/1/cancel",
            Vec::new(),
            409,
            "run",
        ),
        (
            "re-derive unknown run",
            &auditor,
            "/audit/runs/999/rederive",
            Vec::new(),
            404,
            "run",
        ),
        (
            "provider records a payment",
            &provider,
            "/finance/payments",
            pay("1.00").into_bytes(),
            403,
            "role",
        ),
        (
            "auditor creates a run",
            &auditor,
            "/finance/runs",
            b"programme=hz-municipal-2025&period=2025-04".to_vec(),
            403,
            "role",
        ),
        (
            "auditor records a payment",
            &auditor,
            "/finance/payments",
            pay("1.00").into_bytes(),
            403,
            "role",
        ),
        (
            "revoked token",
            &revoked,
            "/finance/payments",
            pay("1.00").into_bytes(),
            401,
            "session",
        ),
    ];
    for (name, who, path, fields, status, field) in &cases {
        let mut body = format!("csrf={}&", who.csrf).into_bytes();
        body.extend_from_slice(fields);
        let r = who.post_raw(path, &body);
        assert_eq!(r.status, *status, "{name}: {}", r.body);
        assert_eq!(
            r.error_field().as_deref(),
            Some(*field),
            "{name}: {}",
            r.body
        );
    }
    // A body above the limit is refused as a whole.
    let huge = vec![b'a'; suanli_server::console::FORM_BYTES_MAX + 10];
    let r = f1.post_raw("/finance/payments", &huge);
    assert_eq!(r.status, 413);
    assert_eq!(r.error_field().as_deref(), Some("form"));
    // A CSRF token of another session is refused.
    let r = provider.post_raw("/signout", format!("csrf={}", f1.csrf).as_bytes());
    assert_eq!(r.status, 403);
    assert_eq!(
        state(&f),
        before,
        "no refused form changed the ledger or the runs"
    );

    // And a good payment does change it, once: the same reference again is a duplicate.
    let ok = f1.post_confirmed("/finance/payments", &pay("1000.50"));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("¥1,000.50") && ok.body.contains("¥448,999.50"));
    let after = state(&f);
    assert_ne!(after, before);
    let again = f1.post_confirmed("/finance/payments", &pay("1000.50"));
    assert_eq!(again.status, 200);
    assert_eq!(state(&f), after, "a repeated payment books nothing");
    let other = f1.post_confirmed("/finance/payments", &pay("2.00"));
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(other.error_field().as_deref(), Some("reference"));
}

// Proves that while a restarted server prepares its balance figures, a page says so within a
// second (503, Retry-After, a refresh, in the page's language) instead of waiting for them, a
// balance look-up over gRPC waits and answers, and the same page shows the figures once ready.
#[test]
fn pages_say_the_figures_are_being_prepared_after_a_start() {
    let mut f = start();
    let url = f.server.db.url.clone();
    let _ = f.server.process.child.kill();
    let _ = f.server.process.child.wait();
    // Debug builds hold the figures prepared at start this long (the test's stand-in for a
    // database of millions of records).
    let held = std::time::Duration::from_secs(15);
    let restarted = std::time::Instant::now();
    f.server.process = support::Server::start_with_env(
        &url,
        &["--http-addr", &f.http, "--token-recheck-secs", "0"],
        &[("SUANLI_TEST_HOLD_FIGURES_MS", &held.as_millis().to_string())],
    );
    let finance = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let lookup = {
        let (addr, token) = (f.server.addr().to_owned(), f.tokens.ent_a.clone());
        std::thread::spawn(move || {
            support::bin()
                .args(["balance", "--beneficiary", "ent-a", "--year", "2025"])
                .env("SUANLI_SERVER", addr)
                .env("SUANLI_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let asked = std::time::Instant::now();
    let r = finance.get("/finance");
    assert!(
        restarted.elapsed() < held,
        "the page was asked for while the figures were held"
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "the page answered without waiting for the figures: {:?}",
        asked.elapsed()
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(
        r.body
            .contains(r#"<meta http-equiv="refresh" content="5">"#),
        "{}",
        r.body
    );
    assert!(r.body.contains("id=\"preparing\""), "{}", r.body);
    assert!(r.body.contains("正在准备余额数字"), "{}", r.body);
    let en = finance.get("/finance?lang=en");
    assert_eq!(en.status, 503);
    assert!(
        en.body.contains("Preparing the balance figures"),
        "{}",
        en.body
    );
    assert!(!en.body.contains("正在准备"), "{}", en.body);

    let output = lookup.join().unwrap();
    assert!(
        output.status.success(),
        "the look-up waits for the figures and answers: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ent-a"));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ready = loop {
        let r = finance.get("/finance");
        if r.status != 503 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "figures within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(restarted.elapsed() >= held);
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(ready.body.contains("class=\"card pool\""), "{}", ready.body);
    assert!(!ready.body.contains("id=\"preparing\""));
}
