//! Who did what, for the audit log: the [`Actor`] of a request (the same actor string the
//! settlement fields carry), request ids, and appending an entry inside a store transaction.
//! Chaining is the domain's (`suanli_domain::audit`), the rows the store's.

use chrono::Utc;
use suanli_domain::audit::{NewEntry, digest};
use suanli_store::Principal;
use suanli_store::sql::Sql;
use suanli_store::users::UserRef;

/// Longest `x-request-id` kept as sent; a longer or non-ASCII one is replaced by a new id.
pub const REQUEST_ID_CHARS_MAX: usize = 128;

/// Who acts and under which request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The person as shown wherever an action is named (run fields, payments, voids, registry
    /// loads): `财务一号 (finance1)`, the user's name and login. Without a user (a client
    /// certificate, a token stored without one): role and subject, or role and the first 12
    /// hex digits of the token hash; `operator:<user>` for commands run on the database
    /// directly.
    pub actor: String,
    /// The user acting, when the credential belongs to one.
    pub user: Option<UserRef>,
    pub role: String,
    pub request_id: String,
}

/// How a user is shown as an actor: `name (login)`. Logins never change and hold no
/// parentheses or spaces, so [`person_of`] reads the login back from the end.
pub fn user_display(user: &UserRef) -> String {
    format!("{} ({})", user.name, user.login)
}

/// The person a stored actor string names, for four eyes: the login of `name (login)`, or the
/// whole string for actors without a user. Comparing logins rather than whole strings keeps
/// four eyes between persons when a user's display name changes between two actions.
pub fn person_of(actor: &str) -> &str {
    actor
        .strip_suffix(')')
        .and_then(|rest| rest.rfind(" (").map(|i| &rest[i + 2..]))
        .filter(|login| !login.is_empty() && !login.contains([' ', '(', ')']))
        .unwrap_or(actor)
}

impl Actor {
    /// The actor of `user`, whose credential speaks for `principal`.
    pub fn of_user(principal: &Principal, user: &UserRef, request_id: String) -> Actor {
        Actor {
            actor: user_display(user),
            user: Some(user.clone()),
            role: principal.role().to_owned(),
            request_id,
        }
    }

    /// Whether the stored actor `other` names the same person as this actor (four eyes).
    pub fn same_person(&self, other: &str) -> bool {
        person_of(other) == person_of(&self.actor)
    }

    /// Whether the earlier actor stored as `other`, with the user id `other_user_id`, is this
    /// actor's person (four eyes): two users compare by id; otherwise by [`person_of`].
    pub fn same_person_as(&self, other: &str, other_user_id: Option<i64>) -> bool {
        match (self.user.as_ref().map(|u| u.user_id), other_user_id) {
            (Some(me), Some(them)) => me == them,
            _ => self.same_person(other),
        }
    }

    /// The acting user's id, if the credential belongs to one.
    pub fn user_id(&self) -> Option<i64> {
        self.user.as_ref().map(|u| u.user_id)
    }

    /// The actor as the audit log records it: `user:<id> name (login)` for a user, so the entry
    /// names the user by id in a stable form that a display name cannot imitate (`person_of`
    /// of a display name could); otherwise the actor string itself.
    pub fn audit_actor(&self) -> String {
        match &self.user {
            Some(user) => format!("user:{} {}", user.user_id, self.actor),
            None => self.actor.clone(),
        }
    }

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
            user: None,
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
            user: None,
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
                actor: self.audit_actor(),
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

#[cfg(test)]
mod tests {
    use super::*;

    // Four eyes compares logins: a renamed user is still the same person, two users with the
    // same name are not, and actors without a user compare whole.
    #[test]
    fn persons_are_compared_by_login() {
        let user = |id, login: &str, name: &str| UserRef {
            user_id: id,
            login: login.to_owned(),
            name: name.to_owned(),
        };
        let a = Actor::of_user(
            &Principal::Finance,
            &user(1, "finance1", "财务一号"),
            "r".into(),
        );
        assert_eq!(a.actor, "财务一号 (finance1)");
        assert_eq!(a.audit_actor(), "user:1 财务一号 (finance1)");
        assert!(a.same_person("财务 (老) 一号 (finance1)"));
        assert!(!a.same_person("财务一号 (finance2)"));
        assert!(!a.same_person("finance:15265539de1f"));
        assert_eq!(person_of("finance:15265539de1f"), "finance:15265539de1f");
        assert_eq!(person_of("x (a b)"), "x (a b)");
        // With user ids on both sides the ids decide, whatever the names say.
        assert!(a.same_person_as("someone else (other)", Some(1)));
        assert!(!a.same_person_as("财务一号 (finance1)", Some(2)));
        assert!(a.same_person_as("财务一号 (finance1)", None));
    }
}
