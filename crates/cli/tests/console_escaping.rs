//! Hostile names in the console: an enterprise id, a programme id and name and a person's name
//! that are markup (`<script>…`, `"><img onerror=…>`) are shown as text on every page that
//! shows them, never as markup — the run pages, a line's explanation, the settlement statement,
//! the payments awaiting a second person and the admins' user pages included; a hostile login
//! typed into the sign-in form or the create-user form comes back escaped.

mod support;

use support::bin;
use support::cli::{Server, sqlite_db};
use support::console::{Browser, Response, free_port, request};
use support::root;

/// The enterprise's id and name.
const ENTERPRISE: &str = "<script>alert(1)</script>";
/// The municipal programme's id: it closes an attribute and opens a tag.
const PROGRAMME: &str = "p\"><img src=x onerror=alert(2)>";
/// The national programme's name.
const PROGRAMME_NAME: &str = "<b onmouseover=alert(3)>国家智能券</b>";
/// The finance person's name, shown in the header of every page and on runs.
const PERSON: &str = "<iframe src=javascript:alert(4)>";
/// Raw markup that must never reach a page.
const RAW: [&str; 4] = [
    "<script>alert(1)",
    "<img src=x",
    "<b onmouseover",
    "<iframe",
];

/// `text` as the templates escape it (askama: `& < > " '` as numeric references).
fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Percent-encodes a form or query value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Creates a person with `name` and `role_args`; returns a token of theirs.
fn person(url: &str, login: &str, name: &str, role_args: &[&str]) -> String {
    let o = bin()
        .args([
            "user",
            "create",
            "--database-url",
            url,
            "--login",
            login,
            "--name",
            name,
        ])
        .args(role_args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = support::token_create(url, &["--user", login]);
    out.split_whitespace()
        .find(|w| w.starts_with("sl_"))
        .expect("a token is printed")
        .to_owned()
}

/// The page holds none of the raw markup and, for each of `shown`, its escaped text.
fn check(what: &str, r: &Response, shown: &[&str]) {
    for raw in RAW {
        assert!(
            !r.body.contains(raw),
            "{what}: raw {raw:?} reached the page:\n{}",
            r.body
        );
    }
    for text in shown {
        assert!(
            r.body.contains(&escaped(text)),
            "{what}: {text:?} is not shown escaped:\n{}",
            r.body
        );
    }
}

// Every page that shows a hostile enterprise, programme or person shows it as text.
#[test]
fn hostile_names_are_escaped_on_every_page() {
    let http = format!("127.0.0.1:{}", free_port());
    // Payments above 0.50 await a second person: the finance page lists them.
    let server = Server::start_with_env(
        sqlite_db().expect("a SQLite database"),
        &["--http-addr", &http, "--token-recheck-secs", "0"],
        &[("SUANLI_LEDGER_PAYMENT_CONFIRM_ABOVE_FEN", "50")],
    );
    let url = server.db.url.clone();
    let admin = server.token(&["--role", "admin"]);
    let finance_1 = person(&url, "finance-x", PERSON, &["--role", "finance"]);
    let finance_2 = server.token(&["--role", "finance"]);
    let auditor = server.token(&["--role", "auditor"]);
    let dc_a = server.token(&["--role", "provider", "--provider", "dc-a"]);
    let dc_b = server.token(&["--role", "provider", "--provider", "dc-b"]);

    // The worked example with hostile ids and names (TOML needs the quote escaped).
    let registry = std::fs::read_to_string(root().join("examples/worked/registry.toml"))
        .unwrap()
        .replace("\"hz-municipal-2025\"", &format!("{PROGRAMME:?}"))
        .replace("\"ent-a\"", &format!("{ENTERPRISE:?}"))
        .replace("\"国家智能券 2025\"", &format!("{PROGRAMME_NAME:?}"));
    let file = server.file("registry.toml", &registry);
    server.ok(&admin, &["registry", "import", "--file", &file]);
    let enterprise = person(
        &url,
        "ent-x",
        "ent x",
        &["--role", "beneficiary", "--beneficiary", ENTERPRISE],
    );
    let usage = std::fs::read_to_string(root().join("examples/worked/usage.csv")).unwrap();
    let header = usage.lines().next().unwrap();
    for (provider, token) in [("dc-a", &dc_a), ("dc-b", &dc_b)] {
        let mut csv = format!("{header}\n");
        for l in usage
            .lines()
            .filter(|l| l.starts_with(&format!("{provider},")))
        {
            csv.push_str(&l.replace(",ent-a,", &format!(",{ENTERPRISE},")));
            csv.push('\n');
        }
        if provider == "dc-a" {
            // A reject that names the hostile enterprise in its example.
            csv.push_str(&format!(
                "dc-a,bad-1,{ENTERPRISE},no-such-sku,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n"
            ));
        }
        let file = server.file(&format!("{provider}.csv"), &csv);
        let o = server.run(token, &["usage", "import", "--file", &file]);
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(3),
            "{provider} import: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // A run of the hostile programme, created by the hostile person, approved and posted.
    let f1 = Browser::sign_in(&http, &finance_1);
    let created = f1.post(
        "/finance/runs",
        &format!("programme={}&period=2025-03", enc(PROGRAMME)),
    );
    assert_eq!(created.status, 303, "{}", created.body);
    let f2 = Browser::sign_in(&http, &finance_2);
    assert_eq!(f2.post("/finance/runs/1/approve", "").status, 303);
    check(
        "post confirmation",
        &f2.post("/finance/runs/1/post", ""),
        &[PROGRAMME],
    );
    let posted = f2.post_confirmed("/finance/runs/1/post", "");
    assert!(
        [200, 303].contains(&posted.status),
        "posting: {}",
        posted.body
    );

    let ent = enc(ENTERPRISE);
    check(
        "finance page",
        &f1.get("/finance?year=2025"),
        &[PROGRAMME, PROGRAMME_NAME, PERSON],
    );
    check(
        "run page",
        &f1.get("/finance/runs/1"),
        &[PROGRAMME, ENTERPRISE, PERSON],
    );
    check("account page", &f1.get("/account"), &[PERSON]);
    check(
        "enterprise picker",
        &f1.get("/enterprise"),
        &[ENTERPRISE, PERSON],
    );
    check(
        "enterprise page",
        &f1.get(&format!("/enterprise?beneficiary={ent}&year=2025")),
        &[ENTERPRISE, PROGRAMME],
    );
    check(
        "enterprise page, English",
        &f1.get(&format!("/enterprise?beneficiary={ent}&year=2025&lang=en")),
        &[ENTERPRISE, PROGRAMME],
    );
    let own = Browser::sign_in(&http, &enterprise);
    check(
        "enterprise's own page",
        &own.get("/enterprise?year=2025"),
        &[ENTERPRISE],
    );
    let ent_b = server.token(&["--role", "beneficiary", "--beneficiary", "ent-b"]);
    let forbidden =
        Browser::sign_in(&http, &ent_b).get(&format!("/enterprise?beneficiary={ent}&lang=en"));
    assert_eq!(forbidden.status, 403);
    check(
        "an error page naming the enterprise",
        &forbidden,
        &[ENTERPRISE],
    );
    check(
        "provider page",
        &f1.get("/provider?provider=dc-a"),
        &[PROGRAMME],
    );
    let audit = Browser::sign_in(&http, &auditor);
    check("audit page", &audit.get("/audit"), &[PROGRAMME]);
    check(
        "audit page filtered",
        &audit.get(&format!(
            "/audit?account={}",
            enc(&format!("payable:{PROGRAMME}"))
        )),
        &[PROGRAMME],
    );
    check(
        "re-derived run",
        &audit.post("/audit/runs/1/rederive", ""),
        &[PROGRAMME, ENTERPRISE],
    );
    check(
        "payment confirmation",
        &f1.post(
            "/finance/payments",
            &format!(
                "payee=dc-a&programme={}&amount=1.00&reference=R-1",
                enc(PROGRAMME)
            ),
        ),
        &[PROGRAMME, PERSON],
    );
    check(
        "void confirmation",
        &Browser::sign_in(&http, &dc_a).post("/provider/void", "record_id=r1&reason=x"),
        &[ENTERPRISE],
    );
    let payment = f1.post_confirmed(
        "/finance/payments",
        &format!(
            "payee=dc-a&programme={}&amount=1.00&reference=R-1",
            enc(PROGRAMME)
        ),
    );
    check("payment", &payment, &[PERSON]);
    assert!(
        payment.body.contains("data-status=\"awaiting\""),
        "the payment awaits a second person: {}",
        payment.body
    );
    check(
        "payments awaiting, their recorder",
        &f1.get("/finance"),
        &[PROGRAMME, PERSON],
    );
    let awaiting = f2.get("/finance?lang=en");
    assert!(awaiting.body.contains("id=\"confirm-payment-1\""));
    check(
        "payments awaiting, another finance person",
        &awaiting,
        &[PROGRAMME, PERSON],
    );

    // A line's explanation and the run's statement.
    check(
        "explanation",
        &f1.get(&format!("/finance/runs/1/explain?beneficiary={ent}")),
        &[PROGRAMME, ENTERPRISE, PERSON],
    );
    check(
        "explanation, English",
        &audit.get(&format!(
            "/finance/runs/1/explain?beneficiary={ent}&lang=en"
        )),
        &[PROGRAMME, ENTERPRISE],
    );
    check(
        "the enterprise's own explanation",
        &own.get("/enterprise/runs/1/explain"),
        &[PROGRAMME, ENTERPRISE],
    );
    check(
        "statement",
        &audit.get("/finance/runs/1/statement"),
        &[PROGRAMME, ENTERPRISE, PERSON],
    );

    // The admins' user pages: a hostile person's name, a beneficiary user whose subject is the
    // hostile enterprise, and a refused create form that keeps a hostile name and login.
    let admin_browser = Browser::sign_in(&http, &admin);
    for lang in ["zh", "en"] {
        check(
            "users list",
            &admin_browser.get(&format!("/admin/users?lang={lang}")),
            &[PERSON, ENTERPRISE],
        );
        check(
            "a hostile person's user page",
            &admin_browser.get(&format!("/admin/users/finance-x?lang={lang}")),
            &[PERSON],
        );
        check(
            "a user page showing a hostile subject",
            &admin_browser.get(&format!("/admin/users/ent-x?lang={lang}")),
            &[ENTERPRISE],
        );
    }
    check(
        "users list searched",
        &admin_browser.get(&format!("/admin/users?q={}", enc(PERSON))),
        &[PERSON],
    );
    let hostile_login = "\"><script>alert(6)</script>";
    let refused = admin_browser.post(
        "/admin/users",
        &format!(
            "login={}&name={}&role=finance&password=x&password_again=x",
            enc(hostile_login),
            enc(PERSON)
        ),
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        !refused.body.contains("<script>alert(6)"),
        "{}",
        refused.body
    );
    check("a refused create-user form", &refused, &[PERSON]);
    assert!(
        refused
            .body
            .contains(&format!("value=\"{}\"", escaped(hostile_login))),
        "the login is kept, escaped: {}",
        refused.body
    );

    // A hostile login typed into the sign-in form comes back as text in the kept field.
    let login = "\"><script>alert(5)</script>";
    let r = request(
        &http,
        "POST",
        "/signin",
        "",
        Some(format!("login={}&password=wrong-password-1", enc(login)).as_bytes()),
    );
    assert!(
        [400, 401].contains(&r.status),
        "a hostile login is refused: {}",
        r.body
    );
    assert!(!r.body.contains("<script>alert(5)"), "{}", r.body);
    assert!(
        r.body.contains(&format!("value=\"{}\"", escaped(login))),
        "the login is kept, escaped: {}",
        r.body
    );
}
