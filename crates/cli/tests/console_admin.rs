//! The console over plain HTTP for two things that need care: payments above
//! `ledger.payment_confirm_above_fen` (recorded by one finance person, listed with who recorded
//! them, confirmed by another — never offered to, nor accepted from, the recorder — or
//! withdrawn), and the admin's user pages (list, create with an initial password, disable and
//! enable, change role, reset password, reset the authenticator), each refused for other roles
//! and each refusal named next to its field.

mod support;

use support::console::{Browser, PASSWORD, Response, request, settle_march, start, start_with_env};

/// Percent-encodes a form value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Signs in with a login and password; panics unless the console accepts it.
fn password_browser(http: &str, login: &str, password: &str) -> Browser {
    let r = password_sign_in(http, login, password);
    assert_eq!(r.status, 303, "{login} signs in: {}", r.body);
    let session = r.set_cookie("suanli_session").expect("a session cookie");
    let mut b = Browser {
        addr: http.to_owned(),
        cookies: format!("suanli_session={session}"),
        csrf: String::new(),
    };
    b.csrf = b.get("/account").csrf();
    b
}

fn password_sign_in(http: &str, login: &str, password: &str) -> Response {
    let body = format!("login={}&password={}", enc(login), enc(password));
    request(http, "POST", "/signin?lang=en", "", Some(body.as_bytes()))
}

/// The table row of `marker` (e.g. `data-payment="1"`) in a page.
fn row<'a>(page: &'a Response, marker: &str) -> &'a str {
    let start = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {}", page.body));
    let end = start + page.body[start..].find("</tr>").expect("a row end");
    &page.body[start..end]
}

// A payment above the amount awaits a second person: the page says so and books nothing; the
// finance page lists it with its recorder, offers Confirm to another finance person only, and
// refuses the recorder's confirmation from any of their sessions; another person's
// confirmation books it; auditors see the list without actions; a payment can be withdrawn.
#[test]
fn console_payments_need_a_second_person_above_the_amount() {
    let f = start_with_env(&[("SUANLI_LEDGER_PAYMENT_CONFIRM_ABOVE_FEN", "10000000")]);
    let _ = settle_march(&f);
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let page = f1.get("/finance?lang=en");
    assert!(
        page.body
            .contains("id=\"payment-threshold\" data-fen=\"10000000\""),
        "the form says which payments need a second person: {}",
        page.body
    );
    assert!(!page.body.contains("id=\"awaiting-payments\""), "none yet");

    let recorded = f1.post_confirmed(
        "/finance/payments",
        "payee=dc-a&amount=200000.00&reference=BANK-1",
    );
    assert_eq!(recorded.status, 200, "{}", recorded.body);
    assert!(
        recorded
            .body
            .contains("id=\"payment-result\" data-status=\"awaiting\" data-payment=\"1\""),
        "{}",
        recorded.body
    );
    assert!(
        recorded.body.contains("需另一位财务人员确认"),
        "in the page's language: {}",
        recorded.body
    );
    let auditor = Browser::sign_in(&f.http, &f.tokens.auditor);
    assert!(
        !auditor.get("/audit").body.contains("BANK-1"),
        "no journal yet"
    );
    let dc_a = Browser::sign_in(&f.http, &f.tokens.dc_a);
    assert!(
        !dc_a.get("/provider").body.contains("¥200,000.00"),
        "nothing paid yet"
    );

    // The recorder sees the payment as theirs, without Confirm; their confirmation is refused
    // from the token session and from a password session alike.
    let finance_page = f1.get("/finance");
    let mine = row(&finance_page, "data-payment=\"1\"");
    let recorder = format!(
        "{} ({})",
        f.logins.finance_1.replace("finance", "finance "),
        f.logins.finance_1
    );
    assert!(
        mine.contains(&recorder),
        "the recorder as name (login): {mine}"
    );
    assert!(mine.contains("data-own=\"true\"") && !mine.contains("confirm-payment-1"));
    assert!(mine.contains("withdraw-payment-1"));
    let by_password = password_browser(&f.http, &f.logins.finance_1, PASSWORD);
    for b in [&f1, &by_password] {
        let own = b.post("/finance/payments/1/confirm", "");
        assert_eq!(own.status, 403, "four eyes: {}", own.body);
        assert!(
            own.body.contains("data-code=\"payment_four_eyes\""),
            "{}",
            own.body
        );
    }
    assert!(!auditor.get("/audit").body.contains("BANK-1"));

    // Another finance person is offered Confirm; a form without the CSRF token is refused.
    let f2 = Browser::sign_in(&f.http, &f.tokens.finance_2);
    let theirs = f2.get("/finance");
    assert!(row(&theirs, "data-payment=\"1\"").contains("id=\"confirm-payment-1\""));
    assert_eq!(
        f2.post_raw("/finance/payments/1/confirm", b"").status,
        403,
        "no CSRF token"
    );
    let confirmed = f2.post("/finance/payments/1/confirm", "");
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    assert_eq!(confirmed.header("location"), Some("/finance"));
    assert!(auditor.get("/audit").body.contains("BANK-1"), "booked");
    let provider = dc_a.get("/provider");
    assert!(
        provider.body.contains("¥200,000.00") && provider.body.contains("¥250,000.00"),
        "the payable moved: paid and outstanding"
    );
    assert!(!f2.get("/finance").body.contains("id=\"awaiting-payments\""));

    // Auditors see what awaits, without actions, and may not act; the other finance person
    // may confirm, either may withdraw.
    let second = f2.post_confirmed(
        "/finance/payments",
        "payee=dc-a&amount=100000.01&reference=BANK-2",
    );
    assert!(
        second
            .body
            .contains("data-status=\"awaiting\" data-payment=\"2\""),
        "{}",
        second.body
    );
    let listed = auditor.get("/finance");
    let as_auditor = row(&listed, "data-payment=\"2\"");
    assert!(
        !as_auditor.contains("<form"),
        "no actions for auditors: {as_auditor}"
    );
    assert_eq!(auditor.post("/finance/payments/2/withdraw", "").status, 403);
    assert!(row(&f1.get("/finance"), "data-payment=\"2\"").contains("id=\"confirm-payment-2\""));
    assert_eq!(f2.post("/finance/payments/2/withdraw", "").status, 303);
    assert!(!f1.get("/finance").body.contains("id=\"awaiting-payments\""));
    assert!(
        !auditor.get("/audit").body.contains("BANK-2"),
        "never booked"
    );

    // At the amount: booked at once.
    let small = f1.post_confirmed(
        "/finance/payments",
        "payee=dc-a&amount=100000.00&reference=BANK-3",
    );
    assert!(
        small.body.contains("data-status=\"booked\""),
        "{}",
        small.body
    );
    assert!(dc_a.get("/provider").body.contains("¥150,000.00"));

    // A bad or unknown payment number is named.
    let bad = f2.post("/finance/payments/abc/confirm", "");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_field().as_deref(), Some("payment"));
    let unknown = f2.post("/finance/payments/99/confirm", "");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_field().as_deref(), Some("payment"));
    let withdrawn = f1.post("/finance/payments/2/confirm", "");
    assert_eq!(withdrawn.status, 409, "{}", withdrawn.body);
}

// Only admins reach the user pages. An admin creates a person with an initial password (each
// bad field named next to it, the input kept), who can then sign in; the list shows role,
// status, authenticator and last sign-in; disable, enable, role change, password reset and
// authenticator reset work and are audited; an admin cannot disable or demote themselves.
#[test]
fn console_admin_manages_users() {
    let f = start();
    let http = f.http.as_str();
    let (admin_login, admin_token) = f.server.person(&["--role", "admin"]);
    let admin = Browser::sign_in(http, &admin_token);

    // Roles: not signed in → sign-in; other roles → 403, pages and forms alike.
    let r = request(http, "GET", "/admin/users", "", None);
    assert_eq!(r.status, 303);
    for token in [&f.tokens.finance_1, &f.tokens.auditor, &f.tokens.ent_a] {
        let b = Browser::sign_in(http, token);
        assert_eq!(b.get("/admin/users").status, 403);
        assert_eq!(
            b.get(&format!("/admin/users/{}", f.logins.finance_1))
                .status,
            403
        );
        let create = b.post(
            "/admin/users",
            "login=intruder&name=x&role=admin&password=a+long+password&password_again=a+long+password",
        );
        assert_eq!(create.status, 403, "{}", create.body);
        assert_eq!(
            b.post(&format!("/admin/users/{}/disable", f.logins.auditor), "")
                .status,
            403
        );
    }
    assert!(
        !Browser::sign_in(http, &f.tokens.finance_1)
            .get("/finance")
            .body
            .contains("href=\"/admin/users\""),
        "no link for others"
    );

    // The list.
    let list = admin.get("/admin/users?lang=en");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body.contains("href=\"/admin/users\""),
        "the admin's link"
    );
    let f1_row = row(&list, &format!("data-login=\"{}\"", f.logins.finance_1));
    assert!(
        f1_row.contains("Finance") && f1_row.contains("data-enabled=\"true\""),
        "{f1_row}"
    );
    assert!(f1_row.contains("data-totp=\"false\""), "{f1_row}");
    let filtered = admin.get("/admin/users?role=auditor");
    assert!(
        filtered
            .body
            .contains(&format!("data-login=\"{}\"", f.logins.auditor))
    );
    assert!(
        !filtered
            .body
            .contains(&format!("data-login=\"{}\"", f.logins.finance_1))
    );
    assert_eq!(admin.get("/admin/users?role=boss").status, 400);

    // Create: CSRF, then each bad field named next to it with the input kept.
    let name = enc("出纳一号");
    let good = format!(
        "login=clerk1&name={name}&role=finance&email=clerk%40example.com&password={p}&password_again={p}",
        p = enc("clerk's first password")
    );
    assert_eq!(
        admin.post_raw("/admin/users", good.as_bytes()).status,
        403,
        "no CSRF token"
    );
    let cases = [
        (
            "Bad Login",
            "finance",
            "",
            "a long password",
            "a long password",
            400,
            "login",
        ),
        ("clerk1", "finance", "", "short", "short", 400, "password"),
        (
            "clerk1",
            "finance",
            "",
            "a long password",
            "another long one",
            400,
            "password_again",
        ),
        (
            "clerk1",
            "provider",
            "",
            "a long password",
            "a long password",
            400,
            "subject",
        ),
        (
            "clerk1",
            "auditor",
            "dc-a",
            "a long password",
            "a long password",
            400,
            "subject",
        ),
        (
            "clerk1",
            "boss",
            "",
            "a long password",
            "a long password",
            400,
            "role",
        ),
        (
            "clerk1",
            "finance",
            "",
            "my clerk1 password",
            "my clerk1 password",
            400,
            "password",
        ),
    ];
    for (login, role, subject, password, again, status, field) in cases {
        let r = admin.post(
            "/admin/users",
            &format!(
                "login={}&name={name}&role={role}&subject={subject}&password={}&password_again={}",
                enc(login),
                enc(password),
                enc(again)
            ),
        );
        assert_eq!(r.status, status, "{login} {role}: {}", r.body);
        assert_eq!(r.error_field().as_deref(), Some(field), "{}", r.body);
        // The refusal is named by a code and said in the page's language (Chinese here),
        // without the use case's English detail.
        let error = r
            .body
            .split("id=\"error\"")
            .nth(1)
            .and_then(|rest| rest.split("</p>").next())
            .expect("the error line");
        let said = error.split_once('>').map_or("", |(_, text)| text);
        assert!(
            error.contains("data-code=\"") && !said.is_empty(),
            "a coded refusal: {error}"
        );
        assert!(
            !said.chars().any(|c| c.is_ascii_alphabetic()),
            "{login} {role}: the refusal is in Chinese only: {said}"
        );
        assert!(r.body.contains("value=\"出纳一号\""), "the name is kept");
        assert!(
            !r.body.contains(&format!("value=\"{password}\"")),
            "a password is never shown back"
        );
    }
    let taken = admin.post(
        "/admin/users",
        &format!(
            "login={}&name=x&role=finance&password={p}&password_again={p}",
            f.logins.finance_1,
            p = enc("a long password")
        ),
    );
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert_eq!(taken.error_field().as_deref(), Some("login"));
    let created = admin.post("/admin/users", &good);
    assert_eq!(created.status, 303, "{}", created.body);
    assert_eq!(
        created.header("location"),
        Some("/admin/users/clerk1?done=created")
    );
    let page = admin.get("/admin/users/clerk1?done=created");
    assert!(page.body.contains("data-done=\"created\""), "{}", page.body);
    assert!(page.body.contains("data-role=\"finance\""));
    let never = admin.get("/admin/users");
    assert!(
        row(&never, "data-login=\"clerk1\"").ends_with("<td>—</td>"),
        "no sign-in yet: {}",
        row(&never, "data-login=\"clerk1\"")
    );

    // The new person signs in with the initial password; the list shows when.
    let clerk = password_browser(http, "clerk1", "clerk's first password");
    assert_eq!(clerk.get("/finance").status, 200);
    assert_eq!(clerk.get("/admin/users").status, 403);
    let seen = admin.get("/admin/users");
    assert!(
        !row(&seen, "data-login=\"clerk1\"").ends_with("<td>—</td>"),
        "the last sign-in: {}",
        row(&seen, "data-login=\"clerk1\"")
    );

    // Role: a bad subject is named; a good change applies.
    let bad = admin.post("/admin/users/clerk1/role", "role=beneficiary&subject=");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_field().as_deref(), Some("subject"));
    assert!(bad.body.contains("data-role=\"finance\""), "unchanged");
    let changed = admin.post("/admin/users/clerk1/role", "role=auditor&subject=");
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert!(
        admin
            .get("/admin/users/clerk1")
            .body
            .contains("data-role=\"auditor\"")
    );

    // Disable: the person can no longer sign in; enable: again.
    assert_eq!(admin.post("/admin/users/clerk1/disable", "").status, 303);
    assert!(
        row(&admin.get("/admin/users"), "data-login=\"clerk1\"").contains("data-enabled=\"false\"")
    );
    assert_eq!(
        password_sign_in(http, "clerk1", "clerk's first password").status,
        403,
        "disabled"
    );
    assert_eq!(admin.post("/admin/users/clerk1/enable", "").status, 303);
    password_browser(http, "clerk1", "clerk's first password");

    // Password reset: the policy applies, the repetition must match, then the old one fails.
    let short = admin.post(
        "/admin/users/clerk1/password",
        "password=short&password_again=short",
    );
    assert_eq!(short.status, 400);
    assert_eq!(short.error_field().as_deref(), Some("password"));
    let reset = admin.post(
        "/admin/users/clerk1/password",
        &format!(
            "password={p}&password_again={p}",
            p = enc("a brand new secret")
        ),
    );
    assert_eq!(reset.status, 303, "{}", reset.body);
    assert_eq!(
        password_sign_in(http, "clerk1", "clerk's first password").status,
        401
    );
    let clerk = password_browser(http, "clerk1", "a brand new secret");

    // Authenticator: the person enrols one; the admin removes it (a confirmation is needed).
    let account = clerk.get("/account");
    let at = account.body.find("id=\"totp-secret\">").expect("a secret");
    let rest = &account.body[at + "id=\"totp-secret\">".len()..];
    let secret = &rest[..rest.find('<').unwrap()];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = suanli_app::totp::code_at(secret, now).unwrap();
    assert_eq!(
        clerk.post("/account/totp", &format!("code={code}")).status,
        303
    );
    assert!(
        row(&admin.get("/admin/users"), "data-login=\"clerk1\"").contains("data-totp=\"true\"")
    );
    let unconfirmed = admin.post("/admin/users/clerk1/totp", "");
    assert_eq!(unconfirmed.status, 400);
    assert_eq!(unconfirmed.error_field().as_deref(), Some("confirm"));
    assert_eq!(
        admin.post("/admin/users/clerk1/totp", "confirm=yes").status,
        303
    );
    assert!(
        admin
            .get("/admin/users/clerk1")
            .body
            .contains("data-totp=\"false\"")
    );

    // An admin does not lock themselves out; an unknown user is named.
    let own = admin.post(&format!("/admin/users/{admin_login}/disable"), "");
    assert_eq!(own.status, 409, "{}", own.body);
    assert_eq!(own.error_field().as_deref(), Some("login"));
    let demote = admin.post(
        &format!("/admin/users/{admin_login}/role"),
        "role=auditor&subject=",
    );
    assert_eq!(demote.status, 409);
    assert_eq!(admin.get("/admin/users/nobody").status, 404);
    assert_eq!(admin.post("/admin/users/clerk1/explode", "").status, 404);

    // Every change is in the audit log, with the admin as actor.
    let log = support::bin()
        .args([
            "audit",
            "export",
            "--format",
            "csv",
            "--database-url",
            &f.server.db.url,
            "--out",
        ])
        .arg(f.server.db.dir.join("audit.csv"))
        .output()
        .unwrap();
    assert!(
        log.status.success(),
        "{}",
        String::from_utf8_lossy(&log.stderr)
    );
    let log = std::fs::read_to_string(f.server.db.dir.join("audit.csv")).unwrap();
    for action in [
        "user.create",
        "user.set_role",
        "user.disable",
        "user.enable",
        "user.reset_password",
        "user.totp_reset",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(action) && l.contains(&format!("({admin_login})"))),
            "{action} by the admin in {log}"
        );
    }
}
