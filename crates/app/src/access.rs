//! Who may act: a token's stored row (principal, expiry, revocation), read in its own
//! transaction. The server decides from it whether a credential is still good.

use suanli_store::Store;
use suanli_store::tokens::{self, TokenRow};
use suanli_store::users::{self, UserRow};

/// The stored row of the token whose sha256 (hex) is `token_hash`, if any.
pub fn token(store: &mut dyn Store, token_hash: &str) -> suanli_store::Result<Option<TokenRow>> {
    let mut row = None;
    store.transaction(&mut |tx| {
        row = tokens::lookup(tx, token_hash)?;
        Ok(())
    })?;
    Ok(row)
}

/// The stored row of the user `user_id`, if any: a console session re-reads it to end when the
/// user is disabled and to follow a changed role.
pub fn user(store: &mut dyn Store, user_id: i64) -> suanli_store::Result<Option<UserRow>> {
    let mut row = None;
    store.transaction(&mut |tx| {
        row = users::by_id(tx, user_id)?;
        Ok(())
    })?;
    Ok(row)
}

/// The stored row of the user who signs in as `login`, if any.
pub fn user_by_login(store: &mut dyn Store, login: &str) -> suanli_store::Result<Option<UserRow>> {
    let mut row = None;
    store.transaction(&mut |tx| {
        row = users::by_login(tx, login)?;
        Ok(())
    })?;
    Ok(row)
}

/// Notes that `user_id` signed in to the console now, for the admins' user list. Not audited:
/// it records an access, not a change anyone made.
pub fn note_sign_in(store: &mut dyn Store, user_id: i64) -> suanli_store::Result<()> {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    store.transaction(&mut |tx| users::set_last_signin(tx, user_id, &at))
}

/// The people whose email is `email` (ignoring ASCII case): a single sign-on that names users
/// by email maps to one of them.
pub fn users_by_email(store: &mut dyn Store, email: &str) -> suanli_store::Result<Vec<UserRow>> {
    let mut rows = Vec::new();
    store.transaction(&mut |tx| {
        rows = users::by_email(tx, email)?;
        Ok(())
    })?;
    Ok(rows)
}
