//! The web console: server-rendered HTML over HTTP (axum) for enterprises, providers, city
//! finance and auditors, served by `suanli serve` next to gRPC (`server.http_addr`), over HTTPS
//! with the server's certificate when it has TLS settings (`https.rs`). People
//! sign in with their login and password (Argon2id, throttled per login and per address, see
//! `throttle.rs`) or through the organisation's OpenID Provider (`sso.rs`, `auth.oidc.*`);
//! service accounts and scripts may sign in with an API token, checked by the
//! same [`Authenticator`](crate::auth::Authenticator) on every request (so revocation, expiry
//! and disabled users apply as in the API). A password session re-reads its user after
//! `limits.token_recheck_secs`, so disabling a user ends its sessions within that time (a
//! single sign-on session likewise). The
//! session is a random id in an HttpOnly, SameSite=Strict cookie (Secure behind TLS), mapped
//! here to the user or the token's hash. Every state-changing
//! form is a POST carrying the session's CSRF token. Roles are the gRPC services' rules; the
//! use cases are `settle.rs`'s. No JavaScript is needed; no Node at build or run time.

mod account;
mod charts;
mod codes;
mod explain;
mod form;
mod format;
pub mod https;
mod i18n;
mod lists;
mod pages;
mod payments;
mod sso;
mod throttle;
mod users;
mod view;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use suanli_store::Principal;
use tokio::net::TcpListener;

use crate::auth::{Identity, hash_token};
use crate::grpc::Shared;
use suanli_app::audit::{Actor, new_request_id};
use suanli_app::ingest::WriterError;
use suanli_app::settlement::{self as settle, SettleError};

pub use codes::Code;
pub use form::{FIELD_CHARS_MAX, FORM_BYTES_MAX, FieldError, Form};
pub use format::cny;
pub use i18n::Lang;
pub use sso::Sso;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "suanli_session";
/// The language cookie's name (`zh` or `en`).
pub const LANG_COOKIE: &str = "suanli_lang";
/// Most sessions kept at once; the least recently used one is dropped beyond it.
pub const SESSIONS_MAX: usize = 10_000;
/// A session ends after this long without a request, and in any case after the maximum age.
pub const SESSION_IDLE_SECS: u64 = 8 * 3600;
pub const SESSION_AGE_SECS_MAX: u64 = 24 * 3600;
/// Longest API token accepted by the sign-in form, in characters.
pub const TOKEN_CHARS_MAX: usize = 200;

/// What a session signed in with.
#[derive(Clone)]
enum SignedInWith {
    /// An API token (service accounts, scripts): checked by the authenticator on every request.
    Token(String),
    /// A person, by password or single sign-on: the user as last read, re-read after the
    /// recheck time.
    User {
        identity: Identity,
        checked_at: Instant,
        via: Via,
    },
}

/// How a person signed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Password,
    /// OpenID Connect: the identity provider owns the second factor.
    Sso,
}

/// One signed-in browser.
struct Session {
    with: SignedInWith,
    /// The user signed in, for the list of a user's sessions.
    user_id: Option<i64>,
    /// A public name of the session for that list and its revoke button: the id itself is
    /// the cookie's secret and never appears in a page.
    handle: String,
    client: Option<IpAddr>,
    /// The user must enrol an authenticator (`auth.require_totp_for`) before anything else.
    must_enrol: bool,
    /// The TOTP secret shown for enrolment, until a code from it is confirmed.
    pending_totp: Option<String>,
    csrf: String,
    created_at: Instant,
    seen_at: Instant,
}

/// How the console is reached and who needs a second factor.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    /// The address the console listens on: password sign-in over plain HTTP is allowed only
    /// on a loopback address, unless `trust_proxy_tls`.
    pub local_addr: SocketAddr,
    /// `server.trust_proxy_tls`: a TLS-terminating proxy is in front; cookies are `Secure` and
    /// the client address is the last `X-Forwarded-For` entry.
    pub trust_proxy_tls: bool,
    /// The console itself serves HTTPS (the server has TLS settings): cookies are `Secure` and
    /// password sign-in is allowed on any address.
    pub tls: bool,
    /// `auth.require_totp_for`: roles whose password sign-in also needs a one-time code.
    pub require_totp_for: Vec<String>,
}

impl ConsoleOptions {
    /// Whether the browser reaches the console over HTTPS: cookies get `Secure`.
    fn secure(&self) -> bool {
        self.tls || self.trust_proxy_tls
    }

    /// Whether secrets (passwords, single sign-on) may be sent here: over HTTPS, or over plain
    /// HTTP on a loopback address only.
    fn safe_transport(&self) -> bool {
        self.secure() || self.local_addr.ip().is_loopback()
    }
}

/// What `serve` is told besides the listener.
pub struct ConsoleSettings {
    /// `server.trust_proxy_tls`.
    pub trust_proxy_tls: bool,
    /// `auth.require_totp_for`.
    pub require_totp_for: Vec<String>,
    /// The server's TLS settings as a rustls configuration ([`https::server_config`]): the
    /// console serves HTTPS with them.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// `auth.oidc.*`: single sign-on.
    pub sso: Option<Sso>,
}

/// The console's state: the server's shared services and the sessions.
pub struct Console {
    shared: Arc<Shared>,
    sessions: Mutex<HashMap<String, Session>>,
    throttle: throttle::Throttle,
    options: ConsoleOptions,
    /// The last TOTP step each user signed in or enrolled with: a code is used once.
    totp_steps: Mutex<HashMap<i64, u64>>,
    /// Single sign-on, when `auth.oidc.*` is configured.
    sso: Option<sso::Sso>,
}

/// Why a password sign-in was refused; each has its own message and metric reason. A wrong
/// password and an unknown login are one refusal, so the answer does not tell whether a login
/// exists.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    WrongLoginOrPassword,
    LockedOut(Duration),
    Disabled,
    Insecure,
    /// The user has an authenticator and sent no code.
    CodeNeeded,
    /// A wrong, expired or already used code.
    WrongCode,
}

/// Seconds since the Unix epoch, for TOTP.
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who is asking, in which language.
pub struct Ctx {
    pub lang: Lang,
    /// Set when `?lang=` asked to switch: the response sets the cookie.
    pub set_lang: bool,
    pub principal: Option<Principal>,
    pub actor: Option<Actor>,
    /// The client's address: the peer, or behind a trusted proxy its `X-Forwarded-For`.
    pub client: Option<IpAddr>,
    /// The session must enrol an authenticator before anything else.
    pub must_enrol: bool,
    /// Single sign-on is configured: the sign-in page offers it.
    pub sso: bool,
    /// The browser's single sign-on flow cookie (the `state` it started), if any.
    pub sso_flow: Option<String>,
    pub csrf: String,
    pub session_id: Option<String>,
    pub path: String,
    /// The query string without `lang`, so the language switch keeps the page's filters.
    pub query_without_lang: String,
}

impl Ctx {
    fn principal(&self) -> &Principal {
        self.principal.as_ref().expect("a signed-in page")
    }
}

/// Why a console request was refused: each becomes an HTTP status and a readable page (or
/// the form again, with the error next to its field). The English message is the detail for
/// logs and English pages; the code is what every page shows, in its language.
#[derive(Debug)]
pub enum ConsoleError {
    /// No valid session: pages redirect to the sign-in form; posts get 401.
    SignIn(String),
    Forbidden(Code, String),
    Field(FieldError, StatusCode),
    NotFound(String),
    Unavailable(String),
    /// A page would wait for the figures the server prepares at start, for this long so far.
    Preparing(Duration),
}

impl ConsoleError {
    fn field(field: &str, code: Code, message: impl Into<String>) -> ConsoleError {
        ConsoleError::Field(
            FieldError::new(field, code, message),
            StatusCode::BAD_REQUEST,
        )
    }

    /// The HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::SignIn(_) => StatusCode::UNAUTHORIZED,
            ConsoleError::Forbidden(..) => StatusCode::FORBIDDEN,
            ConsoleError::Field(_, status) => *status,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Unavailable(_) | ConsoleError::Preparing(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The refusal as a field error (the field at fault, its code and detail), for the pages
    /// that show it next to the field.
    pub fn as_field(&self) -> FieldError {
        match self {
            ConsoleError::SignIn(m) => FieldError::new("session", Code::SignInAgain, m.clone()),
            ConsoleError::Forbidden(code, m) => FieldError::new("role", *code, m.clone()),
            ConsoleError::Field(f, _) => f.clone(),
            ConsoleError::NotFound(m) => FieldError::new("path", Code::NoPage, m.clone()),
            ConsoleError::Unavailable(m) => FieldError::new("server", Code::Unavailable, m.clone()),
            ConsoleError::Preparing(since) => FieldError::new(
                "server",
                Code::Preparing,
                format!(
                    "the server is preparing the balance figures ({} s so far)",
                    since.as_secs()
                ),
            ),
        }
    }
}

impl From<FieldError> for ConsoleError {
    fn from(e: FieldError) -> ConsoleError {
        ConsoleError::Field(e, StatusCode::BAD_REQUEST)
    }
}

impl From<WriterError> for ConsoleError {
    fn from(e: WriterError) -> ConsoleError {
        ConsoleError::Unavailable(e.to_string())
    }
}

/// A use-case error as a console error naming `field` where the request's input was at fault,
/// with the refusal's code.
fn settle_error(e: SettleError, field: &str) -> ConsoleError {
    let code = Code::of_settle(&e);
    match e {
        SettleError::NotFound(m) => {
            ConsoleError::Field(FieldError::new(field, code, m), StatusCode::NOT_FOUND)
        }
        SettleError::InvalidArgument(m) => ConsoleError::field(field, code, m),
        SettleError::FailedPrecondition(m) | SettleError::AlreadyExists(m) => {
            ConsoleError::Field(FieldError::new(field, code, m), StatusCode::CONFLICT)
        }
        SettleError::PermissionDenied(m) => ConsoleError::Forbidden(code, m),
        SettleError::Store(e) => ConsoleError::Unavailable(format!("store: {e}")),
        SettleError::Unavailable(m) => ConsoleError::Unavailable(m),
    }
}

const FINANCE: &[&str] = &["finance"];
const READERS: &[&str] = &["finance", "auditor", "admin"];

/// The role rule of the gRPC services: one of `allowed`, else 403 naming what was refused.
fn require(p: &Principal, allowed: &[&str], what: &str) -> Result<(), ConsoleError> {
    if allowed.contains(&p.role()) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            Code::RoleRefused,
            format!(
                "{what} needs one of the roles {}; you are signed in as {}",
                allowed.join(", "),
                p.role()
            ),
        ))
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Constant-time equality of two short secrets.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

impl Console {
    pub fn new(shared: Arc<Shared>, options: ConsoleOptions, sso: Option<Sso>) -> Console {
        Console {
            shared,
            sessions: Mutex::new(HashMap::new()),
            throttle: throttle::Throttle::default(),
            options,
            totp_steps: Mutex::new(HashMap::new()),
            sso,
        }
    }

    /// Whether `code` is a fresh code of `secret` for `user_id`: valid now and of a later step
    /// than the last one the user used. A fresh code's step is remembered.
    fn fresh_code(&self, user_id: i64, secret: &str, code: &str) -> bool {
        let Some(step) = suanli_app::totp::matching_step(secret, code, unix_secs()) else {
            return false;
        };
        let mut steps = self.totp_steps.lock().expect("totp lock");
        if steps.get(&user_id).is_some_and(|last| step <= *last) {
            return false;
        }
        steps.insert(user_id, step);
        true
    }

    /// Signs `login` in with `password` from `client`; returns the new session's id. Checks,
    /// in order: the transport, the lock-outs of the login and the address, the password
    /// (hashing a dummy for an unknown login or one without a password, so both take as long
    /// as a wrong password), and last whether the user is disabled — only someone who knows
    /// the password learns that.
    async fn sign_in_password(
        &self,
        login: &str,
        password: &str,
        code: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<String, Refusal> {
        use crate::metrics::{
            SIGNIN_DISABLED, SIGNIN_FAILURES, SIGNIN_INSECURE, SIGNIN_LOCKED, SIGNIN_WRONG,
            SIGNIN_WRONG_CODE,
        };
        let refuse = |reason: &str, refusal: Refusal| {
            SIGNIN_FAILURES.with_label_values(&[reason]).inc();
            Err(refusal)
        };
        if !self.options.safe_transport() {
            return refuse(SIGNIN_INSECURE, Refusal::Insecure);
        }
        let login_key = format!("login:{login}");
        let address_key = client.map(|a| format!("addr:{a}"));
        let now = Instant::now();
        let locked = self
            .throttle
            .locked(&login_key, throttle::LOGIN_FAILURES_MAX, now)
            .or_else(|| {
                address_key
                    .as_deref()
                    .and_then(|k| self.throttle.locked(k, throttle::ADDRESS_FAILURES_MAX, now))
            });
        if let Some(left) = locked {
            return refuse(SIGNIN_LOCKED, Refusal::LockedOut(left));
        }
        let wanted = login.to_owned();
        let user = self
            .shared
            .writer
            .call(move |store| suanli_app::access::user_by_login(store, &wanted))
            .await
            .map_err(|_| Refusal::WrongLoginOrPassword)?
            .map_err(|_| Refusal::WrongLoginOrPassword)?;
        let stored = user
            .as_ref()
            .filter(|u| !u.service)
            .and_then(|u| u.password_hash.clone());
        let given = password.to_owned();
        // Argon2 takes tens of milliseconds of CPU: off the async threads.
        let matches = tokio::task::spawn_blocking(move || match stored {
            Some(hash) => suanli_app::password::verify(&given, &hash),
            None => {
                suanli_app::password::verify_dummy(&given);
                false
            }
        })
        .await
        .unwrap_or(false);
        let Some(user) = user.filter(|_| matches) else {
            let now = Instant::now();
            self.throttle.fail(&login_key, now);
            if let Some(k) = &address_key {
                self.throttle.fail(k, now);
            }
            return refuse(SIGNIN_WRONG, Refusal::WrongLoginOrPassword);
        };
        if user.disabled_at.is_some() {
            return refuse(SIGNIN_DISABLED, Refusal::Disabled);
        }
        // The second factor, for users who enrolled an authenticator.
        let mut must_enrol = false;
        match &user.totp_secret {
            Some(secret) => {
                let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
                    return Err(Refusal::CodeNeeded);
                };
                if !self.fresh_code(user.user_id, secret, code) {
                    let now = Instant::now();
                    self.throttle.fail(&login_key, now);
                    if let Some(k) = &address_key {
                        self.throttle.fail(k, now);
                    }
                    return refuse(SIGNIN_WRONG_CODE, Refusal::WrongCode);
                }
            }
            None => {
                must_enrol = self
                    .options
                    .require_totp_for
                    .iter()
                    .any(|r| r == user.principal.role());
            }
        }
        self.throttle.clear(&login_key);
        let identity = Identity {
            principal: user.principal.clone(),
            user: Some(user.user_ref()),
        };
        let id = self.new_session(
            SignedInWith::User {
                identity,
                checked_at: Instant::now(),
                via: Via::Password,
            },
            Some(user.user_id),
            client,
        );
        if must_enrol && let Some(s) = self.sessions.lock().expect("sessions lock").get_mut(&id) {
            s.must_enrol = true;
        }
        self.note_sign_in(user.user_id).await;
        Ok(id)
    }

    /// Remembers when a user last signed in (shown to admins); a failure only loses that.
    async fn note_sign_in(&self, user_id: i64) {
        let noted = self
            .shared
            .writer
            .call(move |store| suanli_app::access::note_sign_in(store, user_id))
            .await;
        if let Err(e) = noted
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(user_id, error = %e, "cannot note the sign-in time");
        }
    }

    /// The identity of a password session's user, re-read when the last read is older than
    /// the recheck time; `None` when the user is gone or disabled (the session ends).
    async fn user_identity(&self, identity: &Identity, checked_at: Instant) -> Option<Identity> {
        if checked_at.elapsed() < self.shared.auth.recheck() {
            return Some(identity.clone());
        }
        let user_id = identity.user.as_ref()?.user_id;
        let row = self
            .shared
            .writer
            .call(move |store| suanli_app::access::user(store, user_id))
            .await
            .ok()?
            .ok()??;
        (row.disabled_at.is_none()).then(|| Identity {
            principal: row.principal.clone(),
            user: Some(row.user_ref()),
        })
    }

    /// Resolves a token hash to its principal and user with the API's authenticator
    /// (revocation, expiry and disabled users included).
    async fn principal_of(&self, token_hash: &str) -> Result<Identity, String> {
        self.shared
            .auth
            .of_token_hash(token_hash)
            .await
            .map_err(|s| s.message().to_owned())
    }

    /// Creates a session for a valid token; returns its id.
    async fn sign_in(&self, token: &str, client: Option<IpAddr>) -> Result<String, String> {
        let hash = hash_token(token);
        let identity = self.principal_of(&hash).await?;
        let user_id = identity.user.map(|u| u.user_id);
        if let Some(user_id) = user_id {
            self.note_sign_in(user_id).await;
        }
        Ok(self.new_session(SignedInWith::Token(hash), user_id, client))
    }

    /// Stores a new session; returns its id.
    fn new_session(
        &self,
        with: SignedInWith,
        user_id: Option<i64>,
        client: Option<IpAddr>,
    ) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, s| alive(s, now));
        if sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.seen_at)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                with,
                user_id,
                handle: random_hex()[..16].to_owned(),
                client,
                must_enrol: false,
                pending_totp: None,
                csrf: random_hex(),
                created_at: now,
                seen_at: now,
            },
        );
        id
    }

    fn sign_out(&self, id: &str) {
        self.sessions.lock().expect("sessions lock").remove(id);
    }

    /// The context of a request: language, and the signed-in principal if the session is
    /// alive and its token still valid (a revoked or expired token ends the session).
    async fn context(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        path: &str,
        raw_query: &str,
        query: &Form,
    ) -> Ctx {
        // Behind a trusted proxy the peer is the proxy: the client is the entry it appended.
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        let client = match (self.options.trust_proxy_tls, forwarded) {
            (true, Some(ip)) => Some(ip),
            _ => peer.map(|p| p.ip()),
        };
        let asked = query.optional("lang").and_then(Lang::parse);
        let lang = asked
            .or_else(|| {
                cookie(headers, LANG_COOKIE)
                    .as_deref()
                    .and_then(Lang::parse)
            })
            .unwrap_or(Lang::Zh);
        let mut ctx = Ctx {
            lang,
            set_lang: asked.is_some(),
            principal: None,
            actor: None,
            client,
            must_enrol: false,
            sso: self.sso.is_some(),
            sso_flow: cookie(headers, sso::FLOW_COOKIE),
            csrf: String::new(),
            session_id: None,
            path: path.to_owned(),
            query_without_lang: raw_query
                .split('&')
                .filter(|kv| !kv.is_empty() && !kv.starts_with("lang="))
                .collect::<Vec<_>>()
                .join("&"),
        };
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return ctx;
        };
        let now = Instant::now();
        let found = {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            match sessions.get_mut(&id) {
                Some(s) if alive(s, now) => {
                    s.seen_at = now;
                    Some((s.with.clone(), s.csrf.clone(), s.must_enrol))
                }
                Some(_) => {
                    sessions.remove(&id);
                    None
                }
                None => None,
            }
        };
        let Some((with, csrf, must_enrol)) = found else {
            return ctx;
        };
        let (identity, hash) = match &with {
            SignedInWith::Token(hash) => (self.principal_of(hash).await, hash.clone()),
            SignedInWith::User {
                identity,
                checked_at,
                via,
            } => {
                let fresh = self.user_identity(identity, *checked_at).await;
                if let Some(fresh) = &fresh
                    && fresh.user.is_some()
                    && checked_at.elapsed() >= self.shared.auth.recheck()
                    && let Some(s) = self.sessions.lock().expect("sessions lock").get_mut(&id)
                {
                    s.with = SignedInWith::User {
                        identity: fresh.clone(),
                        checked_at: Instant::now(),
                        via: *via,
                    };
                }
                (
                    fresh.ok_or_else(|| "the user is disabled".to_owned()),
                    String::new(),
                )
            }
        };
        match identity {
            Ok(Identity { principal, user }) => {
                let request_id = headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.len() <= suanli_app::audit::REQUEST_ID_CHARS_MAX)
                    .map_or_else(new_request_id, str::to_owned);
                ctx.actor = Some(match &user {
                    Some(user) => Actor::of_user(&principal, user, request_id),
                    None => Actor::of_token(&principal, &hash, request_id),
                });
                ctx.principal = Some(principal);
                ctx.csrf = csrf;
                ctx.must_enrol = must_enrol;
                ctx.session_id = Some(id);
            }
            Err(_) => self.sign_out(&id),
        }
        ctx
    }

    /// Runs `f` on the server's maintained balance figures, beside the writer
    /// (`Shared::balances`).
    async fn balances<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut suanli_app::balances::BalanceReader) -> R + Send + 'static,
    ) -> Result<R, ConsoleError> {
        self.balances_as(false, f).await
    }

    /// As [`Console::balances`], for a page that reads every beneficiary's figures (the
    /// finance overview, the enterprise list): the balance thread catches up beside the
    /// look-ups first, so they do not wait behind it.
    async fn balances_whole<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut suanli_app::balances::BalanceReader) -> R + Send + 'static,
    ) -> Result<R, ConsoleError> {
        self.balances_as(true, f).await
    }

    /// While the figures prepared at start are not ready, a page (a GET) waits for them at
    /// most [`PREPARING_WAIT`] and then says what the server is doing, refreshing itself,
    /// instead of hanging (on PostgreSQL at 10,000,000 records, 14-16 s). A form's post
    /// waits: what was typed is not lost to a refresh.
    async fn balances_as<R: Send + 'static>(
        &self,
        whole: bool,
        f: impl FnOnce(&mut suanli_app::balances::BalanceReader) -> R + Send + 'static,
    ) -> Result<R, ConsoleError> {
        let balances = &self.shared.balances;
        let call = balances.call_as(whole, f);
        let page = PAGE_REQUEST.try_with(|page| *page).unwrap_or(false);
        let answer = if page && balances.preparing_for().is_some() {
            match tokio::time::timeout(PREPARING_WAIT, call).await {
                Ok(answer) => answer,
                // The job stays queued; it reads nothing the next request does not read again.
                Err(_) => {
                    return Err(ConsoleError::Preparing(
                        balances.preparing_for().unwrap_or(PREPARING_WAIT),
                    ));
                }
            }
        } else {
            call.await
        };
        answer.map_err(|e| settle_error(e, "beneficiary"))
    }

    async fn store<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn suanli_store::Store) -> R + Send + 'static,
    ) -> Result<R, ConsoleError> {
        Ok(self.shared.writer.call(f).await?)
    }
}

tokio::task_local! {
    /// Whether the request being answered is a page (a GET), not a form's post.
    static PAGE_REQUEST: bool;
}

/// How long a page waits for the figures prepared at start before it says they are being
/// prepared.
const PREPARING_WAIT: Duration = Duration::from_secs(1);
/// The preparing page's refresh, in seconds (its `Retry-After`, and its meta refresh).
const PREPARING_REFRESH_SECS: &str = "5";

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.seen_at) < Duration::from_secs(SESSION_IDLE_SECS)
        && now.duration_since(s.created_at) < Duration::from_secs(SESSION_AGE_SECS_MAX)
}

/// An HTML response with the console's security headers (and the language cookie if switched).
fn html(ctx: &Ctx, status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    if ctx.set_lang {
        set_lang_cookie(h, ctx.lang);
    }
    r
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn set_lang_cookie(h: &mut HeaderMap, lang: Lang) {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
        lang.code()
    )) {
        h.append(header::SET_COOKIE, v);
    }
}

fn redirect(ctx: &Ctx, to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    security_headers(r.headers_mut());
    if ctx.set_lang {
        set_lang_cookie(r.headers_mut(), ctx.lang);
    }
    r
}

fn error_response(ctx: &Ctx, method: &Method, e: ConsoleError) -> Response {
    match e {
        ConsoleError::Preparing(since) => {
            let mut r = html(ctx, e.status(), pages::preparing_page(ctx, since));
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(PREPARING_REFRESH_SECS),
            );
            r
        }
        ConsoleError::SignIn(message) if *method == Method::GET => {
            let _ = message;
            redirect(ctx, "/signin")
        }
        ConsoleError::Unavailable(message) => {
            tracing::error!(error = %message, "console request failed");
            let e = ConsoleError::Unavailable(message);
            html(
                ctx,
                e.status(),
                pages::error_page(ctx, e.status(), &e.as_field()),
            )
        }
        e => html(
            ctx,
            e.status(),
            pages::error_page(ctx, e.status(), &e.as_field()),
        ),
    }
}

/// The stylesheet, embedded in the binary.
const CSS: &str = include_str!("assets/console.css");
/// The icon browsers show in the tab (also at `/favicon.ico`, which they ask for unbidden).
const ICON: &str = include_str!("assets/icon.svg");

async fn dispatch(State(console): State<Arc<Console>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or("");
    let query = Form::parse(raw_query.as_bytes()).unwrap_or_default();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<https::Peer>>()
        .map(|c| c.0.0);
    let ctx = console
        .context(&parts.headers, peer, &path, raw_query, &query)
        .await;
    let asset = match path.as_str() {
        "/assets/console.css" => Some((CSS, "text/css; charset=utf-8")),
        "/assets/icon.svg" | "/favicon.ico" => Some((ICON, "image/svg+xml")),
        _ => None,
    };
    if let Some((text, content_type)) = asset {
        let mut r = text.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=3600"),
        );
        return r;
    }
    let body = if method == Method::POST {
        match axum::body::to_bytes(body, FORM_BYTES_MAX).await {
            Ok(b) => b,
            Err(_) => {
                return error_response(
                    &ctx,
                    &method,
                    ConsoleError::Field(
                        FieldError::new(
                            "form",
                            Code::FormTooLarge,
                            format!("body is larger than {FORM_BYTES_MAX} bytes"),
                        ),
                        StatusCode::PAYLOAD_TOO_LARGE,
                    ),
                );
            }
        }
    } else {
        Default::default()
    };
    let answer = PAGE_REQUEST.scope(
        method == Method::GET,
        route(&console, &ctx, &method, &path, &query, &body),
    );
    match answer.await {
        Ok(r) => r,
        Err(e) => error_response(&ctx, &method, e),
    }
}

/// Parses a POST body and checks the session and its CSRF token.
fn posted(ctx: &Ctx, body: &[u8]) -> Result<Form, ConsoleError> {
    if ctx.principal.is_none() {
        return Err(ConsoleError::SignIn(
            "not signed in, or the session ended; sign in again".into(),
        ));
    }
    let form = Form::parse(body)?;
    match form.optional("csrf") {
        Some(t) if same_secret(t, &ctx.csrf) => Ok(form),
        Some(_) => Err(ConsoleError::Forbidden(
            Code::CsrfMismatch,
            "csrf: the form's token does not match this session; reload the page".into(),
        )),
        None => Err(ConsoleError::Forbidden(
            Code::CsrfMissing,
            "csrf: the form carries no token; reload the page".into(),
        )),
    }
}

fn signed_in(ctx: &Ctx) -> Result<&Principal, ConsoleError> {
    ctx.principal
        .as_ref()
        .ok_or_else(|| ConsoleError::SignIn("not signed in".into()))
}

fn run_id_of(text: &str) -> Result<i64, ConsoleError> {
    text.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| {
        ConsoleError::field(
            "run",
            Code::RunNotANumber,
            format!("{text:?} is not a run number"),
        )
    })
}

async fn route(
    console: &Arc<Console>,
    ctx: &Ctx,
    method: &Method,
    path: &str,
    query: &Form,
    body: &[u8],
) -> Result<Response, ConsoleError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // A user who must enrol an authenticator reaches only the account page and sign-out.
    if ctx.must_enrol
        && !matches!(
            segments.as_slice(),
            ["account", ..] | ["signout"] | ["signin"]
        )
    {
        if *method == Method::GET {
            return Ok(redirect(ctx, "/account"));
        }
        return Err(ConsoleError::Forbidden(
            Code::EnrolFirst,
            "enrol an authenticator on the account page first".into(),
        ));
    }
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["account"]) => {
            signed_in(ctx)?;
            let body = console.account_page(ctx, None).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        ("POST", ["account", "totp"]) => {
            let form = posted(ctx, body)?;
            match console.enrol_totp(ctx, form.required("code")?).await {
                Ok(()) => Ok(redirect(ctx, "/account")),
                Err(e @ ConsoleError::Field(..)) => {
                    let page = console.account_page(ctx, Some(e.as_field())).await?;
                    Ok(html(ctx, e.status(), page))
                }
                Err(e) => Err(e),
            }
        }
        ("POST", ["account", "sessions", "revoke"]) => {
            let form = posted(ctx, body)?;
            match console.revoke_session(ctx, form.required("session")?) {
                Ok(()) => Ok(redirect(ctx, "/account")),
                Err(e @ ConsoleError::Field(..)) => {
                    let page = console.account_page(ctx, Some(e.as_field())).await?;
                    Ok(html(ctx, e.status(), page))
                }
                Err(e) => Err(e),
            }
        }
        ("GET", [""]) => {
            let p = signed_in(ctx)?;
            Ok(redirect(ctx, home_of(p)))
        }
        ("GET", ["signin"]) => Ok(html(ctx, StatusCode::OK, pages::signin_page(ctx, None, ""))),
        ("GET", ["signin", "sso"]) => {
            let sso = console.sso.as_ref().ok_or_else(sso_off)?;
            if !console.options.safe_transport() {
                let message = pages::tr(ctx, "signin.insecure_sso");
                return Ok(html(
                    ctx,
                    StatusCode::FORBIDDEN,
                    pages::signin_page(ctx, Some(("sso", "sso_insecure", message)), ""),
                ));
            }
            match sso.start(ctx.client).await {
                Ok((url, state)) => {
                    let mut r = redirect(ctx, &url);
                    set_flow_cookie(&mut r, &state, console.options.secure());
                    Ok(r)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "single sign-on: the identity provider cannot be reached");
                    crate::metrics::SSO_REFUSALS
                        .with_label_values(&[crate::metrics::SSO_PROVIDER])
                        .inc();
                    let message = format!("{} ({e})", pages::tr(ctx, "sso.unreachable"));
                    Ok(html(
                        ctx,
                        StatusCode::SERVICE_UNAVAILABLE,
                        pages::signin_page(ctx, Some(("sso", "unavailable", &message)), ""),
                    ))
                }
            }
        }
        ("GET", ["signin", "sso", "callback"]) => {
            let sso = console.sso.as_ref().ok_or_else(sso_off)?;
            // The provider's answer, with its longer values (see `Form::parse_with`).
            let answer = Form::parse_with(
                ctx.query_without_lang.as_bytes(),
                sso::CALLBACK_FIELD_CHARS_MAX,
            )?;
            let outcome = match sso.finish(&answer, ctx.sso_flow.as_deref()).await {
                Ok(claimed) => console.sign_in_sso(claimed, ctx.client).await?,
                Err(refusal) => Err(refusal),
            };
            match outcome {
                Ok(id) => {
                    // A page, not a redirect: the answer came from the provider's site, and
                    // a browser sends the SameSite=Strict session cookie only on a request
                    // this site starts, such as the page's own refresh.
                    let mut r = html(ctx, StatusCode::OK, pages::sso_done_page(ctx));
                    clear_flow_cookie(&mut r);
                    Ok(session_cookie(r, &id, console.options.secure()))
                }
                Err(refusal) => {
                    crate::metrics::SSO_REFUSALS
                        .with_label_values(&[refusal.reason()])
                        .inc();
                    tracing::info!(reason = refusal.reason(), refusal = ?refusal, "single sign-on refused");
                    let (status, message) = match &refusal {
                        sso::Refusal::State => (
                            StatusCode::BAD_REQUEST,
                            pages::tr(ctx, "sso.state").to_owned(),
                        ),
                        sso::Refusal::Provider(why) => (
                            StatusCode::UNAUTHORIZED,
                            format!("{} ({why})", pages::tr(ctx, "sso.provider")),
                        ),
                        sso::Refusal::NoClaim(claim) => (
                            StatusCode::FORBIDDEN,
                            format!("{} ({claim})", pages::tr(ctx, "sso.no_claim")),
                        ),
                        sso::Refusal::UnknownUser(who) => (
                            StatusCode::FORBIDDEN,
                            format!("{} ({who})", pages::tr(ctx, "sso.unknown_user")),
                        ),
                        sso::Refusal::Disabled(who) => (
                            StatusCode::FORBIDDEN,
                            format!("{} ({who})", pages::tr(ctx, "signin.disabled")),
                        ),
                    };
                    let mut r = html(
                        ctx,
                        status,
                        pages::signin_page(ctx, Some(("sso", "sso_refused", &message)), ""),
                    );
                    clear_flow_cookie(&mut r);
                    Ok(r)
                }
            }
        }
        ("POST", ["signin"]) if Form::parse(body)?.optional("token").is_none() => {
            let form = Form::parse(body)?;
            let login = form.required("login")?.trim().to_lowercase();
            let password = form.required("password")?;
            if login.chars().count() > suanli_app::users::LOGIN_CHARS_MAX {
                return Err(ConsoleError::field(
                    "login",
                    Code::TooLong,
                    format!(
                        "is longer than {} characters",
                        suanli_app::users::LOGIN_CHARS_MAX
                    ),
                ));
            }
            if password.chars().count() > suanli_app::password::PASSWORD_CHARS_MAX {
                return Err(ConsoleError::field(
                    "password",
                    Code::TooLong,
                    format!(
                        "is longer than {} characters",
                        suanli_app::password::PASSWORD_CHARS_MAX
                    ),
                ));
            }
            let code = form.optional("code");
            match console
                .sign_in_password(&login, password, code, ctx.client)
                .await
            {
                Ok(id) => Ok(session_cookie(
                    redirect(ctx, "/"),
                    &id,
                    console.options.secure(),
                )),
                Err(refusal) => {
                    let (status, field, code, message) = match refusal {
                        Refusal::WrongLoginOrPassword => (
                            StatusCode::UNAUTHORIZED,
                            "password",
                            "wrong_login_or_password",
                            pages::tr(ctx, "signin.wrong").to_owned(),
                        ),
                        Refusal::LockedOut(left) => (
                            StatusCode::TOO_MANY_REQUESTS,
                            "login",
                            "locked_out",
                            format!(
                                "{} ({} min)",
                                pages::tr(ctx, "signin.locked"),
                                left.as_secs().div_ceil(60)
                            ),
                        ),
                        Refusal::Disabled => (
                            StatusCode::FORBIDDEN,
                            "login",
                            "user_disabled",
                            pages::tr(ctx, "signin.disabled").to_owned(),
                        ),
                        Refusal::Insecure => (
                            StatusCode::FORBIDDEN,
                            "password",
                            "insecure_transport",
                            pages::tr(ctx, "signin.insecure").to_owned(),
                        ),
                        Refusal::CodeNeeded => (
                            StatusCode::UNAUTHORIZED,
                            "code",
                            "code_needed",
                            pages::tr(ctx, "signin.code_needed").to_owned(),
                        ),
                        Refusal::WrongCode => (
                            StatusCode::UNAUTHORIZED,
                            "code",
                            "code_wrong",
                            pages::tr(ctx, "signin.code_wrong").to_owned(),
                        ),
                    };
                    Ok(html(
                        ctx,
                        status,
                        pages::signin_page(ctx, Some((field, code, &message)), &login),
                    ))
                }
            }
        }
        ("POST", ["signin"]) => {
            let form = Form::parse(body)?;
            let token = form.required("token")?;
            if token.chars().count() > TOKEN_CHARS_MAX {
                return Err(ConsoleError::field(
                    "token",
                    Code::TooLong,
                    format!("is longer than {TOKEN_CHARS_MAX} characters"),
                ));
            }
            match console.sign_in(token, ctx.client).await {
                Ok(id) => Ok(session_cookie(
                    redirect(ctx, "/"),
                    &id,
                    console.options.secure(),
                )),
                Err(reason) => {
                    // The authenticator's reason is English: the page shows its code's text.
                    let code = Code::of_token_refusal(&reason);
                    let message = i18n::t(ctx.lang, &format!("code.{}", code.as_str()));
                    Ok(html(
                        ctx,
                        StatusCode::UNAUTHORIZED,
                        pages::signin_page(ctx, Some(("token", code.as_str(), message)), ""),
                    ))
                }
            }
        }
        ("POST", ["signout"]) => {
            posted(ctx, body)?;
            if let Some(id) = &ctx.session_id {
                console.sign_out(id);
            }
            let mut r = redirect(ctx, "/signin");
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "suanli_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict",
                ),
            );
            Ok(r)
        }
        ("GET", ["enterprise"]) => {
            let p = signed_in(ctx)?;
            let beneficiary = match (p, query.optional("beneficiary")) {
                (Principal::Beneficiary(own), None) => Some(own.clone()),
                (_, Some(b)) => Some(b.to_owned()),
                (_, None) => None,
            };
            if let Some(b) = &beneficiary {
                may_read_beneficiary(p, b)?;
            } else {
                require(p, READERS, "choosing a beneficiary")?;
            }
            let body = pages::enterprise(console, ctx, beneficiary, query).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        ("GET", ["enterprise", "statement.csv"]) => {
            let p = signed_in(ctx)?;
            let b = match (p, query.optional("beneficiary")) {
                (Principal::Beneficiary(own), None) => own.clone(),
                (_, Some(b)) => b.to_owned(),
                (_, None) => {
                    return Err(ConsoleError::field(
                        "beneficiary",
                        Code::Missing,
                        "is missing",
                    ));
                }
            };
            may_read_beneficiary(p, &b)?;
            let year = pages::year_of(query)?;
            let who = b.clone();
            let rows = console
                .store(move |s| settle::posted_statement(s, year, |l| l.key.beneficiary == who))
                .await?
                .map_err(|e| settle_error(e, "beneficiary"))?;
            Ok(csv_response(&format!("statement-{b}.csv"), &rows))
        }
        ("GET", ["provider"]) => {
            let p = signed_in(ctx)?;
            let provider = match (p, query.optional("provider")) {
                (Principal::Provider(own), None) => Some(own.clone()),
                (_, Some(x)) => Some(x.to_owned()),
                (_, None) => None,
            };
            if let Some(x) = &provider {
                may_read_provider(p, x)?;
            } else {
                require(p, READERS, "choosing a provider")?;
            }
            let body = pages::provider(console, ctx, provider, None).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        ("POST", ["provider", "void"]) => {
            let form = posted(ctx, body)?;
            let p = ctx.principal();
            let provider = match (p, form.optional("provider")) {
                (Principal::Provider(own), None) => own.clone(),
                (_, Some(x)) => x.to_owned(),
                (_, None) => {
                    return Err(ConsoleError::field("provider", Code::Missing, "is missing"));
                }
            };
            if !pages::may_void(p, &provider) {
                return Err(ConsoleError::Forbidden(
                    Code::RoleRefused,
                    format!(
                        "voiding {provider:?}'s usage records needs that provider or an administrator; you are signed in as {}",
                        p.role()
                    ),
                ));
            }
            match pages::void_record(console, ctx, &provider, &form).await {
                Ok(body) => Ok(html(ctx, StatusCode::OK, body)),
                Err(e @ ConsoleError::Field(..)) => {
                    let kept =
                        pages::Kept::of("void", &form, &["record_id", "reason"], e.as_field());
                    let page = pages::provider(console, ctx, Some(provider), Some(kept)).await?;
                    Ok(html(ctx, e.status(), page))
                }
                Err(e) => Err(e),
            }
        }
        ("GET", ["provider", "statement.csv"]) => {
            let p = signed_in(ctx)?;
            let x = match (p, query.optional("provider")) {
                (Principal::Provider(own), None) => own.clone(),
                (_, Some(x)) => x.to_owned(),
                (_, None) => {
                    return Err(ConsoleError::field("provider", Code::Missing, "is missing"));
                }
            };
            may_read_provider(p, &x)?;
            let year = pages::year_of(query)?;
            let who = x.clone();
            let rows = console
                .store(move |s| {
                    settle::posted_statement(s, year, |l| l.key.provider == who || l.payee == who)
                })
                .await?
                .map_err(|e| settle_error(e, "provider"))?;
            Ok(csv_response(&format!("statement-{x}.csv"), &rows))
        }
        ("GET", ["finance"]) => {
            let p = signed_in(ctx)?;
            require(p, READERS, "the finance pages")?;
            let body = pages::finance(console, ctx, query, None).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        // The explanation of a run's lines and the printable statement (`explain.rs`).
        ("GET", [area @ ("finance" | "enterprise"), "runs", id, "explain"]) => {
            signed_in(ctx)?;
            let id = run_id_of(id)?;
            let body = explain::explain_page(console, ctx, area, id, query).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        ("GET", ["finance", "runs", id, "statement"]) => {
            signed_in(ctx)?;
            let id = run_id_of(id)?;
            let body = explain::statement_page(console, ctx, id, query).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        ("GET", ["finance", "runs", id]) => {
            let p = signed_in(ctx)?;
            require(p, READERS, "reading a settlement run")?;
            let id = run_id_of(id)?;
            let shown = pages::RunLines::of(query)?;
            let body = pages::run_page(console, ctx, id, &shown, None, None).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        ("POST", ["finance", "runs"]) => {
            let form = posted(ctx, body)?;
            require(ctx.principal(), FINANCE, "creating a settlement run")?;
            match pages::create_run(console, ctx, &form).await {
                Ok(id) => Ok(redirect(ctx, &format!("/finance/runs/{id}"))),
                Err(e @ ConsoleError::Field(..)) => {
                    let kept = pages::Kept::of(
                        "create-run",
                        &form,
                        &["programme", "period"],
                        e.as_field(),
                    );
                    form_again(console, ctx, e.status(), kept).await
                }
                Err(e) => Err(e),
            }
        }
        ("POST", ["finance", "runs", id, action]) => {
            let form = posted(ctx, body)?;
            let what = match *action {
                "approve" => "approving a settlement run",
                "post" => "posting a settlement run",
                "cancel" => "cancelling a settlement run",
                _ => return Err(ConsoleError::NotFound(format!("no action {action:?}"))),
            };
            require(ctx.principal(), FINANCE, what)?;
            let id = run_id_of(id)?;
            match pages::run_action(console, ctx, id, action, form.optional("confirm")).await {
                Ok(Some(confirmation)) => Ok(html(ctx, StatusCode::OK, confirmation)),
                Ok(None) => Ok(redirect(ctx, &format!("/finance/runs/{id}"))),
                // The run's page again, the refusal beside its actions (a run that does not
                // exist has no page: the error page says so).
                Err(e @ (ConsoleError::Field(..) | ConsoleError::Forbidden(..))) => {
                    let shown = pages::RunLines::default_page();
                    match pages::run_page(console, ctx, id, &shown, None, Some(e.as_field())).await
                    {
                        Ok(page) => Ok(html(ctx, e.status(), page)),
                        Err(_) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
        ("POST", ["finance", "payments"]) => {
            let form = posted(ctx, body)?;
            require(ctx.principal(), FINANCE, "recording a payment")?;
            match pages::record_payment(console, ctx, &form).await {
                Ok(body) => Ok(html(ctx, StatusCode::OK, body)),
                Err(e @ ConsoleError::Field(..)) => {
                    let kept = pages::Kept::of(
                        "payment",
                        &form,
                        &["payee", "programme", "amount", "reference"],
                        e.as_field(),
                    );
                    form_again(console, ctx, e.status(), kept).await
                }
                Err(e) => Err(e),
            }
        }
        ("POST", ["finance", "payments", id, action]) => {
            posted(ctx, body)?;
            let what = match *action {
                "confirm" => "confirming a payment",
                "withdraw" => "withdrawing a payment",
                _ => return Err(ConsoleError::NotFound(format!("no action {action:?}"))),
            };
            require(ctx.principal(), FINANCE, what)?;
            let id = payments::payment_id_of(id)?;
            payments::payment_action(console, ctx, id, action).await?;
            Ok(redirect(ctx, "/finance"))
        }
        ("GET" | "POST", ["admin", "users", rest @ ..]) => {
            users::route(console, ctx, method, rest, query, body).await
        }
        ("GET", ["audit"]) => {
            let p = signed_in(ctx)?;
            require(p, READERS, "the journal and the trial balance")?;
            let (status, body) = pages::audit(console, ctx, query).await?;
            Ok(html(ctx, status, body))
        }
        ("POST", ["audit", "runs", id, "rederive"]) => {
            posted(ctx, body)?;
            require(ctx.principal(), READERS, "re-deriving a settlement run")?;
            let id = run_id_of(id)?;
            let body = pages::rederive(console, ctx, id).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        ("GET", list) if lists::serves(list) => lists::route(console, ctx, list, query).await,
        ("GET" | "POST", _) => Err(ConsoleError::NotFound(format!("no page {path}"))),
        _ => Err(ConsoleError::Field(
            FieldError::new(
                "method",
                Code::MethodNotServed,
                format!("{method} is not served; use GET or POST"),
            ),
            StatusCode::METHOD_NOT_ALLOWED,
        )),
    }
}

/// The finance page again with a refused form's input and its error next to the field.
async fn form_again(
    console: &Arc<Console>,
    ctx: &Ctx,
    status: StatusCode,
    kept: pages::Kept,
) -> Result<Response, ConsoleError> {
    let page = pages::finance(console, ctx, &Form::default(), Some(kept)).await?;
    Ok(html(ctx, status, page))
}

/// Where a role lands after sign-in.
fn home_of(p: &Principal) -> &'static str {
    match p {
        Principal::Beneficiary(_) => "/enterprise",
        Principal::Provider(_) => "/provider",
        Principal::Finance | Principal::Admin => "/finance",
        Principal::Auditor => "/audit",
    }
}

/// BalanceService::get_balance's rule: a beneficiary reads only its own; readers any.
fn may_read_beneficiary(p: &Principal, beneficiary: &str) -> Result<(), ConsoleError> {
    match p {
        Principal::Beneficiary(own) if own == beneficiary => Ok(()),
        Principal::Beneficiary(own) => Err(ConsoleError::Forbidden(
            Code::OtherParty,
            format!("beneficiary {own:?} cannot read {beneficiary:?}'s balance"),
        )),
        _ => require(p, READERS, "reading another party's balance"),
    }
}

/// BalanceService::get_payee's rule: a provider reads only its own; readers any.
fn may_read_provider(p: &Principal, provider: &str) -> Result<(), ConsoleError> {
    match p {
        Principal::Provider(own) if own == provider => Ok(()),
        Principal::Provider(own) => Err(ConsoleError::Forbidden(
            Code::OtherParty,
            format!("provider {own:?} cannot read what {provider:?} is owed"),
        )),
        _ => require(p, READERS, "reading another party's payables"),
    }
}

fn csv_response(file: &str, rows: &[[String; settle::RUN_STATEMENT_COLUMNS]]) -> Response {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut ok = w.write_record(settle::RUN_STATEMENT_HEADER).is_ok();
    for r in rows {
        ok &= w.write_record(r).is_ok();
    }
    let bytes = w.into_inner().unwrap_or_default();
    if !ok {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "statement could not be written",
        )
            .into_response();
    }
    let mut r = Response::new(Body::from(bytes));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let safe: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    security_headers(h);
    r
}

/// The answer to a single sign-on route when `auth.oidc.*` is not configured.
fn sso_off() -> ConsoleError {
    ConsoleError::NotFound("single sign-on is not configured (auth.oidc.issuer_url)".into())
}

/// Binds a single sign-on flow to this browser. SameSite=Lax, not Strict: the provider's
/// answer arrives as a navigation from its own site, which must carry the cookie.
fn set_flow_cookie(r: &mut Response, state: &str, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}={state}; Path=/signin/sso; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        sso::FLOW_COOKIE,
        sso::FLOW_SECS_MAX
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn clear_flow_cookie(r: &mut Response) {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; Path=/signin/sso; Max-Age=0; HttpOnly; SameSite=Lax",
        sso::FLOW_COOKIE
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Adds the session cookie: HttpOnly and SameSite=Strict always, `Secure` behind TLS.
fn session_cookie(mut r: Response, id: &str, tls: bool) -> Response {
    let secure = if tls { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Serves the console on `listener` until `shutdown` completes: over HTTPS when `settings.tls`
/// is set, else plain HTTP.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    settings: ConsoleSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let options = ConsoleOptions {
        local_addr: listener.local_addr()?,
        trust_proxy_tls: settings.trust_proxy_tls,
        tls: settings.tls.is_some(),
        require_totp_for: settings.require_totp_for,
    };
    let console = Arc::new(Console::new(shared, options, settings.sso));
    let app = axum::Router::new()
        .fallback(dispatch)
        .with_state(console)
        .into_make_service_with_connect_info::<https::Peer>();
    match settings.tls {
        Some(config) => {
            axum::serve(https::TlsListener::new(listener, config), app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    Ok(())
}
