//! Authentication: bearer tokens, and client certificates over TLS. The interceptor hashes the
//! token of every request (only sha256 hashes are stored) or, without a token, takes the
//! provider id from the verified client certificate's subject CN; then it applies the
//! per-credential rate limit. Services resolve the credential to a [`Principal`] through a cache
//! that falls back to the store, so tokens created by `suanli token create` while the server
//! runs work at once. A cached principal carries its token's expiry and is re-read from the
//! store after [`TOKEN_RECHECK_SECS_DEFAULT`] s, so a revoked token is refused within that time;
//! the metering service asks again for every batch of an open stream, so this holds for
//! streams as for unary calls.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use sha2::{Digest, Sha256};
use suanli_store::Principal;
use suanli_store::users::UserRef;
use tonic::{Request, Status};

use crate::limits::{RateLimiter, count};
use crate::metrics::LIMIT_RATE;
use suanli_app::audit::{Actor, REQUEST_ID_CHARS_MAX, new_request_id};
use suanli_app::ingest::Writer;

/// The sha256 hex of the bearer token, put in the request's extensions by [`interceptor`].
#[derive(Clone, Debug)]
pub struct TokenHash(pub String);

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `sl_` and 32 random bytes in hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("sl_{}", hex::encode(bytes))
}

/// The provider id a verified client certificate stands for, put in the request's extensions
/// by [`Interceptor`] when the request has no bearer token.
#[derive(Clone, Debug)]
pub struct CertProvider(pub String);

/// The subject Common Name of a DER certificate: the provider id of a client certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The credential a call presents: the sha256 hex of its bearer token, or the subject CN of
/// the client certificate TLS verified (when the call has no token). The rate limit and the
/// per-credential limits on calls and streams (`limits.rs`) count under [`Credential::key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Token(String),
    Certificate(String),
}

impl Credential {
    /// Identifies the credential from the `authorization` header (its raw bytes) and the peer
    /// certificates TLS verified against the client CA; a token, when given, wins.
    pub fn identify(
        authorization: Option<&[u8]>,
        peer_certs: Option<&[tonic::transport::CertificateDer<'_>]>,
    ) -> Result<Credential, Status> {
        match authorization {
            Some(value) => {
                // Visible ASCII only, as an HTTP header's `to_str` accepts.
                let token = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Status::unauthenticated(
                            "malformed authorization header: expected \"Bearer <token>\"",
                        )
                    })?;
                Ok(Credential::Token(hash_token(token)))
            }
            None => peer_certs
                .and_then(|certs| certs.first().and_then(|c| common_name(c)))
                .filter(|cn| !cn.trim().is_empty())
                .map(Credential::Certificate)
                .ok_or_else(|| {
                    Status::unauthenticated(
                        "missing authorization header: expected \"Bearer <token>\" or a client certificate",
                    )
                }),
        }
    }

    /// The key limits count under; a certificate's is prefixed so that it cannot equal a hash.
    pub fn key(&self) -> String {
        match self {
            Credential::Token(hash) => hash.clone(),
            Credential::Certificate(provider) => format!("cert:{provider}"),
        }
    }
}

/// Rejects requests without a credential (a bearer token, or a client certificate verified by
/// the configured client CA), records the credential, and applies the per-credential rate limit.
#[derive(Clone)]
pub struct Interceptor {
    limiter: Arc<RateLimiter>,
}

impl Interceptor {
    pub fn new(limiter: Arc<RateLimiter>) -> Interceptor {
        Interceptor { limiter }
    }
}

impl tonic::service::Interceptor for Interceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let certs = request.peer_certs();
        let credential = Credential::identify(
            request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes()),
            certs.as_deref().map(Vec::as_slice),
        )?;
        let key = credential.key();
        match credential {
            Credential::Token(hash) => {
                request.extensions_mut().insert(TokenHash(hash));
            }
            Credential::Certificate(provider) => {
                request.extensions_mut().insert(CertProvider(provider));
            }
        }
        if !self.limiter.admit(&key, Instant::now()) {
            count(LIMIT_RATE);
            return Err(Status::resource_exhausted(
                "rate limit: too many calls with this credential; retry with backoff",
            ));
        }
        Ok(request)
    }
}

/// How long a cached principal is trusted before its token is read again by default: a token
/// revoked with `suanli token revoke` (which writes the database directly) is refused at most
/// this long after. Expiry needs no re-read: the cache entry carries it.
pub const TOKEN_RECHECK_SECS_DEFAULT: u64 = 30;

/// Who a credential speaks for: the principal (role and subject) and, for a token, its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    /// The token's user; `None` for a client certificate or a token stored without a user.
    pub user: Option<UserRef>,
}

/// A principal resolved from the store, and when that was.
struct Cached {
    identity: Identity,
    expires_at: Option<DateTime<Utc>>,
    checked_at: Instant,
}

/// Resolves token hashes to principals; refuses unknown, revoked and expired tokens and the
/// tokens of disabled users.
pub struct Authenticator {
    writer: Writer,
    cache: RwLock<HashMap<String, Cached>>,
    recheck: Duration,
}

fn expired(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_some_and(|e| e <= now)
}

impl Authenticator {
    /// `recheck`: how long a cached principal is trusted before its token is read again.
    pub fn new(writer: Writer, recheck: Duration) -> Authenticator {
        Authenticator {
            writer,
            cache: RwLock::new(HashMap::new()),
            recheck,
        }
    }

    /// How long a cached principal is trusted before it is read again.
    pub fn recheck(&self) -> Duration {
        self.recheck
    }

    pub async fn principal(&self, extensions: &tonic::Extensions) -> Result<Principal, Status> {
        Ok(self.identity(extensions).await?.principal)
    }

    /// The principal and user of a request's credential.
    pub async fn identity(&self, extensions: &tonic::Extensions) -> Result<Identity, Status> {
        if extensions.get::<TokenHash>().is_none()
            && let Some(CertProvider(provider)) = extensions.get::<CertProvider>()
        {
            return Ok(Identity {
                principal: Principal::Provider(provider.clone()),
                user: None,
            });
        }
        let hash = extensions
            .get::<TokenHash>()
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?
            .0
            .clone();
        self.of_token_hash(&hash).await
    }

    /// The identity of the token of sha256 `hash` (hex), from the cache while it is fresh.
    pub async fn of_token_hash(&self, hash: &str) -> Result<Identity, Status> {
        let hash = hash.to_owned();
        if let Some(c) = self.cache.read().expect("auth cache lock").get(&hash) {
            if expired(c.expires_at, Utc::now()) {
                return Err(Status::unauthenticated("token expired"));
            }
            if c.checked_at.elapsed() < self.recheck {
                return Ok(c.identity.clone());
            }
        }
        let lookup = hash.clone();
        let found = self
            .writer
            .call(move |store| suanli_app::access::token(store, &lookup))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(|e| Status::internal(format!("token lookup: {e}")))?;
        let refused = |message: &'static str| {
            self.cache.write().expect("auth cache lock").remove(&hash);
            Err(Status::unauthenticated(message))
        };
        let Some(row) = found else {
            return refused("unknown token");
        };
        if row.revoked_at.is_some() {
            return refused("token revoked");
        }
        if row.user_disabled_at.is_some() {
            return refused("the token's user is disabled");
        }
        let expires_at = match row.expires_at.as_deref().map(DateTime::parse_from_rfc3339) {
            None => None,
            Some(Ok(t)) => Some(t.with_timezone(&Utc)),
            Some(Err(_)) => return refused("token has an unreadable expiry"),
        };
        if expired(expires_at, Utc::now()) {
            return refused("token expired");
        }
        let identity = Identity {
            principal: row.principal,
            user: row.user,
        };
        self.cache.write().expect("auth cache lock").insert(
            hash,
            Cached {
                identity: identity.clone(),
                expires_at,
                checked_at: Instant::now(),
            },
        );
        Ok(identity)
    }
}

/// The actor of a gRPC request made with `identity`'s credential: its user when it has one; the
/// request's `x-request-id` when it is short ASCII, a new one otherwise.
pub fn actor_of_request(
    identity: &Identity,
    extensions: &tonic::Extensions,
    metadata: &tonic::metadata::MetadataMap,
) -> Actor {
    let hash = extensions
        .get::<TokenHash>()
        .map(|h| h.0.clone())
        .unwrap_or_default();
    let request_id = metadata
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= REQUEST_ID_CHARS_MAX)
        .map_or_else(new_request_id, str::to_owned);
    match &identity.user {
        Some(user) => Actor::of_user(&identity.principal, user, request_id),
        None => Actor::of_token(&identity.principal, &hash, request_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A bearer token is identified by its hash (either capitalisation of the scheme), a missing
    // or malformed header without a certificate is UNAUTHENTICATED, and the limits' keys of a
    // token and a certificate cannot collide.
    #[test]
    fn credentials_are_identified() {
        let hash = hash_token("sl_abc");
        for header in ["Bearer sl_abc", "bearer  sl_abc "] {
            assert_eq!(
                Credential::identify(Some(header.as_bytes()), None).unwrap(),
                Credential::Token(hash.clone()),
                "{header:?}"
            );
        }
        for bad in [
            &b"Basic x"[..],
            b"Bearer ",
            b"Bearer sl_\xff",
            b"Bearer a\nb",
        ] {
            let e = Credential::identify(Some(bad), None).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad:?}");
            assert!(e.message().contains("malformed"), "{e:?}");
        }
        let e = Credential::identify(None, None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("missing"), "{e:?}");
        assert_eq!(Credential::Token(hash.clone()).key(), hash);
        assert_eq!(Credential::Certificate("dc-a".into()).key(), "cert:dc-a");
    }
}
