//! Console sign-in with a login and password on both backends, through the real binary: a
//! wrong password and an unknown login get one message, five failures lock a login out (even
//! its right password), a disabled user's session ends within the recheck time and it cannot
//! sign in, failures are counted in the metrics, and plain HTTP on a non-loopback address
//! refuses passwords unless a TLS-terminating proxy is declared (then cookies are Secure);
//! authenticators (TOTP) where `auth.require_totp_for` asks for them, and a person's sessions.

mod support;

use std::io::Write;
use std::process::Stdio;

use support::bin;
use support::cli::{Db, Server, pg_db, sqlite_db};
use support::console::{Response, free_port, request, request_on};

const PASSWORD: &str = "correct horse battery staple";

fn user(db: &Db, login: &str, name: &str, password: Option<&str>) {
    let mut c = bin()
        .args([
            "user",
            "create",
            "--login",
            login,
            "--name",
            name,
            "--role",
            "finance",
            "--database-url",
            &db.url,
        ])
        .args(password.map(|_| "--password-stdin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", password.unwrap_or_default()).as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn sign_in(http: &str, login: &str, password: &str) -> Response {
    let body = format!("login={login}&password={}", password.replace(' ', "+"));
    request(http, "POST", "/signin?lang=en", "", Some(body.as_bytes()))
}

fn refused(r: &Response, status: u16, field: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.error_field().as_deref(), Some(field), "{}", r.body);
    assert!(r.body.contains(message), "{message:?} in {}", r.body);
}

fn passwords(db: Db) {
    let http = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let s = Server::start_with(
        db,
        &[
            "--http-addr",
            &http,
            "--metrics-addr",
            &metrics,
            "--token-recheck-secs",
            "1",
        ],
    );
    user(&s.db, "finance1", "财务一号", Some(PASSWORD));
    user(&s.db, "finance2", "财务二号", Some(PASSWORD));
    user(&s.db, "nopass", "无密码", None);

    // Wrong password, unknown login and a user without a password: one answer.
    refused(
        &sign_in(&http, "finance1", "not the password"),
        401,
        "password",
        "wrong login or password",
    );
    refused(
        &sign_in(&http, "nobody", PASSWORD),
        401,
        "password",
        "wrong login or password",
    );
    refused(
        &sign_in(&http, "nopass", PASSWORD),
        401,
        "password",
        "wrong login or password",
    );
    let r = sign_in(&http, "finance1", "not the password");
    assert!(
        r.body.contains("value=\"finance1\""),
        "the login is kept: {}",
        r.body
    );

    // The right password: a session of the person, named on the page.
    let r = sign_in(&http, "FINANCE1", PASSWORD);
    assert_eq!(r.status, 303, "{}", r.body);
    let session = r.set_cookie("suanli_session").expect("a session cookie");
    let set = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("suanli_session="))
        .unwrap();
    assert!(
        set.1.contains("HttpOnly")
            && set.1.contains("SameSite=Strict")
            && !set.1.contains("Secure"),
        "{set:?}"
    );
    let cookies = format!("suanli_session={session}");
    let page = request(&http, "GET", "/audit", &cookies, None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("财务一号 (finance1)"), "{}", page.body);

    // Five failures lock finance2 out, even with the right password; others are not locked.
    for _ in 0..5 {
        refused(
            &sign_in(&http, "finance2", "guess guess guess"),
            401,
            "password",
            "wrong login or password",
        );
    }
    refused(
        &sign_in(&http, "finance2", PASSWORD),
        429,
        "login",
        "too many failed sign-ins",
    );
    assert_eq!(sign_in(&http, "finance1", PASSWORD).status, 303);

    // Disabling ends the session within the recheck time and refuses the next sign-in.
    let o = bin()
        .args(["user", "disable", "finance1", "--database-url", &s.db.url])
        .output()
        .unwrap();
    assert!(o.status.success());
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let page = request(&http, "GET", "/audit", &cookies, None);
    assert_eq!(page.status, 303, "the session ended: {}", page.body);
    refused(
        &sign_in(&http, "finance1", PASSWORD),
        403,
        "login",
        "this user is disabled",
    );

    let text = request(&metrics, "GET", "/metrics", "", None).body;
    for (reason, n) in [
        ("wrong_login_or_password", 9),
        ("locked_out", 1),
        ("disabled", 1),
    ] {
        let line = format!("suanli_console_signin_failures_total{{reason=\"{reason}\"}} {n}");
        assert!(text.contains(&line), "{line} in {text}");
    }
}

#[test]
fn passwords_sqlite() {
    passwords(sqlite_db().unwrap());
}

#[test]
fn passwords_postgres() {
    if let Some(db) = pg_db() {
        passwords(db);
    }
}

// Plain HTTP on a non-loopback address refuses passwords; declaring a TLS-terminating proxy
// allows them and makes the session cookie Secure.
#[test]
fn passwords_need_tls_off_loopback() {
    for trust in [false, true] {
        let port = free_port();
        let mut args = vec!["--http-addr".to_owned(), format!("0.0.0.0:{port}")];
        if trust {
            args.push("--trust-proxy-tls".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = Server::start_with(sqlite_db().unwrap(), &args);
        user(&s.db, "finance1", "财务一号", Some(PASSWORD));
        let http = format!("127.0.0.1:{port}");
        let r = sign_in(&http, "finance1", PASSWORD);
        if trust {
            assert_eq!(r.status, 303, "{}", r.body);
            let set = r
                .headers
                .iter()
                .find(|(k, v)| {
                    k.eq_ignore_ascii_case("set-cookie") && v.starts_with("suanli_session=")
                })
                .unwrap();
            assert!(set.1.contains("; Secure"), "{set:?}");
        } else {
            refused(&r, 403, "password", "password sign-in needs HTTPS");
        }
    }
}

/// The text of a page's element `<code id="totp-secret">`.
fn secret_of(page: &Response) -> String {
    let at = page
        .body
        .find("id=\"totp-secret\">")
        .unwrap_or_else(|| panic!("an enrolment secret: {}", page.body));
    let rest = &page.body[at + "id=\"totp-secret\">".len()..];
    rest[..rest.find('<').unwrap()].to_owned()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn post(http: &str, cookies: &str, path: &str, body: &str) -> Response {
    request(http, "POST", path, cookies, Some(body.as_bytes()))
}

// With `auth.require_totp_for = "finance"`, a finance person who has no authenticator is kept
// on the account page until they enrol one (QR code and key shown, confirmed by a code);
// afterwards sign-in needs a fresh code (a missing, wrong or reused one is refused), the
// person's sessions are listed and one can be ended, and `suanli user reset-totp` removes it.
fn totp_enrolment(db: Db) {
    let http = format!("127.0.0.1:{}", free_port());
    let _server = support::Server::start_with_env(
        &db.url,
        &["--http-addr", &http, "--token-recheck-secs", "1"],
        &[("SUANLI_AUTH_REQUIRE_TOTP_FOR", "finance,admin")],
    );
    user(&db, "finance1", "财务一号", Some(PASSWORD));

    let r = sign_in(&http, "finance1", PASSWORD);
    assert_eq!(r.status, 303, "{}", r.body);
    let cookies = format!("suanli_session={}", r.set_cookie("suanli_session").unwrap());
    let page = request(&http, "GET", "/audit", &cookies, None);
    assert_eq!(page.status, 303, "kept on the account page");
    assert_eq!(
        page.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .unwrap()
            .1,
        "/account"
    );
    let account = request(&http, "GET", "/account?lang=en", &cookies, None);
    assert_eq!(account.status, 200, "{}", account.body);
    assert!(account.body.contains("<svg"), "a QR code: {}", account.body);
    assert!(
        account.body.contains("requires two-step sign-in"),
        "{}",
        account.body
    );
    let secret = secret_of(&account);
    let csrf = account.csrf();
    let wrong = post(
        &http,
        &cookies,
        "/account/totp",
        &format!("csrf={csrf}&code=000000"),
    );
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    // The account page again, the same key to enrol, the refusal beside the code.
    assert!(
        wrong.body.contains(&format!("id=\"totp-secret\">{secret}<"))
            && wrong
                .body
                .contains("maxlength=\"6\"><p class=\"error\" id=\"error\" data-field=\"code\" data-code=\"code_wrong\">"),
        "{}",
        wrong.body
    );
    let code = suanli_app::totp::code_at(&secret, now_secs()).unwrap();
    let ok = post(
        &http,
        &cookies,
        "/account/totp",
        &format!("csrf={csrf}&code={code}"),
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(request(&http, "GET", "/audit", &cookies, None).status, 200);
    let account = request(&http, "GET", "/account?lang=en", &cookies, None);
    assert!(
        account.body.contains("data-enrolled=\"true\""),
        "{}",
        account.body
    );

    // Sign-in now needs a fresh code: none, a wrong one and the one just used are refused.
    refused(
        &sign_in(&http, "finance1", PASSWORD),
        401,
        "code",
        "enter the 6-digit one-time code",
    );
    let with_code = |code: &str| {
        let body = format!(
            "login=finance1&password={}&code={code}",
            PASSWORD.replace(' ', "+")
        );
        request(&http, "POST", "/signin?lang=en", "", Some(body.as_bytes()))
    };
    refused(
        &with_code("123456"),
        401,
        "code",
        "wrong, expired or already used",
    );
    refused(
        &with_code(&code),
        401,
        "code",
        "wrong, expired or already used",
    );
    // The next step's code (accepted for clock drift) is fresh.
    let next = suanli_app::totp::code_at(&secret, now_secs() + 30).unwrap();
    let r = with_code(&next);
    assert_eq!(r.status, 303, "{}", r.body);
    let second = format!("suanli_session={}", r.set_cookie("suanli_session").unwrap());

    // Both sessions are listed; ending the second from the first signs it out.
    let account = request(&http, "GET", "/account?lang=en", &cookies, None);
    let handles: Vec<&str> = account
        .body
        .match_indices("data-session=\"")
        .map(|(at, m)| &account.body[at + m.len()..at + m.len() + 16])
        .collect();
    assert_eq!(handles.len(), 2, "{}", account.body);
    assert!(
        !account
            .body
            .contains(second.trim_start_matches("suanli_session=")),
        "ids stay secret"
    );
    let other = handles[1];
    let r = post(
        &http,
        &cookies,
        "/account/sessions/revoke",
        &format!("csrf={}&session={other}", account.csrf()),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        request(&http, "GET", "/audit", &second, None).status,
        303,
        "the second session ended"
    );
    assert_eq!(
        request(&http, "GET", "/audit", &cookies, None).status,
        200,
        "the first goes on"
    );

    // A lost phone: the operator removes the authenticator; enrolment is asked for again.
    let o = bin()
        .args(["user", "reset-totp", "finance1", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("removed the authenticator of 财务一号 (finance1)")
    );
    let r = sign_in(&http, "finance1", PASSWORD);
    assert_eq!(r.status, 303, "{}", r.body);
    let third = format!("suanli_session={}", r.set_cookie("suanli_session").unwrap());
    assert_eq!(request(&http, "GET", "/audit", &third, None).status, 303);
}

#[test]
fn totp_enrolment_sqlite() {
    totp_enrolment(sqlite_db().unwrap());
}

#[test]
fn totp_enrolment_postgres() {
    if let Some(db) = pg_db() {
        totp_enrolment(db);
    }
}

/// A CA and a server certificate for localhost and 127.0.0.1 signed by it, as PEM files in
/// `dir`; returns the CA's certificate (DER) and the two paths.
fn test_pki(dir: &std::path::Path) -> (Vec<u8>, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "suanli console test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params
        .signed_by(&key, &Issuer::new(ca_params, &ca_key))
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        ca.der().to_vec(),
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

/// One HTTPS request to `addr`, trusting only the CA `ca_der`, for the name `localhost`.
fn https_request(
    addr: &str,
    ca_der: &[u8],
    method: &str,
    path: &str,
    cookies: &str,
    body: Option<&[u8]>,
) -> Response {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).expect("console listens");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    request_on(
        rustls::StreamOwned::new(connection, tcp),
        addr,
        method,
        path,
        cookies,
        body,
    )
}

// With TLS settings the console serves HTTPS with the server's certificate: a client that
// trusts the CA signs in with a password on a non-loopback address and gets a Secure cookie
// that works on the next request; plain HTTP to the same port gets no HTTP answer.
#[test]
fn passwords_over_https() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("suanli-console-https-{}", std::process::id()));
    let (ca, cert, key) = test_pki(&dir);
    let s = Server::start_with(
        sqlite_db().unwrap(),
        &[
            "--http-addr",
            &format!("0.0.0.0:{port}"),
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    user(&s.db, "finance1", "财务一号", Some(PASSWORD));
    let http = format!("127.0.0.1:{port}");
    let body = format!("login=finance1&password={}", PASSWORD.replace(' ', "+"));
    let r = https_request(
        &http,
        &ca,
        "POST",
        "/signin?lang=en",
        "",
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 303, "signed in over HTTPS: {}", r.body);
    let set = r
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("suanli_session="))
        .expect("a session cookie");
    assert!(set.1.contains("; Secure"), "the cookie is Secure: {set:?}");
    let cookies = format!("suanli_session={}", r.set_cookie("suanli_session").unwrap());
    let page = https_request(&http, &ca, "GET", "/account", &cookies, None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("财务一号 (finance1)"), "{}", page.body);

    // Plain HTTP to the HTTPS port: the handshake fails, no HTTP response comes back.
    let mut plain = std::net::TcpStream::connect(&http).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(
            format!("GET /signin HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP gets no HTTP answer: {:?}",
        String::from_utf8_lossy(&raw)
    );
    // And the console still answers HTTPS afterwards.
    let again = https_request(&http, &ca, "GET", "/signin", "", None);
    assert_eq!(again.status, 200, "{}", again.body);
    let _ = std::fs::remove_dir_all(&dir);
}
