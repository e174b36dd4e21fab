//! Named users: create, list, disable, enable, change role, set a password. Every change is
//! audited in its own transaction. Disabling a user refuses its tokens (the token lookup joins
//! the user) and console sessions once the server re-reads them.

use chrono::Utc;
use suanli_store::users::{self, NewUser, UserRow};
use suanli_store::{Principal, Store};

use crate::audit::Actor;
use crate::password;
use crate::settlement::SettleError;

type Result<T> = std::result::Result<T, SettleError>;

/// Longest login.
pub const LOGIN_CHARS_MAX: usize = 64;
/// Longest display name.
pub const NAME_CHARS_MAX: usize = 100;

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn invalid(message: String) -> SettleError {
    SettleError::InvalidArgument(message)
}

/// A login: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit; `svc-` is reserved for
/// the generated service accounts of `suanli token create --role`.
pub fn check_login(login: &str) -> Result<()> {
    let ok = !login.is_empty()
        && login.len() <= LOGIN_CHARS_MAX
        && login.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && login
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(invalid(format!(
            "login {login:?}: expected 1 to {LOGIN_CHARS_MAX} of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )));
    }
    if login.starts_with("svc-") {
        return Err(invalid(format!(
            "login {login:?}: the prefix svc- is reserved for generated service accounts"
        )));
    }
    Ok(())
}

/// A display name: 1 to 100 characters, not only spaces, without control characters.
pub fn check_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "name {name:?}: expected 1 to {NAME_CHARS_MAX} characters without control characters"
        )));
    }
    Ok(())
}

/// An e-mail address: something like `a@b`, without spaces or control characters.
pub fn check_email(email: &str) -> Result<()> {
    if !email.contains('@') || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "email {email:?}: expected an address like a@b"
        )));
    }
    Ok(())
}

/// A user to create.
#[derive(Clone, Debug)]
pub struct CreateUser {
    pub login: String,
    pub name: String,
    pub principal: Principal,
    pub email: Option<String>,
    /// A service account of a machine client: it never has a password.
    pub service: bool,
    pub password: Option<String>,
}

/// Creates a user; refuses a taken login.
pub fn create(store: &mut dyn Store, who: &Actor, new: &CreateUser) -> Result<UserRow> {
    check_login(&new.login)?;
    check_name(&new.name)?;
    if let Some(email) = &new.email {
        check_email(email)?;
    }
    let password_hash = match (&new.password, new.service) {
        (Some(_), true) => {
            return Err(invalid(format!(
                "user {:?}: a service account has no password",
                new.login
            )));
        }
        (Some(p), false) => {
            if let Some(why) = password::policy_violation(&new.login, p) {
                return Err(invalid(why));
            }
            Some(password::hash(p))
        }
        (None, _) => None,
    };
    let row = NewUser {
        login: new.login.clone(),
        name: new.name.trim().to_owned(),
        principal: new.principal.clone(),
        email: new.email.clone(),
        password_hash,
        service: new.service,
        created_at: now(),
    };
    let mut created = None;
    store.transaction(&mut |tx| {
        if users::by_login(tx, &row.login)?.is_some() {
            return Ok(());
        }
        let user_id = users::insert(tx, &row)?;
        who.record(
            tx,
            "user.create",
            &format!("user:{user_id}"),
            &[
                &row.login,
                &row.name,
                row.principal.role(),
                row.principal.subject(),
                row.email.as_deref().unwrap_or(""),
                if row.service { "service" } else { "person" },
            ],
        )?;
        created = users::by_id(tx, user_id)?;
        Ok(())
    })?;
    created.ok_or_else(|| SettleError::AlreadyExists(format!("login {:?} is taken", new.login)))
}

/// Every user, by login.
pub fn list(store: &mut dyn Store) -> Result<Vec<UserRow>> {
    let mut all = Vec::new();
    store.transaction(&mut |tx| {
        all = users::list(tx)?;
        Ok(())
    })?;
    Ok(all)
}

/// The user of `login`.
pub fn by_login(store: &mut dyn Store, login: &str) -> Result<UserRow> {
    let mut found = None;
    store.transaction(&mut |tx| {
        found = users::by_login(tx, login)?;
        Ok(())
    })?;
    found.ok_or_else(|| SettleError::NotFound(format!("no user has the login {login:?}")))
}

/// A change to one user inside its transaction: what the audit entry hashes, or `None` when
/// nothing changed.
type Change<'a> = dyn FnMut(&mut dyn suanli_store::sql::Sql, &UserRow) -> suanli_store::Result<Option<Vec<String>>>
    + 'a;

/// Applies `change` to the user of `login` and audits it as `action` in one transaction;
/// `change` returns what the audit entry hashes, or `None` when nothing changed (no entry).
fn change(
    store: &mut dyn Store,
    who: &Actor,
    login: &str,
    action: &str,
    change: &mut Change<'_>,
) -> Result<(UserRow, bool)> {
    let mut outcome = None;
    store.transaction(&mut |tx| {
        let Some(user) = users::by_login(tx, login)? else {
            return Ok(());
        };
        let changed = change(tx, &user)?;
        if let Some(fields) = &changed {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            who.record(tx, action, &format!("user:{}", user.user_id), &fields)?;
        }
        let after = users::by_id(tx, user.user_id)?.unwrap_or(user);
        outcome = Some((after, changed.is_some()));
        Ok(())
    })?;
    outcome.ok_or_else(|| SettleError::NotFound(format!("no user has the login {login:?}")))
}

/// Disables a user: its tokens and console sessions are refused once a server re-reads them
/// (`limits.token_recheck_secs`). Returns the user and whether this call disabled it.
pub fn disable(store: &mut dyn Store, who: &Actor, login: &str) -> Result<(UserRow, bool)> {
    let at = now();
    change(store, who, login, "user.disable", &mut |tx, user| {
        Ok(users::set_disabled(tx, user.user_id, Some(&at))?.then(|| vec![at.clone()]))
    })
}

/// Enables a disabled user again. Returns the user and whether this call enabled it.
pub fn enable(store: &mut dyn Store, who: &Actor, login: &str) -> Result<(UserRow, bool)> {
    change(store, who, login, "user.enable", &mut |tx, user| {
        Ok(users::set_disabled(tx, user.user_id, None)?.then(Vec::new))
    })
}

/// Changes a user's role and subject, and those of its tokens.
pub fn set_role(
    store: &mut dyn Store,
    who: &Actor,
    login: &str,
    principal: &Principal,
) -> Result<(UserRow, bool)> {
    change(store, who, login, "user.set_role", &mut |tx, user| {
        if user.principal == *principal {
            return Ok(None);
        }
        users::set_role(tx, user.user_id, principal)?;
        Ok(Some(vec![
            principal.role().to_owned(),
            principal.subject().to_owned(),
        ]))
    })
}

/// Enrols `user_id`'s authenticator: its TOTP secret (base32), checked by the caller against a
/// code from the app. Audited without the secret.
pub fn enrol_totp(store: &mut dyn Store, who: &Actor, user_id: i64, secret: &str) -> Result<()> {
    let mut found = false;
    store.transaction(&mut |tx| {
        found = users::by_id(tx, user_id)?.is_some();
        if found {
            users::set_totp(tx, user_id, Some(secret))?;
            who.record(tx, "user.totp_enrol", &format!("user:{user_id}"), &[])?;
        }
        Ok(())
    })?;
    if found {
        Ok(())
    } else {
        Err(SettleError::NotFound(format!(
            "user {user_id} does not exist"
        )))
    }
}

/// Removes a user's TOTP secret (a lost phone): the next password sign-in enrols again where
/// `auth.require_totp_for` asks for it. Returns the user and whether it had one.
pub fn reset_totp(store: &mut dyn Store, who: &Actor, login: &str) -> Result<(UserRow, bool)> {
    change(store, who, login, "user.totp_reset", &mut |tx, user| {
        if user.totp_secret.is_none() {
            return Ok(None);
        }
        users::set_totp(tx, user.user_id, None)?;
        Ok(Some(Vec::new()))
    })
}

/// Sets a user's password: `password`, or a new one-time password when `None`. Returns the
/// password set. A service account has none.
pub fn reset_password(
    store: &mut dyn Store,
    who: &Actor,
    login: &str,
    password: Option<&str>,
) -> Result<String> {
    let user = by_login(store, login)?;
    if user.service {
        return Err(SettleError::FailedPrecondition(format!(
            "user {login:?} is a service account; it signs in with tokens only"
        )));
    }
    let password = password.map_or_else(password::generate, str::to_owned);
    if let Some(why) = password::policy_violation(login, &password) {
        return Err(invalid(why));
    }
    let hash = password::hash(&password);
    change(store, who, login, "user.reset_password", &mut |tx, user| {
        users::set_password(tx, user.user_id, &hash)?;
        // The hash is not written to the audit log: the entry says that, not what, it changed.
        Ok(Some(Vec::new()))
    })?;
    Ok(password)
}
