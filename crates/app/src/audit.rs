//! Who did what, for the audit log: the [`Actor`] of a request (the same actor string the
//! settlement fields carry), request ids, and appending an entry inside a store transaction.
//! Chaining is the domain's (`suanli_domain::audit`), the rows the store's.

use chrono::Utc;
use suanli_domain::audit::{NewEntry, digest};
use suanli_store::Principal;
use suanli_store::sql::Sql;

/// Longest `x-request-id` kept as sent; a longer or non-ASCII one is replaced by a new id.
pub const REQUEST_ID_CHARS_MAX: usize = 128;

/// Who acts and under which request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Role and subject, or role and the first 12 hex digits of the token hash (so two finance
    /// users are told apart); `operator:<user>` for commands run on the database directly.
    pub actor: String,
    pub role: String,
    pub request_id: String,
}

impl Actor {
    /// The actor of `principal` acting with the token of sha256 `token_hash` (hex): the gRPC
    /// services and the web console name the same user the same way, so four eyes holds across
    /// both.
    pub fn of_token(principal: &Principal, token_hash: &str, request_id: String) -> Actor {
        let actor = match principal.subject() {
            "" => format!(
                "{}:{}",
                principal.role(),
                &token_hash[..token_hash.len().min(12)]
            ),
            subject => format!("{}:{subject}", principal.role()),
        };
        Actor {
            actor,
            role: principal.role().to_owned(),
            request_id,
        }
    }

    /// A command run directly on the database (`suanli token …`): whoever holds the database
    /// credentials, named by the operating-system user.
    pub fn operator() -> Actor {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        Actor {
            actor: format!("operator:{user}"),
            role: "operator".to_owned(),
            request_id: new_request_id(),
        }
    }

    /// Appends an entry for `action` on `subject`; `changed` lists what changed (hashed into
    /// the entry's digest). Runs inside the caller's transaction.
    pub fn record(
        &self,
        tx: &mut dyn Sql,
        action: &str,
        subject: &str,
        changed: &[&str],
    ) -> suanli_store::Result<()> {
        suanli_store::audit::append(
            tx,
            NewEntry {
                actor: self.actor.clone(),
                role: self.role.clone(),
                action: action.to_owned(),
                subject: subject.to_owned(),
                at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                request_id: self.request_id.clone(),
                digest: digest(changed),
            },
        )
        .map(|_| ())
    }
}

/// A new request id: `req_` and 16 random bytes in hex.
pub fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("req_{}", hex::encode(bytes))
}
