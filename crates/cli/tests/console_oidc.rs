//! Console single sign-on (OpenID Connect) end to end, on both backends: the test starts a
//! real OpenID Provider (panva's oidc-provider, `e2e/oidc-provider.mjs`, on `localhost`, another
//! site than the console's `127.0.0.1`), the real `suanli serve` configured for it, and drives
//! headless Chromium through `e2e/console-sso.mjs`: console → "Sign in with SSO" → the
//! provider's login and consent pages → back in the console as the mapped person with their
//! role; an account naming no user and one naming a disabled user are refused, counted in
//! `suanli_console_sso_refusals_total` and nobody is created. SQLite maps by `email` from the
//! ID token, PostgreSQL by `preferred_username` from the userinfo answer. The browser tests
//! skip when Chromium, Node or `e2e/node_modules` is missing, unless `SUANLI_REQUIRE_BROWSER=1`
//! (CI), then they fail; the refusals before any provider is reached need no browser.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::browser::{chromium, kept, missing};
use support::cli::{Db, Server, pg_db, sqlite_db};
use support::console::{free_port, request};
use support::{bin, root};

const CLIENT_ID: &str = "suanli-console";
const CLIENT_SECRET: &str = "a client secret of the test";

/// Whether to run; panics when the browser test is required but cannot run.
fn runnable() -> bool {
    match missing() {
        None => true,
        Some(why) => {
            let required = std::env::var("SUANLI_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "browser test required (SUANLI_REQUIRE_BROWSER=1) but {why}"
            );
            eprintln!("skipping the single sign-on test: {why}");
            false
        }
    }
}

/// The OpenID Provider child process, killed on drop.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `e2e/oidc-provider.mjs` with the console's callback as the client's redirect URI and
/// `accounts` (account id → claims); waits for the issuer URL it prints.
fn provider(
    redirect_uri: &str,
    accounts: &serde_json::Value,
    claims_in_id_token: bool,
) -> Provider {
    let mut child = Command::new("node")
        .current_dir(root().join("e2e"))
        .args([
            "oidc-provider.mjs",
            "--host",
            "localhost",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--redirect-uri",
            redirect_uri,
            "--accounts",
            &accounts.to_string(),
            "--claims-in-id-token",
            if claims_in_id_token { "true" } else { "false" },
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads on until the provider ends: a closed pipe would fail its later writes.
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = tx.send(first);
        lines.for_each(drop);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the provider prints its issuer within 60 s");
    let issuer = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v["issuer"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("the provider's first line names its issuer: {line:?}"));
    Provider { child, issuer }
}

/// Creates a person with `suanli user create`.
fn person(db: &Db, login: &str, name: &str, role: &[&str], email: &str) {
    let o = bin()
        .args(["user", "create", "--login", login, "--name", name, "--role"])
        .args(role)
        .args(["--email", email, "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn users(db: &Db) -> String {
    let o = bin()
        .args(["user", "list", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn metrics(addr: &str) -> String {
    request(addr, "GET", "/metrics", "", None).body
}

/// The whole flow on `db`, the users named by `claim` (`email` or `preferred_username`), which
/// the provider sends in the ID token or only in its userinfo answer.
fn single_sign_on(db: Db, claim: &str, claims_in_id_token: bool) {
    let http = format!("127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let redirect = format!("http://{http}/signin/sso/callback");
    // The finance person's address differs in case from what the provider says.
    person(
        &db,
        "fin-sso",
        "财务单点",
        &["finance"],
        "Finance.SSO@Example.org",
    );
    person(&db, "gone", "已停用", &["auditor"], "gone@example.org");
    let o = bin()
        .args(["user", "disable", "gone", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = users(&db);

    let accounts = serde_json::json!({
        "alice": {
            "email": "finance.sso@example.org", "email_verified": true,
            "preferred_username": "FIN-SSO", "name": "Alice"
        },
        "mallory": {
            "email": "mallory@example.org", "email_verified": true,
            "preferred_username": "mallory"
        },
        "gone-user": {
            "email": "gone@example.org", "email_verified": true,
            "preferred_username": "gone"
        },
    });
    let idp = provider(&redirect, &accounts, claims_in_id_token);
    let server = Server::start_with_env(
        db,
        &["--http-addr", &http, "--metrics-addr", &metrics_addr],
        &[
            ("SUANLI_AUTH_OIDC_ISSUER_URL", idp.issuer.as_str()),
            ("SUANLI_AUTH_OIDC_CLIENT_ID", CLIENT_ID),
            ("SUANLI_AUTH_OIDC_CLIENT_SECRET", CLIENT_SECRET),
            ("SUANLI_AUTH_OIDC_REDIRECT_URL", redirect.as_str()),
            ("SUANLI_AUTH_OIDC_USER_CLAIM", claim),
        ],
    );

    // The sign-in page offers single sign-on in both languages.
    let zh = request(&http, "GET", "/signin?lang=zh", "", None);
    assert!(
        zh.body.contains("id=\"sso-signin\"") && zh.body.contains("使用单点登录（SSO）登录"),
        "{}",
        zh.body
    );
    let en = request(&http, "GET", "/signin?lang=en", "", None);
    assert!(en.body.contains("Sign in with SSO"), "{}", en.body);
    // A callback this browser did not start is refused before the provider is asked.
    let forged = request(
        &http,
        "GET",
        "/signin/sso/callback?state=forged&code=stolen&lang=en",
        "suanli_sso=forged",
        None,
    );
    assert_eq!(forged.status, 400, "{}", forged.body);
    assert_eq!(
        forged.error_field().as_deref(),
        Some("sso"),
        "{}",
        forged.body
    );
    assert!(
        forged.body.contains("not started in this browser"),
        "{}",
        forged.body
    );

    let out = kept_sso(claim);
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("node")
        .current_dir(root().join("e2e"))
        .args([
            "console-sso.mjs",
            "--url",
            &format!("http://{http}"),
            "--out",
        ])
        .arg(&out)
        .env("CHROMIUM", chromium())
        .env("SUANLI_E2E_SSO_ACCOUNT", "alice")
        .env("SUANLI_E2E_SSO_PERSON", "财务单点 (fin-sso)")
        .env("SUANLI_E2E_SSO_HOME", "/finance")
        .env("SUANLI_E2E_SSO_UNKNOWN", "mallory")
        .env("SUANLI_E2E_SSO_DISABLED", "gone-user")
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "e2e/console-sso.mjs failed (its output is above)"
    );

    let text = metrics(&metrics_addr);
    for (reason, n) in [
        ("unknown_user", 1),
        ("disabled", 1),
        ("state", 1),
        ("provider_error", 0),
        ("no_claim", 0),
    ] {
        let line = format!("suanli_console_sso_refusals_total{{reason=\"{reason}\"}} {n}");
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert_eq!(
        users(&server.db),
        before,
        "single sign-on creates and changes no user"
    );
    drop(server);
    drop(idp);
}

// Single sign-on on SQLite, users named by their email (case-insensitive) in the ID token.
#[test]
fn single_sign_on_sqlite_by_email() {
    if runnable() {
        single_sign_on(sqlite_db().unwrap(), "email", true);
    }
}

// Single sign-on on PostgreSQL, users named by their login (`preferred_username`, lower-cased)
// that the provider gives only in its userinfo answer.
#[test]
fn single_sign_on_postgres_by_login() {
    if runnable()
        && let Some(db) = pg_db()
    {
        single_sign_on(db, "preferred_username", false);
    }
}

// Without a browser: single sign-on is 404 where it is not configured, refused over plain
// HTTP on a non-loopback address (like passwords), and a provider that cannot be reached gets
// a 503 page naming it and a `provider_error` count, with no flow cookie set.
#[test]
fn single_sign_on_refusals_before_the_provider() {
    let port = free_port();
    let plain = Server::start_with(
        sqlite_db().unwrap(),
        &["--http-addr", &format!("127.0.0.1:{port}")],
    );
    let off = request(&format!("127.0.0.1:{port}"), "GET", "/signin/sso", "", None);
    assert_eq!(off.status, 404, "{}", off.body);
    assert!(!off.body.contains("id=\"sso-signin\""), "no SSO button");
    drop(plain);

    // Nothing listens on the issuer's port.
    let issuer = format!("http://localhost:{}", free_port());
    for (bind, status, message) in [
        ("0.0.0.0", 403, "single sign-on needs HTTPS"),
        ("127.0.0.1", 503, "the identity provider cannot be reached"),
    ] {
        let port = free_port();
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let redirect = format!("http://127.0.0.1:{port}/signin/sso/callback");
        let server = Server::start_with_env(
            sqlite_db().unwrap(),
            &[
                "--http-addr",
                &format!("{bind}:{port}"),
                "--metrics-addr",
                &metrics_addr,
            ],
            &[
                ("SUANLI_AUTH_OIDC_ISSUER_URL", issuer.as_str()),
                ("SUANLI_AUTH_OIDC_CLIENT_ID", CLIENT_ID),
                ("SUANLI_AUTH_OIDC_CLIENT_SECRET", CLIENT_SECRET),
                ("SUANLI_AUTH_OIDC_REDIRECT_URL", redirect.as_str()),
            ],
        );
        let r = request(
            &format!("127.0.0.1:{port}"),
            "GET",
            "/signin/sso?lang=en",
            "",
            None,
        );
        assert_eq!(r.status, status, "{bind}: {}", r.body);
        assert_eq!(r.error_field().as_deref(), Some("sso"), "{}", r.body);
        assert!(r.body.contains(message), "{message:?} in {}", r.body);
        assert!(r.set_cookie("suanli_sso").is_none(), "no flow was started");
        let counted = u32::from(status == 503);
        let line =
            format!("suanli_console_sso_refusals_total{{reason=\"provider_error\"}} {counted}");
        assert!(metrics(&metrics_addr).contains(&line), "{line}");
        drop(server);
    }
}

/// `<target dir>/console-screenshots/sso-<name>`.
fn kept_sso(name: &str) -> std::path::PathBuf {
    kept(&format!("console-screenshots/sso-{name}"))
}
