//! The web console's test fixture: a `suanli serve` child with the console on a free port, the
//! worked example's registry and usage imported through the real CLI, a token per role, and a
//! minimal HTTP/1.1 client over `std::net::TcpStream` (cookies handled by hand).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::cli::{Server, sqlite_db};
use super::root;

/// Rows of dc-a that the server must reject (unknown SKU, SKU of another provider), so the
/// provider view has rejects to show.
const DC_A_BAD_ROWS: &str = "dc-a,bad-1,ent-a,no-such-sku,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n\
dc-a,bad-2,ent-a,b-oth,2025-03-01T00:00:00+08:00,2025-03-01T01:00:00+08:00,1,10.00\n";

pub struct Tokens {
    pub admin: String,
    pub finance_1: String,
    pub finance_2: String,
    pub auditor: String,
    pub ent_a: String,
    pub ent_b: String,
    pub dc_a: String,
    pub dc_b: String,
}

/// The logins of the persons behind some of the tokens; each has the password [`PASSWORD`].
pub struct Logins {
    pub finance_1: String,
    pub finance_2: String,
    pub auditor: String,
    pub ent_a: String,
    pub dc_a: String,
}

/// The console password of every person in [`Logins`].
pub const PASSWORD: &str = "a console password";

pub struct Fixture {
    pub server: Server,
    /// The console's address, host:port.
    pub http: String,
    pub tokens: Tokens,
    pub logins: Logins,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the server with the console (tokens re-checked on every request, so a revocation
/// shows at once) and imports the worked example: registry by admin, usage by dc-a (with two
/// rejected rows, imported twice so duplicates are counted) and dc-b.
pub fn start() -> Fixture {
    start_with_env(&[])
}

/// As [`start`], with environment variables for settings without a flag.
pub fn start_with_env(env: &[(&str, &str)]) -> Fixture {
    start_on(sqlite_db().expect("a SQLite database"), env)
}

/// As [`start_with_env`], on `db` (SQLite or PostgreSQL).
pub fn start_on(db: super::cli::Db, env: &[(&str, &str)]) -> Fixture {
    let http = format!("127.0.0.1:{}", free_port());
    let server = Server {
        process: super::Server::start_with_env(
            &db.url,
            &["--http-addr", &http, "--token-recheck-secs", "0"],
            env,
        ),
        db,
    };
    let person = |args: &[&str]| {
        let (login, token) = server.person(args);
        super::set_password(&server.db.url, &login, PASSWORD);
        (login, token)
    };
    let (finance_1_login, finance_1) = person(&["--role", "finance"]);
    let (finance_2_login, finance_2) = person(&["--role", "finance"]);
    let (auditor_login, auditor) = person(&["--role", "auditor"]);
    let (ent_a_login, ent_a) = person(&["--role", "beneficiary", "--beneficiary", "ent-a"]);
    let (dc_a_login, dc_a) = person(&["--role", "provider", "--provider", "dc-a"]);
    let tokens = Tokens {
        admin: server.token(&["--role", "admin"]),
        finance_1,
        finance_2,
        auditor,
        ent_a,
        ent_b: server.token(&["--role", "beneficiary", "--beneficiary", "ent-b"]),
        dc_a,
        dc_b: server.token(&["--role", "provider", "--provider", "dc-b"]),
    };
    let logins = Logins {
        finance_1: finance_1_login,
        finance_2: finance_2_login,
        auditor: auditor_login,
        ent_a: ent_a_login,
        dc_a: dc_a_login,
    };
    let registry = root().join("examples/worked/registry.toml");
    server.ok(
        &tokens.admin,
        &["registry", "import", "--file", registry.to_str().unwrap()],
    );
    let usage = std::fs::read_to_string(root().join("examples/worked/usage.csv")).unwrap();
    let mut lines = usage.lines();
    let header = format!("{}\n", lines.next().unwrap());
    for (provider, token) in [("dc-a", &tokens.dc_a), ("dc-b", &tokens.dc_b)] {
        let mut csv = header.clone();
        for l in usage
            .lines()
            .filter(|l| l.starts_with(&format!("{provider},")))
        {
            csv.push_str(l);
            csv.push('\n');
        }
        if provider == "dc-a" {
            csv.push_str(DC_A_BAD_ROWS);
        }
        let file = server.file(&format!("{provider}.csv"), &csv);
        let rejects = format!("{file}.rejects.csv");
        for _ in 0..if provider == "dc-a" { 2 } else { 1 } {
            let o = server.run(
                token,
                &["usage", "import", "--file", &file, "--rejects", &rejects],
            );
            // dc-a's file carries bad rows on purpose: `usage import` exits 3 for rejects.
            let want = if provider == "dc-a" { 3 } else { 0 };
            assert_eq!(
                o.status.code(),
                Some(want),
                "{provider} import: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    Fixture {
        server,
        http,
        tokens,
        logins,
    }
}

/// An HTTP response, its body as text.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of a cookie set by this response.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next())
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    /// The hidden CSRF field of the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("the page has a CSRF field: {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// The `data-field` of the page's error, e.g. `amount`.
    pub fn error_field(&self) -> Option<String> {
        let at = self.body.find("data-field=\"")?;
        let rest = &self.body[at + "data-field=\"".len()..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
}

/// One request on a fresh connection; `cookies` is the Cookie header's value.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    cookies: &str,
    body: Option<&[u8]>,
) -> Response {
    let stream = TcpStream::connect(addr).expect("console listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    request_on(stream, addr, method, path, cookies, body)
}

/// One request on `stream` (plain TCP, or TLS over it), then reads until the server closes.
pub fn request_on(
    mut stream: impl Read + Write,
    addr: &str,
    method: &str,
    path: &str,
    cookies: &str,
    body: Option<&[u8]>,
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !cookies.is_empty() {
        head += &format!("Cookie: {cookies}\r\n");
    }
    if let Some(b) = body {
        head += &format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    head += "\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(b) = body {
        stream.write_all(b).unwrap();
    }
    let mut raw = Vec::new();
    // A TLS peer that closes without close_notify ends the read with UnexpectedEof.
    if let Err(e) = stream.read_to_end(&mut raw) {
        assert!(
            e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty(),
            "reading the response: {e}"
        );
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A signed-in browser: its cookies.
pub struct Browser {
    pub addr: String,
    pub cookies: String,
    pub csrf: String,
}

impl Browser {
    /// Signs in with `token`; panics unless the console accepts it.
    pub fn sign_in(addr: &str, token: &str) -> Browser {
        let r = request(
            addr,
            "POST",
            "/signin",
            "",
            Some(format!("token={token}").as_bytes()),
        );
        assert_eq!(r.status, 303, "sign-in accepted: {}", r.body);
        let session = r.set_cookie("suanli_session").expect("a session cookie");
        let mut b = Browser {
            addr: addr.to_owned(),
            cookies: format!("suanli_session={session}"),
            csrf: String::new(),
        };
        // Every page carries the session's CSRF token in its sign-out form.
        b.csrf = b.get("/signin").csrf();
        b
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, &self.cookies, None)
    }

    /// Posts `fields` (already URL-encoded pairs) with the session's CSRF token.
    pub fn post(&self, path: &str, fields: &str) -> Response {
        let body = if fields.is_empty() {
            format!("csrf={}", self.csrf)
        } else {
            format!("csrf={}&{fields}", self.csrf)
        };
        self.post_raw(path, body.as_bytes())
    }

    /// Posts `fields`, and when the console asks for confirmation (posting or cancelling a
    /// run, a payment), confirms what it showed; returns the confirmed answer.
    pub fn post_confirmed(&self, path: &str, fields: &str) -> Response {
        let first = self.post(path, fields);
        let Some(at) = first.body.find("name=\"confirm\" value=\"") else {
            return first;
        };
        let rest = &first.body[at + "name=\"confirm\" value=\"".len()..];
        let token = &rest[..rest.find('"').unwrap()];
        let fields = if fields.is_empty() {
            format!("confirm={token}")
        } else {
            format!("{fields}&confirm={token}")
        };
        self.post(path, &fields)
    }

    pub fn post_raw(&self, path: &str, body: &[u8]) -> Response {
        request(&self.addr, "POST", path, &self.cookies, Some(body))
    }
}

/// Creates run 1 (hz-municipal-2025, 2025-03) as finance 1, approves and posts it as finance 2
/// (dc-a is owed 450,000.00 by it); returns both, signed in.
pub fn settle_march(f: &Fixture) -> (Browser, Browser) {
    let f1 = Browser::sign_in(&f.http, &f.tokens.finance_1);
    let created = f1.post(
        "/finance/runs",
        "programme=hz-municipal-2025&period=2025-03",
    );
    assert_eq!(created.status, 303, "{}", created.body);
    assert_eq!(created.header("location"), Some("/finance/runs/1"));
    let f2 = Browser::sign_in(&f.http, &f.tokens.finance_2);
    assert_eq!(f2.post("/finance/runs/1/approve", "").status, 303);
    // Posting is shown for confirmation first.
    assert_eq!(f2.post_confirmed("/finance/runs/1/post", "").status, 303);
    (f1, f2)
}

/// `fen` as the console writes it: `¥1,234,567.89`, `-¥0.50`.
pub fn cny(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    let digits = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}¥{grouped}.{:02}", abs % 100)
}
