//! Bearer-token authentication. The interceptor hashes the token of every request (only
//! sha256 hashes are stored); services resolve the hash to a [`Principal`] through a cache that
//! falls back to the store, so tokens created by `suanli token create` while the server runs
//! work at once.

use std::collections::HashMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};
use suanli_store::Principal;
use tonic::{Request, Status};

use crate::writer::Writer;

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

/// Rejects requests without a bearer token and records the token's hash.
#[allow(
    clippy::result_large_err,
    reason = "tonic's interceptor signature returns Status"
)]
pub fn interceptor(mut request: Request<()>) -> Result<Request<()>, Status> {
    let value = request.metadata().get("authorization").ok_or_else(|| {
        Status::unauthenticated("missing authorization header: expected \"Bearer <token>\"")
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Status::unauthenticated("malformed authorization header: expected \"Bearer <token>\"")
        })?;
    let hash = hash_token(token);
    request.extensions_mut().insert(TokenHash(hash));
    Ok(request)
}

/// Resolves token hashes to principals.
pub struct Authenticator {
    writer: Writer,
    cache: RwLock<HashMap<String, Principal>>,
}

impl Authenticator {
    pub fn new(writer: Writer) -> Authenticator {
        Authenticator {
            writer,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub async fn principal(&self, extensions: &tonic::Extensions) -> Result<Principal, Status> {
        let hash = extensions
            .get::<TokenHash>()
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?
            .0
            .clone();
        if let Some(p) = self.cache.read().expect("auth cache lock").get(&hash) {
            return Ok(p.clone());
        }
        let lookup = hash.clone();
        let found = self
            .writer
            .call(move |store| store.token_lookup(&lookup))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(|e| Status::internal(format!("token lookup: {e}")))?;
        let principal = found.ok_or_else(|| Status::unauthenticated("unknown token"))?;
        self.cache
            .write()
            .expect("auth cache lock")
            .insert(hash, principal.clone());
        Ok(principal)
    }
}
