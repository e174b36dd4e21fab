//! The configuration of `suanli serve`: one table of keys, each settable in the TOML file, by an
//! environment variable and (the common ones) by a flag; precedence flag > env > file > default.
//! Every value is resolved to text first, remembering where it came from, then parsed and
//! checked, so an invalid value is reported with its key, its source and the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where a value came from, for error messages and `--print-config`-style logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "the default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// An invalid configuration: the key, where its value came from, and why it is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {key} (from {origin}): {reason}")]
pub struct ConfigError {
    pub key: String,
    pub origin: Source,
    pub reason: String,
}

/// One configuration key: its dotted name in the file, its environment variable, its flag.
pub struct Key {
    pub name: &'static str,
    pub env: &'static str,
    pub flag: Option<&'static str>,
    /// The default as text; empty means unset.
    pub default: &'static str,
    pub help: &'static str,
}

/// Every key `suanli serve` reads. The environment variable is `SUANLI_` and the dotted name in
/// upper case with `.` → `_`, except that the `server.` section is left out (`SUANLI_ADDR`).
pub const KEYS: &[Key] = &[
    Key {
        name: "server.addr",
        env: "SUANLI_ADDR",
        flag: Some("--addr"),
        default: "127.0.0.1:50051",
        help: "gRPC listen address",
    },
    Key {
        name: "server.metrics_addr",
        env: "SUANLI_METRICS_ADDR",
        flag: Some("--metrics-addr"),
        default: "",
        help: "Prometheus metrics HTTP address; unset serves no metrics",
    },
    Key {
        name: "server.health_addr",
        env: "SUANLI_HEALTH_ADDR",
        flag: Some("--health-addr"),
        default: "",
        help: "plain-text grpc.health.v1 only (for probes that cannot speak TLS); unset: none",
    },
    Key {
        name: "server.http_addr",
        env: "SUANLI_HTTP_ADDR",
        flag: Some("--http-addr"),
        default: "127.0.0.1:8080",
        help: "the web console's HTTP address; \"off\" (or empty) serves no console",
    },
    Key {
        name: "server.trust_proxy_tls",
        env: "SUANLI_TRUST_PROXY_TLS",
        flag: Some("--trust-proxy-tls"),
        default: "false",
        help: "a TLS-terminating proxy is in front of the console: password sign-in is allowed on a non-loopback http_addr, cookies are Secure, the client address is the last X-Forwarded-For entry",
    },
    Key {
        name: "server.log_json",
        env: "SUANLI_LOG_JSON",
        flag: Some("--log-json"),
        default: "false",
        help: "log JSON lines instead of text",
    },
    Key {
        name: "database.url",
        env: "SUANLI_DATABASE_URL",
        flag: Some("--database-url"),
        default: suanli_store::DEFAULT_DATABASE_URL,
        help: "sqlite://PATH or postgres://USER@HOST/DB",
    },
    Key {
        name: "tls.cert_path",
        env: "SUANLI_TLS_CERT_PATH",
        flag: Some("--tls-cert"),
        default: "",
        help: "server certificate chain (PEM); set with tls.key_path to serve TLS",
    },
    Key {
        name: "tls.key_path",
        env: "SUANLI_TLS_KEY_PATH",
        flag: Some("--tls-key"),
        default: "",
        help: "server private key (PEM)",
    },
    Key {
        name: "tls.client_ca_path",
        env: "SUANLI_TLS_CLIENT_CA_PATH",
        flag: Some("--tls-client-ca"),
        default: "",
        help: "CA (PEM) whose client certificates authenticate providers by their CN",
    },
    Key {
        name: "tls.client_cert_required",
        env: "SUANLI_TLS_CLIENT_CERT_REQUIRED",
        flag: None,
        default: "false",
        help: "refuse TLS handshakes without a client certificate",
    },
    Key {
        name: "limits.message_bytes_max",
        env: "SUANLI_LIMITS_MESSAGE_BYTES_MAX",
        flag: None,
        default: "16777216",
        help: "largest gRPC message, bytes",
    },
    Key {
        name: "limits.registry_bytes_max",
        env: "SUANLI_LIMITS_REGISTRY_BYTES_MAX",
        flag: None,
        default: "268435456",
        help: "largest registry text a streamed load or patch may send, bytes",
    },
    Key {
        name: "limits.batch_records_max",
        env: "SUANLI_LIMITS_BATCH_RECORDS_MAX",
        flag: None,
        default: "10000",
        help: "most usage records in one batch",
    },
    Key {
        name: "limits.token_requests_per_minute",
        env: "SUANLI_LIMITS_TOKEN_REQUESTS_PER_MINUTE",
        flag: None,
        default: "6000",
        help: "sustained calls per credential per minute; 0 turns the rate limit off",
    },
    Key {
        name: "limits.token_request_burst",
        env: "SUANLI_LIMITS_TOKEN_REQUEST_BURST",
        flag: None,
        default: "200",
        help: "calls a credential may make at once above the sustained rate",
    },
    Key {
        name: "limits.concurrent_requests_max",
        env: "SUANLI_LIMITS_CONCURRENT_REQUESTS_MAX",
        flag: None,
        default: "256",
        help: "calls (and open streams) served at once; more are refused",
    },
    Key {
        name: "limits.request_deadline_ms",
        env: "SUANLI_LIMITS_REQUEST_DEADLINE_MS",
        flag: None,
        default: "30000",
        help: "longest a unary call may take (a shorter grpc-timeout from the client wins)",
    },
    Key {
        name: "auth.require_totp_for",
        env: "SUANLI_AUTH_REQUIRE_TOTP_FOR",
        flag: None,
        default: "",
        help: "roles whose console password sign-in also needs a one-time code (TOTP), comma-separated, e.g. \"finance,admin\"; empty: none",
    },
    Key {
        name: "ledger.payment_confirm_above_fen",
        env: "SUANLI_LEDGER_PAYMENT_CONFIRM_ABOVE_FEN",
        flag: None,
        default: "",
        help: "a payment of more than this many fen is only recorded, and booked when another finance user confirms it (four eyes); unset: every payment is booked at once",
    },
    Key {
        name: "auth.oidc.issuer_url",
        env: "SUANLI_AUTH_OIDC_ISSUER_URL",
        flag: None,
        default: "",
        help: "the OpenID Provider of console single sign-on (https, or http on a loopback host); unset: no SSO",
    },
    Key {
        name: "auth.oidc.client_id",
        env: "SUANLI_AUTH_OIDC_CLIENT_ID",
        flag: None,
        default: "",
        help: "the console's client id at the OpenID Provider",
    },
    Key {
        name: "auth.oidc.client_secret",
        env: "SUANLI_AUTH_OIDC_CLIENT_SECRET",
        flag: None,
        default: "",
        help: "the console's client secret (or auth.oidc.client_secret_path)",
    },
    Key {
        name: "auth.oidc.client_secret_path",
        env: "SUANLI_AUTH_OIDC_CLIENT_SECRET_PATH",
        flag: None,
        default: "",
        help: "a file holding the client secret (one line)",
    },
    Key {
        name: "auth.oidc.redirect_url",
        env: "SUANLI_AUTH_OIDC_REDIRECT_URL",
        flag: None,
        default: "",
        help: "the console's callback as the browser reaches it, ending in /signin/sso/callback; registered at the provider",
    },
    Key {
        name: "auth.oidc.user_claim",
        env: "SUANLI_AUTH_OIDC_USER_CLAIM",
        flag: None,
        default: "email",
        help: "the ID token claim naming the user: email (a user's email) or preferred_username (a user's login)",
    },
    Key {
        name: "limits.token_recheck_secs",
        env: "SUANLI_LIMITS_TOKEN_RECHECK_SECS",
        flag: Some("--token-recheck-secs"),
        default: "30",
        help: "seconds a cached token is trusted before it is read again (a revoked token is refused within this time)",
    },
    Key {
        name: "limits.credential_streams_max",
        env: "SUANLI_LIMITS_CREDENTIAL_STREAMS_MAX",
        flag: None,
        default: "16",
        help: "streams one credential (token or client certificate) may have open at once",
    },
    Key {
        name: "limits.credential_calls_max",
        env: "SUANLI_LIMITS_CREDENTIAL_CALLS_MAX",
        flag: None,
        default: "32",
        help: "unary calls one credential may have in flight at once (its streams not counted)",
    },
    Key {
        name: "limits.stream_idle_secs",
        env: "SUANLI_LIMITS_STREAM_IDLE_SECS",
        flag: None,
        default: "120",
        help: "seconds a stream may wait for its client's next message before the server ends it",
    },
];

/// Hard bounds on the limits, so a typo cannot disable a protection or exhaust memory.
pub const MESSAGE_BYTES_BOUNDS: (u64, u64) = (64 * 1024, 256 * 1024 * 1024);
/// Up to 1 GiB: PostgreSQL stores a text of at most that.
pub const REGISTRY_BYTES_BOUNDS: (u64, u64) = (64 * 1024, 1024 * 1024 * 1024);
pub const BATCH_RECORDS_BOUNDS: (u64, u64) = (1, 100_000);
pub const TOKEN_REQUESTS_PER_MINUTE_BOUNDS: (u64, u64) = (0, 60_000_000);
pub const TOKEN_REQUEST_BURST_BOUNDS: (u64, u64) = (1, 1_000_000);
pub const CONCURRENT_REQUESTS_BOUNDS: (u64, u64) = (1, 100_000);
pub const REQUEST_DEADLINE_MS_BOUNDS: (u64, u64) = (1, 3_600_000);
pub const TOKEN_RECHECK_SECS_BOUNDS: (u64, u64) = (0, 3_600);
pub const CREDENTIAL_STREAMS_BOUNDS: (u64, u64) = (1, 100_000);
pub const CREDENTIAL_CALLS_BOUNDS: (u64, u64) = (1, 100_000);
pub const STREAM_IDLE_SECS_BOUNDS: (u64, u64) = (1, 86_400);
/// Up to 10^15 fen (10 trillion CNY): far above any payment, far below `i64::MAX`.
pub const PAYMENT_CONFIRM_ABOVE_FEN_BOUNDS: (u64, u64) = (0, 1_000_000_000_000_000);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub client_ca_path: Option<PathBuf>,
    pub client_cert_required: bool,
}

/// Which claim of the ID token names the Suanli user of a single sign-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserClaim {
    /// `email`: the user whose email it is (case-insensitive); `email_verified` must not be false.
    Email,
    /// `preferred_username`: the user whose login it is (lower-cased).
    PreferredUsername,
}

impl UserClaim {
    /// The claim's name in the ID token.
    pub fn name(self) -> &'static str {
        match self {
            UserClaim::Email => "email",
            UserClaim::PreferredUsername => "preferred_username",
        }
    }
}

/// A secret read from the configuration: cloned and compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Console single sign-on with OpenID Connect (`auth.oidc.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuer_url: String,
    pub client_id: String,
    /// From `auth.oidc.client_secret` or the file `auth.oidc.client_secret_path`.
    pub client_secret: Secret,
    pub redirect_url: String,
    pub user_claim: UserClaim,
}

/// The path the console serves the OpenID Connect callback on: `auth.oidc.redirect_url` ends in it.
pub const OIDC_CALLBACK_PATH: &str = "/signin/sso/callback";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub message_bytes_max: usize,
    /// The largest registry text a streamed load or patch may send (every chunk is also under
    /// `message_bytes_max`).
    pub registry_bytes_max: usize,
    pub batch_records_max: usize,
    /// 0: no rate limit.
    pub token_requests_per_minute: u64,
    pub token_request_burst: u64,
    pub concurrent_requests_max: usize,
    pub request_deadline_ms: u64,
    /// Seconds a cached token is trusted before it is read again.
    pub token_recheck_secs: u64,
    /// Streams one credential may have open at once.
    pub credential_streams_max: usize,
    /// Unary calls one credential may have in flight at once.
    pub credential_calls_max: usize,
    /// Seconds a stream may wait for its client's next message.
    pub stream_idle_secs: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            message_bytes_max: 16 * 1024 * 1024,
            registry_bytes_max: 256 * 1024 * 1024,
            batch_records_max: 10_000,
            token_requests_per_minute: 6_000,
            token_request_burst: 200,
            concurrent_requests_max: 256,
            request_deadline_ms: 30_000,
            token_recheck_secs: 30,
            credential_streams_max: 16,
            credential_calls_max: 32,
            stream_idle_secs: 120,
        }
    }
}

/// The resolved configuration of `suanli serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub addr: SocketAddr,
    pub database_url: String,
    pub metrics_addr: Option<SocketAddr>,
    pub health_addr: Option<SocketAddr>,
    /// The web console (`console/`); `None` when `server.http_addr` is "off" or empty.
    pub http_addr: Option<SocketAddr>,
    pub log_json: bool,
    /// `server.trust_proxy_tls`: the console is reached through a TLS-terminating proxy.
    pub trust_proxy_tls: bool,
    /// `auth.require_totp_for`: the roles whose console sign-in needs a one-time code.
    pub require_totp_for: Vec<String>,
    /// `ledger.payment_confirm_above_fen`: payments of more fen need a second finance user;
    /// `None`: every payment is booked at once.
    pub payment_confirm_above_fen: Option<i64>,
    /// `auth.oidc.*`: console single sign-on; `None` when `auth.oidc.issuer_url` is unset.
    pub oidc: Option<OidcConfig>,
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: "127.0.0.1:50051".parse().expect("valid default address"),
            database_url: suanli_store::DEFAULT_DATABASE_URL.to_owned(),
            metrics_addr: None,
            health_addr: None,
            http_addr: Some("127.0.0.1:8080".parse().expect("valid default address")),
            log_json: false,
            trust_proxy_tls: false,
            require_totp_for: Vec::new(),
            payment_confirm_above_fen: None,
            oidc: None,
            tls: None,
            limits: Limits::default(),
        }
    }
}

/// Where each key's value came from, in key order.
pub type Sources = Vec<(&'static str, Source)>;

/// The inputs of [`resolve`]: the file (path and text), a lookup of environment variables, and
/// the flags given (by flag name, e.g. `--addr`).
pub struct Inputs<'a> {
    pub file: Option<(&'a Path, &'a str)>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub flags: &'a [(&'static str, String)],
}

/// Reads the file (if any) and the process environment, then resolves.
pub fn load(
    file: Option<&Path>,
    flags: &[(&'static str, String)],
) -> Result<(Config, Sources), ConfigError> {
    let text = match file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "--config".into(),
            origin: Source::Flag("--config"),
            reason: format!("cannot read {}: {e}", path.display()),
        })?),
        None => None,
    };
    let env = |name: &str| std::env::var(name).ok();
    resolve(&Inputs {
        file: file.zip(text.as_deref()),
        env: &env,
        flags,
    })
}

fn key(name: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.name == name)
        .expect("every key read is declared in KEYS")
}

/// Flattens the file's tables into dotted keys; unknown keys and wrong shapes are errors, since
/// a misspelt limit would otherwise be silently ignored.
fn file_values(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let source = Source::File(path.to_owned());
    let err = |key: &str, reason: String| ConfigError {
        key: key.to_owned(),
        origin: source.clone(),
        reason,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err("(file)", format!("not valid TOML: {e}")))?;
    let mut values = BTreeMap::new();
    for (section, value) in table {
        let toml::Value::Table(inner) = value else {
            return Err(err(
                &section,
                "expected a table such as [server], [database], [tls], [limits], [auth] or [ledger]"
                    .into(),
            ));
        };
        // One level of sub-tables, such as [auth.oidc].
        let mut entries: Vec<(String, toml::Value)> = Vec::new();
        for (name, value) in inner {
            match value {
                toml::Value::Table(sub) => {
                    entries.extend(sub.into_iter().map(|(k, v)| (format!("{name}.{k}"), v)));
                }
                other => entries.push((name, other)),
            }
        }
        for (name, value) in entries {
            let dotted = format!("{section}.{name}");
            if !KEYS.iter().any(|k| k.name == dotted) {
                return Err(err(&dotted, "unknown key".into()));
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(err(
                        &dotted,
                        format!(
                            "expected a string, integer or boolean, got a {}",
                            other.type_str()
                        ),
                    ));
                }
            };
            values.insert(dotted, text);
        }
    }
    Ok(values)
}

/// Applies precedence flag > env > file > default and checks every value.
pub fn resolve(inputs: &Inputs<'_>) -> Result<(Config, Sources), ConfigError> {
    let file = match inputs.file {
        Some((path, text)) => Some((path, file_values(path, text)?)),
        None => None,
    };
    let mut raw: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();
    for k in KEYS {
        let flag = k.flag.and_then(|f| {
            inputs
                .flags
                .iter()
                .rev()
                .find(|(name, _)| *name == f)
                .map(|(_, v)| (v.clone(), Source::Flag(f)))
        });
        let env = || (inputs.env)(k.env).map(|v| (v, Source::Env(k.env)));
        let from_file = || {
            file.as_ref().and_then(|(path, values)| {
                values
                    .get(k.name)
                    .map(|v| (v.clone(), Source::File(path.to_path_buf())))
            })
        };
        let value = flag
            .or_else(env)
            .or_else(from_file)
            .unwrap_or_else(|| (k.default.to_owned(), Source::Default));
        raw.insert(k.name, value);
    }
    let sources = raw.iter().map(|(k, (_, s))| (*k, s.clone())).collect();
    Ok((Parser { raw }.config()?, sources))
}

struct Parser {
    raw: BTreeMap<&'static str, (String, Source)>,
}

impl Parser {
    fn get(&self, name: &str) -> (&str, &Source) {
        let (v, s) = &self.raw[key(name).name];
        (v.trim(), s)
    }

    fn fail(&self, name: &str, reason: String) -> ConfigError {
        ConfigError {
            key: name.to_owned(),
            origin: self.get(name).1.clone(),
            reason,
        }
    }

    /// The TLS files hold what their keys say, checked at start: otherwise a garbage file is
    /// found only at the first handshake ("peer sent no certificates"), after migrations ran.
    fn check_tls_files(&self, tls: &TlsConfig) -> Result<(), ConfigError> {
        let mut files = vec![
            ("tls.cert_path", &tls.cert_path, "certificate"),
            ("tls.key_path", &tls.key_path, "private key"),
        ];
        if let Some(ca) = &tls.client_ca_path {
            files.push(("tls.client_ca_path", ca, "certificate"));
        }
        for (key, path, want) in files {
            let bytes = std::fs::read(path)
                .map_err(|e| self.fail(key, format!("cannot read {}: {e}", path.display())))?;
            let blocks: Vec<x509_parser::pem::Pem> =
                x509_parser::pem::Pem::iter_from_buffer(&bytes)
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        self.fail(key, format!("{} is not a PEM file: {e}", path.display()))
                    })?;
            let found = blocks.iter().any(|b| match want {
                "certificate" => {
                    b.label == "CERTIFICATE"
                        && x509_parser::parse_x509_certificate(&b.contents).is_ok()
                }
                _ => b.label.ends_with("PRIVATE KEY") && !b.contents.is_empty(),
            });
            if !found {
                return Err(self.fail(key, format!("{} holds no PEM {want}", path.display())));
            }
        }
        Ok(())
    }

    fn addr(&self, name: &str) -> Result<Option<SocketAddr>, ConfigError> {
        let (v, _) = self.get(name);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse().map(Some).map_err(|_| {
            self.fail(
                name,
                format!("{v:?} is not a socket address such as 0.0.0.0:50051"),
            )
        })
    }

    /// A comma-separated list of roles, each known.
    fn roles(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        let mut roles = Vec::new();
        for role in self
            .get(name)
            .0
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            if !["provider", "beneficiary", "finance", "auditor", "admin"].contains(&role) {
                return Err(self.fail(
                    name,
                    format!(
                        "{role:?} is not a role: expected provider, beneficiary, finance, auditor or admin"
                    ),
                ));
            }
            roles.push(role.to_owned());
        }
        Ok(roles)
    }

    /// An absolute `https` URL, or `http` on a loopback host (a test, or a provider on the
    /// same machine), without a fragment.
    fn secure_url(&self, name: &str) -> Result<openidconnect::url::Url, ConfigError> {
        let (v, _) = self.get(name);
        let url = openidconnect::url::Url::parse(v)
            .map_err(|e| self.fail(name, format!("{v:?} is not a URL: {e}")))?;
        let loopback = match url.host() {
            Some(openidconnect::url::Host::Domain(d)) => d == "localhost",
            Some(openidconnect::url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(openidconnect::url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(self.fail(
                    name,
                    format!("{v} must use https (plain http only on a loopback host)"),
                ));
            }
            _ => return Err(self.fail(name, format!("{v} must use https"))),
        }
        if url.fragment().is_some() || url.host().is_none() {
            return Err(self.fail(name, format!("{v} must have a host and no #fragment")));
        }
        Ok(url)
    }

    /// The `auth.oidc.*` keys: all or none, one client secret, URLs checked.
    fn oidc(&self) -> Result<Option<OidcConfig>, ConfigError> {
        const ISSUER: &str = "auth.oidc.issuer_url";
        let set = |name: &str| !self.get(name).0.is_empty();
        let others = [
            "auth.oidc.client_id",
            "auth.oidc.client_secret",
            "auth.oidc.client_secret_path",
            "auth.oidc.redirect_url",
        ];
        if !set(ISSUER) {
            if let Some(name) = others.into_iter().find(|n| set(n)) {
                return Err(self.fail(name, format!("needs {ISSUER} (single sign-on is off)")));
            }
            return Ok(None);
        }
        let issuer = self.secure_url(ISSUER)?;
        if issuer.query().is_some() {
            return Err(self.fail(ISSUER, "must have no ?query".into()));
        }
        for name in ["auth.oidc.client_id", "auth.oidc.redirect_url"] {
            if !set(name) {
                return Err(self.fail(name, format!("must be set with {ISSUER}")));
            }
        }
        let client_secret = match (
            set("auth.oidc.client_secret"),
            self.path("auth.oidc.client_secret_path")?,
        ) {
            (true, Some(_)) => {
                return Err(self.fail(
                    "auth.oidc.client_secret_path",
                    "set either auth.oidc.client_secret or auth.oidc.client_secret_path, not both"
                        .into(),
                ));
            }
            (true, None) => Secret::new(self.get("auth.oidc.client_secret").0),
            (false, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.fail(
                        "auth.oidc.client_secret_path",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let secret = text.trim();
                if secret.is_empty() || secret.lines().count() != 1 {
                    return Err(self.fail(
                        "auth.oidc.client_secret_path",
                        format!("{} must hold the secret on one line", path.display()),
                    ));
                }
                Secret::new(secret)
            }
            (false, None) => {
                return Err(self.fail(
                    "auth.oidc.client_secret",
                    format!("must be set with {ISSUER} (or auth.oidc.client_secret_path)"),
                ));
            }
        };
        let redirect = self.secure_url("auth.oidc.redirect_url")?;
        if redirect.path() != OIDC_CALLBACK_PATH || redirect.query().is_some() {
            return Err(self.fail(
                "auth.oidc.redirect_url",
                format!(
                    "must be the console's address followed by {OIDC_CALLBACK_PATH}, e.g. https://console.example.org{OIDC_CALLBACK_PATH}"
                ),
            ));
        }
        let user_claim = match self.get("auth.oidc.user_claim").0 {
            "email" => UserClaim::Email,
            "preferred_username" => UserClaim::PreferredUsername,
            v => {
                return Err(self.fail(
                    "auth.oidc.user_claim",
                    format!("{v:?} is not email or preferred_username"),
                ));
            }
        };
        Ok(Some(OidcConfig {
            // Kept as written: the ID token's `iss` must equal it exactly.
            issuer_url: self.get(ISSUER).0.to_owned(),
            client_id: self.get("auth.oidc.client_id").0.to_owned(),
            client_secret,
            redirect_url: redirect.to_string(),
            user_claim,
        }))
    }

    fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        match self.get(name).0 {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            v => Err(self.fail(name, format!("{v:?} is not true or false"))),
        }
    }

    fn number(&self, name: &str, (min, max): (u64, u64)) -> Result<u64, ConfigError> {
        let (v, _) = self.get(name);
        let n: u64 = v
            .replace('_', "")
            .parse()
            .map_err(|_| self.fail(name, format!("{v:?} is not a whole number")))?;
        if !(min..=max).contains(&n) {
            return Err(self.fail(name, format!("must be {min} to {max}, got {n}")));
        }
        Ok(n)
    }

    fn path(&self, name: &str) -> Result<Option<PathBuf>, ConfigError> {
        let (v, _) = self.get(name);
        if v.is_empty() {
            return Ok(None);
        }
        let path = PathBuf::from(v);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(path)),
            Ok(_) => Err(self.fail(name, format!("{v} is not a file"))),
            Err(e) => Err(self.fail(name, format!("cannot read {v}: {e}"))),
        }
    }

    fn config(&self) -> Result<Config, ConfigError> {
        let addr = self
            .addr("server.addr")?
            .ok_or_else(|| self.fail("server.addr", "must be set".into()))?;
        let metrics_addr = self.addr("server.metrics_addr")?;
        if metrics_addr == Some(addr) {
            return Err(self.fail("server.metrics_addr", format!("{addr} is also server.addr")));
        }
        let health_addr = self.addr("server.health_addr")?;
        if let Some(h) = health_addr
            && (h == addr || Some(h) == metrics_addr)
        {
            return Err(self.fail(
                "server.health_addr",
                format!("{h} is also server.addr or server.metrics_addr"),
            ));
        }
        let http_addr = match self.get("server.http_addr").0 {
            "off" => None,
            _ => self.addr("server.http_addr")?,
        };
        if let Some(h) = http_addr
            && (h == addr || Some(h) == metrics_addr || Some(h) == health_addr)
        {
            return Err(self.fail(
                "server.http_addr",
                format!("{h} is also server.addr, server.metrics_addr or server.health_addr"),
            ));
        }
        let database_url = self.get("database.url").0.to_owned();
        if !(database_url.starts_with("sqlite://")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(self.fail(
                "database.url",
                "must start with sqlite://, postgres:// or postgresql://".into(),
            ));
        }
        let cert = self.path("tls.cert_path")?;
        let key = self.path("tls.key_path")?;
        let client_ca = self.path("tls.client_ca_path")?;
        let client_cert_required = self.bool("tls.client_cert_required")?;
        let tls = match (cert, key) {
            (Some(cert_path), Some(key_path)) => Some(TlsConfig {
                cert_path,
                key_path,
                client_ca_path: client_ca,
                client_cert_required,
            }),
            (Some(_), None) => {
                return Err(self.fail("tls.key_path", "must be set with tls.cert_path".into()));
            }
            (None, Some(_)) => {
                return Err(self.fail("tls.cert_path", "must be set with tls.key_path".into()));
            }
            (None, None) => {
                if client_ca.is_some() {
                    return Err(self.fail(
                        "tls.client_ca_path",
                        "client certificates need TLS: set tls.cert_path and tls.key_path".into(),
                    ));
                }
                None
            }
        };
        if client_cert_required && tls.as_ref().is_none_or(|t| t.client_ca_path.is_none()) {
            return Err(self.fail(
                "tls.client_cert_required",
                "needs tls.client_ca_path to verify client certificates against".into(),
            ));
        }
        if let Some(tls) = &tls {
            self.check_tls_files(tls)?;
        }
        let limits = Limits {
            message_bytes_max: self.number("limits.message_bytes_max", MESSAGE_BYTES_BOUNDS)?
                as usize,
            registry_bytes_max: self.number("limits.registry_bytes_max", REGISTRY_BYTES_BOUNDS)?
                as usize,
            batch_records_max: self.number("limits.batch_records_max", BATCH_RECORDS_BOUNDS)?
                as usize,
            token_requests_per_minute: self.number(
                "limits.token_requests_per_minute",
                TOKEN_REQUESTS_PER_MINUTE_BOUNDS,
            )?,
            token_request_burst: self
                .number("limits.token_request_burst", TOKEN_REQUEST_BURST_BOUNDS)?,
            concurrent_requests_max: self
                .number("limits.concurrent_requests_max", CONCURRENT_REQUESTS_BOUNDS)?
                as usize,
            request_deadline_ms: self
                .number("limits.request_deadline_ms", REQUEST_DEADLINE_MS_BOUNDS)?,
            token_recheck_secs: self
                .number("limits.token_recheck_secs", TOKEN_RECHECK_SECS_BOUNDS)?,
            credential_streams_max: self
                .number("limits.credential_streams_max", CREDENTIAL_STREAMS_BOUNDS)?
                as usize,
            credential_calls_max: self
                .number("limits.credential_calls_max", CREDENTIAL_CALLS_BOUNDS)?
                as usize,
            stream_idle_secs: self.number("limits.stream_idle_secs", STREAM_IDLE_SECS_BOUNDS)?,
        };
        Ok(Config {
            addr,
            database_url,
            metrics_addr,
            health_addr,
            http_addr,
            log_json: self.bool("server.log_json")?,
            trust_proxy_tls: self.bool("server.trust_proxy_tls")?,
            require_totp_for: self.roles("auth.require_totp_for")?,
            payment_confirm_above_fen: match self.get("ledger.payment_confirm_above_fen").0 {
                "" => None,
                _ => Some(self.number(
                    "ledger.payment_confirm_above_fen",
                    PAYMENT_CONFIRM_ABOVE_FEN_BOUNDS,
                )? as i64),
            },
            oidc: self.oidc()?,
            tls,
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        file: Option<&str>,
        env: &[(&str, &str)],
        flags: &[(&'static str, &str)],
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let flags: Vec<(&'static str, String)> =
            flags.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        resolve(&Inputs {
            file: file.map(|t| (Path::new("suanli.toml"), t)),
            env: &lookup,
            flags: &flags,
        })
        .map(|(c, _)| c)
    }

    // Nothing given yields `Config::default()`, and that is what the key table says.
    #[test]
    fn defaults() {
        let config = run(None, &[], &[]).unwrap();
        assert_eq!(config, Config::default());
        // Pinned literally, so a changed default is a deliberate edit here and in the docs.
        assert_eq!(config.addr.to_string(), "127.0.0.1:50051");
        assert_eq!(config.database_url, "sqlite://./suanli-data/suanli.db");
        assert_eq!(config.http_addr.unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!((config.metrics_addr, config.health_addr), (None, None));
        assert!(!config.log_json && config.tls.is_none());
        let l = &config.limits;
        assert_eq!(l.message_bytes_max, 16_777_216);
        assert_eq!(l.batch_records_max, 10_000);
        assert_eq!(l.token_requests_per_minute, 6_000);
        assert_eq!(l.token_request_burst, 200);
        assert_eq!(l.concurrent_requests_max, 256);
        assert_eq!(l.token_recheck_secs, 30);
        assert_eq!(l.request_deadline_ms, 30_000);
    }

    // Every key is documented in docs/configuration.md with the same variable, flag and default.
    #[test]
    fn the_key_table_matches_the_documentation() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let doc = std::fs::read_to_string(&path).expect("docs/configuration.md exists");
        for k in KEYS {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", k.name)))
                .unwrap_or_else(|| panic!("docs/configuration.md has a row for {}", k.name));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(cells[2], format!("`{}`", k.env), "{row}");
            let flag = k.flag.map_or_else(|| "—".to_owned(), |f| format!("`{f}`"));
            assert_eq!(cells[3], flag, "{row}");
            if k.default.is_empty() {
                assert!(cells[4].starts_with("unset"), "{row}");
            } else {
                assert_eq!(cells[4], format!("`{}`", k.default), "{row}");
            }
        }
    }

    // A flag beats the environment, which beats the file, which beats the default, key by key.
    #[test]
    fn precedence_flag_env_file_default() {
        let file = "[server]\naddr = \"10.0.0.1:1\"\nmetrics_addr = \"10.0.0.1:2\"\n\
                    [database]\nurl = \"postgres://file/db\"\n[limits]\nbatch_records_max = 5\n";
        let env = [
            ("SUANLI_ADDR", "10.0.0.2:1"),
            ("SUANLI_METRICS_ADDR", "10.0.0.2:2"),
        ];
        let flags = [("--addr", "10.0.0.3:1")];
        let c = run(Some(file), &env, &flags).unwrap();
        assert_eq!(c.addr.to_string(), "10.0.0.3:1", "flag over env and file");
        assert_eq!(
            c.metrics_addr.unwrap().to_string(),
            "10.0.0.2:2",
            "env over file"
        );
        assert_eq!(c.database_url, "postgres://file/db", "file over default");
        assert_eq!(c.limits.batch_records_max, 5, "file over default");
        assert_eq!(
            c.limits.concurrent_requests_max,
            Limits::default().concurrent_requests_max,
            "default when unset"
        );
        let (_, sources) = resolve(&Inputs {
            file: Some((Path::new("suanli.toml"), file)),
            env: &|n: &str| (n == "SUANLI_LIMITS_BATCH_RECORDS_MAX").then(|| "7".to_owned()),
            flags: &[],
        })
        .unwrap();
        let source = |k: &str| sources.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(
            source("limits.batch_records_max"),
            Source::Env("SUANLI_LIMITS_BATCH_RECORDS_MAX")
        );
        assert_eq!(
            source("server.addr"),
            Source::File(PathBuf::from("suanli.toml"))
        );
        assert_eq!(source("limits.request_deadline_ms"), Source::Default);
    }

    // Every key's environment variable follows the naming rule, so the table and the docs agree.
    #[test]
    fn env_names_follow_the_rule() {
        for k in KEYS {
            let dotted = k.name.strip_prefix("server.").unwrap_or(k.name);
            let expected = format!("SUANLI_{}", dotted.replace('.', "_").to_uppercase());
            assert_eq!(k.env, expected, "{}", k.name);
        }
    }

    /// Asserts the configuration fails on `key` with a reason containing `reason`.
    fn check_invalid(
        file: Option<&str>,
        env: &[(&str, &str)],
        flags: &[(&'static str, &str)],
        key: &str,
        reason: &str,
    ) {
        let e = run(file, env, flags).expect_err("invalid configuration is refused");
        assert_eq!(e.key, key, "{e}");
        assert!(e.reason.contains(reason), "{e}");
        assert!(
            e.to_string().contains(key),
            "the message names the key: {e}"
        );
    }

    // Each invalid value is refused naming its key, its source and the reason.
    #[test]
    fn each_invalid_key_is_named() {
        let dir = std::env::temp_dir().join(format!("suanli-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("x.pem");
        std::fs::write(&pem, "not checked here").unwrap();
        let pem = pem.to_str().unwrap();
        let missing = dir.join("missing.pem");
        let missing = missing.to_str().unwrap();

        check_invalid(
            None,
            &[],
            &[("--addr", "nowhere")],
            "server.addr",
            "socket address",
        );
        check_invalid(
            None,
            &[("SUANLI_METRICS_ADDR", "9090")],
            &[],
            "server.metrics_addr",
            "socket address",
        );
        check_invalid(
            None,
            &[("SUANLI_METRICS_ADDR", "127.0.0.1:50051")],
            &[],
            "server.metrics_addr",
            "also server.addr",
        );
        check_invalid(
            None,
            &[("SUANLI_HEALTH_ADDR", "127.0.0.1:50051")],
            &[],
            "server.health_addr",
            "also server.addr",
        );
        check_invalid(
            None,
            &[("SUANLI_HEALTH_ADDR", "health")],
            &[],
            "server.health_addr",
            "socket address",
        );
        check_invalid(
            None,
            &[("SUANLI_AUTH_REQUIRE_TOTP_FOR", "finance,boss")],
            &[],
            "auth.require_totp_for",
            "\"boss\" is not a role",
        );
        check_invalid(
            None,
            &[("SUANLI_LEDGER_PAYMENT_CONFIRM_ABOVE_FEN", "100000.00")],
            &[],
            "ledger.payment_confirm_above_fen",
            "not a whole number",
        );
        check_invalid(
            Some("[ledger]\npayment_confirm_above_fen = -1\n"),
            &[],
            &[],
            "ledger.payment_confirm_above_fen",
            "not a whole number",
        );
        check_invalid(
            None,
            &[("SUANLI_LOG_JSON", "yes")],
            &[],
            "server.log_json",
            "true or false",
        );
        check_invalid(
            None,
            &[],
            &[("--database-url", "mysql://x")],
            "database.url",
            "must start with",
        );
        check_invalid(
            None,
            &[],
            &[("--tls-cert", missing)],
            "tls.cert_path",
            "cannot read",
        );
        check_invalid(
            None,
            &[],
            &[("--tls-cert", pem)],
            "tls.key_path",
            "must be set",
        );
        check_invalid(
            None,
            &[("SUANLI_TLS_KEY_PATH", pem)],
            &[],
            "tls.cert_path",
            "must be set",
        );
        check_invalid(
            None,
            &[],
            &[("--tls-key", &*dir.to_string_lossy())],
            "tls.key_path",
            "not a file",
        );
        check_invalid(
            None,
            &[("SUANLI_TLS_CLIENT_CA_PATH", pem)],
            &[],
            "tls.client_ca_path",
            "need TLS",
        );
        check_invalid(
            None,
            &[("SUANLI_TLS_CLIENT_CERT_REQUIRED", "true")],
            &[("--tls-cert", pem), ("--tls-key", pem)],
            "tls.client_cert_required",
            "needs tls.client_ca_path",
        );
        // Files that exist but hold no certificate or key are named at start, by their key.
        check_invalid(
            None,
            &[],
            &[("--tls-cert", pem), ("--tls-key", pem)],
            "tls.cert_path",
            "holds no PEM certificate",
        );
        check_invalid(
            Some("[tls]\nclient_cert_required = \"maybe\"\n"),
            &[],
            &[],
            "tls.client_cert_required",
            "true or false",
        );
        for (key, env, bad, reason) in [
            (
                "limits.message_bytes_max",
                "SUANLI_LIMITS_MESSAGE_BYTES_MAX",
                "1024",
                "must be 65536",
            ),
            (
                "limits.registry_bytes_max",
                "SUANLI_LIMITS_REGISTRY_BYTES_MAX",
                "2147483648",
                "must be 65536 to 1073741824",
            ),
            (
                "limits.batch_records_max",
                "SUANLI_LIMITS_BATCH_RECORDS_MAX",
                "0",
                "must be 1 to",
            ),
            (
                "limits.batch_records_max",
                "SUANLI_LIMITS_BATCH_RECORDS_MAX",
                "ten",
                "whole number",
            ),
            (
                "limits.token_requests_per_minute",
                "SUANLI_LIMITS_TOKEN_REQUESTS_PER_MINUTE",
                "-1",
                "whole number",
            ),
            (
                "limits.token_request_burst",
                "SUANLI_LIMITS_TOKEN_REQUEST_BURST",
                "0",
                "must be 1 to",
            ),
            (
                "limits.concurrent_requests_max",
                "SUANLI_LIMITS_CONCURRENT_REQUESTS_MAX",
                "0",
                "must be 1 to",
            ),
            (
                "limits.request_deadline_ms",
                "SUANLI_LIMITS_REQUEST_DEADLINE_MS",
                "0",
                "must be 1 to",
            ),
            (
                "limits.request_deadline_ms",
                "SUANLI_LIMITS_REQUEST_DEADLINE_MS",
                "3600001",
                "must be 1 to",
            ),
            (
                "limits.credential_streams_max",
                "SUANLI_LIMITS_CREDENTIAL_STREAMS_MAX",
                "0",
                "must be 1 to",
            ),
            (
                "limits.credential_calls_max",
                "SUANLI_LIMITS_CREDENTIAL_CALLS_MAX",
                "0",
                "must be 1 to",
            ),
            (
                "limits.stream_idle_secs",
                "SUANLI_LIMITS_STREAM_IDLE_SECS",
                "0",
                "must be 1 to",
            ),
        ] {
            check_invalid(None, &[(env, bad)], &[], key, reason);
        }
        check_invalid(
            Some("[limits]\nbatch_size = 5\n"),
            &[],
            &[],
            "limits.batch_size",
            "unknown key",
        );
        check_invalid(Some("addr = \"x\"\n"), &[], &[], "addr", "expected a table");
        check_invalid(
            Some("[limits]\nbatch_records_max = 1.5\n"),
            &[],
            &[],
            "limits.batch_records_max",
            "got a float",
        );
        check_invalid(Some("[server\n"), &[], &[], "(file)", "not valid TOML");
        let e = run(Some("[limits]\nbatch_records_max = 0\n"), &[], &[]).unwrap_err();
        assert_eq!(e.origin, Source::File(PathBuf::from("suanli.toml")), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    // The suanli.toml inside the Kubernetes ConfigMap uses only known keys with valid values
    // (its TLS paths exist only in the pod, so they are checked for shape, not presence).
    #[test]
    fn the_k8s_configmap_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/configmap.yaml");
        let yaml = std::fs::read_to_string(&path).expect("deploy/k8s/configmap.yaml exists");
        let (_, block) = yaml
            .split_once("suanli.toml: |\n")
            .expect("the ConfigMap embeds suanli.toml");
        let text: String = block
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let values = file_values(&path, &text).expect("only known keys");
        assert!(values.contains_key("server.health_addr"), "probes need it");
        let without_tls: String = text
            .lines()
            .filter(|l| !l.contains("_path"))
            .map(|l| format!("{l}\n"))
            .collect();
        run(Some(&without_tls), &[], &[]).expect("the ConfigMap's values are valid");
    }

    // The shipped example file is complete (every key, nothing unknown) and valid as it stands.
    #[test]
    fn the_deploy_example_is_complete_and_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/suanli.toml");
        let text = std::fs::read_to_string(&path).expect("deploy/suanli.toml exists");
        let values = file_values(&path, &text).expect("every key in the example is known");
        // TLS paths point at files that exist only on a server, and single sign-on needs a
        // provider of one's own, so they are commented out; every other key is set explicitly.
        for k in KEYS
            .iter()
            .filter(|k| !k.name.starts_with("tls.") && !k.name.starts_with("auth.oidc."))
        {
            assert!(values.contains_key(k.name), "the example sets {}", k.name);
            assert!(
                text.contains(k.env),
                "the example mentions {} for {}",
                k.env,
                k.name
            );
        }
        run(Some(&text), &[], &[]).expect("the example is valid");
    }

    // Payments need no second person unless the threshold is set; then it is read in fen from
    // the file or the environment (the environment wins).
    #[test]
    fn payment_confirm_threshold() {
        assert_eq!(run(None, &[], &[]).unwrap().payment_confirm_above_fen, None);
        let file = "[ledger]\npayment_confirm_above_fen = 10_000_000\n";
        assert_eq!(
            run(Some(file), &[], &[]).unwrap().payment_confirm_above_fen,
            Some(10_000_000)
        );
        assert_eq!(
            run(
                Some(file),
                &[("SUANLI_LEDGER_PAYMENT_CONFIRM_ABOVE_FEN", "0")],
                &[]
            )
            .unwrap()
            .payment_confirm_above_fen,
            Some(0)
        );
    }

    // Single sign-on is read from [auth.oidc] in the file or from the environment, with a
    // client secret given inline or in a file; without an issuer it is off.
    #[test]
    fn oidc_keys_from_file_and_env() {
        assert_eq!(run(None, &[], &[]).unwrap().oidc, None);
        let file = "[auth.oidc]\nissuer_url = \"https://id.example.org/realms/city\"\n\
                    client_id = \"suanli\"\nclient_secret = \"s3cret\"\n\
                    redirect_url = \"https://console.example.org/signin/sso/callback\"\n";
        let c = run(Some(file), &[], &[])
            .unwrap()
            .oidc
            .expect("sso configured");
        assert_eq!(c.issuer_url, "https://id.example.org/realms/city");
        assert_eq!(c.client_id, "suanli");
        assert_eq!(c.client_secret.expose(), "s3cret");
        assert_eq!(
            c.redirect_url,
            "https://console.example.org/signin/sso/callback"
        );
        assert_eq!(c.user_claim, UserClaim::Email, "the default claim");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the secret is never printed"
        );

        let dir = std::env::temp_dir().join(format!("suanli-oidc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret_file = dir.join("secret");
        std::fs::write(&secret_file, "from-a-file\n").unwrap();
        let secret_path = secret_file.to_str().unwrap();
        let env = [
            ("SUANLI_AUTH_OIDC_ISSUER_URL", "http://localhost:9000"),
            ("SUANLI_AUTH_OIDC_CLIENT_ID", "console"),
            ("SUANLI_AUTH_OIDC_CLIENT_SECRET_PATH", secret_path),
            (
                "SUANLI_AUTH_OIDC_REDIRECT_URL",
                "http://127.0.0.1:8080/signin/sso/callback",
            ),
            ("SUANLI_AUTH_OIDC_USER_CLAIM", "preferred_username"),
        ];
        let c = run(None, &env, &[]).unwrap().oidc.expect("sso configured");
        assert_eq!(c.client_secret.expose(), "from-a-file", "one line, trimmed");
        assert_eq!(c.user_claim, UserClaim::PreferredUsername);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Each wrong single sign-on setting is refused naming its key.
    #[test]
    fn oidc_keys_invalid() {
        let good = [
            ("SUANLI_AUTH_OIDC_ISSUER_URL", "https://id.example.org"),
            ("SUANLI_AUTH_OIDC_CLIENT_ID", "suanli"),
            ("SUANLI_AUTH_OIDC_CLIENT_SECRET", "s3cret"),
            (
                "SUANLI_AUTH_OIDC_REDIRECT_URL",
                "https://console.example.org/signin/sso/callback",
            ),
        ];
        run(None, &good, &[]).expect("the good settings are valid");
        let with = |key: &'static str, value: &'static str| {
            let mut env: Vec<(&str, &str)> =
                good.iter().filter(|(k, _)| *k != key).copied().collect();
            if !value.is_empty() {
                env.push((key, value));
            }
            env
        };
        let dir = std::env::temp_dir().join(format!("suanli-oidc-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let two_lines_file = dir.join("two-lines");
        std::fs::write(&two_lines_file, "a\nb\n").unwrap();
        let two_lines_text = two_lines_file.to_string_lossy().into_owned();
        let two_lines = two_lines_text.as_str();
        for (env, key, reason) in [
            (
                with("SUANLI_AUTH_OIDC_ISSUER_URL", "http://id.example.org"),
                "auth.oidc.issuer_url",
                "must use https",
            ),
            (
                with("SUANLI_AUTH_OIDC_ISSUER_URL", "id.example.org"),
                "auth.oidc.issuer_url",
                "is not a URL",
            ),
            (
                with("SUANLI_AUTH_OIDC_CLIENT_ID", ""),
                "auth.oidc.client_id",
                "must be set with auth.oidc.issuer_url",
            ),
            (
                with("SUANLI_AUTH_OIDC_CLIENT_SECRET", ""),
                "auth.oidc.client_secret",
                "must be set",
            ),
            (
                {
                    let mut e = good.to_vec();
                    e.push(("SUANLI_AUTH_OIDC_CLIENT_SECRET_PATH", two_lines));
                    e
                },
                "auth.oidc.client_secret_path",
                "not both",
            ),
            (
                {
                    let mut e = with("SUANLI_AUTH_OIDC_CLIENT_SECRET", "");
                    e.push(("SUANLI_AUTH_OIDC_CLIENT_SECRET_PATH", two_lines));
                    e
                },
                "auth.oidc.client_secret_path",
                "on one line",
            ),
            (
                with(
                    "SUANLI_AUTH_OIDC_REDIRECT_URL",
                    "https://console.example.org/callback",
                ),
                "auth.oidc.redirect_url",
                "/signin/sso/callback",
            ),
            (
                with(
                    "SUANLI_AUTH_OIDC_REDIRECT_URL",
                    "http://console.example.org/signin/sso/callback",
                ),
                "auth.oidc.redirect_url",
                "must use https",
            ),
            (
                {
                    let mut e = good.to_vec();
                    e.push(("SUANLI_AUTH_OIDC_USER_CLAIM", "sub"));
                    e
                },
                "auth.oidc.user_claim",
                "not email or preferred_username",
            ),
            (
                vec![("SUANLI_AUTH_OIDC_CLIENT_ID", "suanli")],
                "auth.oidc.client_id",
                "needs auth.oidc.issuer_url",
            ),
        ] {
            check_invalid(None, &env, &[], key, reason);
        }
        check_invalid(
            Some("[auth.oidc]\nclient = \"x\"\n"),
            &[],
            &[],
            "auth.oidc.client",
            "unknown key",
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // The console listens on 127.0.0.1:8080 by default, moves with the flag, and "off" or an
    // empty value turns it off; a clash with another listener names the key.
    #[test]
    fn http_addr_default_flag_and_off() {
        assert_eq!(
            run(None, &[], &[]).unwrap().http_addr.unwrap().to_string(),
            "127.0.0.1:8080"
        );
        let c = run(None, &[], &[("--http-addr", "127.0.0.1:0")]).unwrap();
        assert_eq!(c.http_addr.unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(
            run(None, &[("SUANLI_HTTP_ADDR", "off")], &[])
                .unwrap()
                .http_addr,
            None
        );
        assert_eq!(
            run(Some("[server]\nhttp_addr = \"\"\n"), &[], &[])
                .unwrap()
                .http_addr,
            None
        );
        let e = run(None, &[], &[("--http-addr", "127.0.0.1:50051")]).unwrap_err();
        assert_eq!(e.key, "server.http_addr");
        let e = run(None, &[], &[("--http-addr", "nonsense")]).unwrap_err();
        assert_eq!(e.key, "server.http_addr");
    }
}
