//! Token lifetimes in storage, written once for both backends over [`Sql`]: when a token
//! expires and whether it was revoked, and the user it belongs to. Only sha256 hashes of tokens
//! are stored.

use crate::sql::{Sql, Value};
use crate::users::{self, UserRef};
use crate::{Principal, Result, StoreError};

/// A stored token: whom it speaks for, its lifetime and its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub token_hash: String,
    pub principal: Principal,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The user the token belongs to. On insert, `None` attaches the token to the generated
    /// service account of its principal ([`users::service_account`]).
    pub user: Option<UserRef>,
    /// When the token's user was disabled: a disabled user's tokens are refused.
    pub user_disabled_at: Option<String>,
    /// What the token is for ("ERP export"); empty when not said.
    pub label: String,
}

fn row_of(r: &[Value]) -> Result<TokenRow> {
    let (role, subject) = (r[1].text()?, r[2].text()?);
    let user = match r[6].opt_int()? {
        None => None,
        Some(user_id) => Some(UserRef {
            user_id,
            login: r[7].text()?,
            name: r[8].text()?,
        }),
    };
    Ok(TokenRow {
        token_hash: r[0].text()?,
        principal: Principal::from_parts(&role, &subject).ok_or_else(|| {
            StoreError::Corrupt(format!("token with role {role:?} and subject {subject:?}"))
        })?,
        created_at: r[3].text()?,
        expires_at: r[4].opt_text()?,
        revoked_at: r[5].opt_text()?,
        user,
        user_disabled_at: r[9].opt_text()?,
        label: r[10].text()?,
    })
}

/// The token's columns and its user's, from `tokens t LEFT JOIN users u`.
const COLUMNS: &str = "t.token_hash, t.role, t.subject, t.created_at, t.expires_at, t.revoked_at, \
                       u.user_id, u.login, u.name, u.disabled_at, t.label";
const FROM: &str = "tokens t LEFT JOIN users u ON u.user_id = t.user_id";

/// Inserts a token; without a user, it belongs to its principal's generated service account.
pub fn insert(tx: &mut dyn Sql, row: &TokenRow) -> Result<()> {
    let user_id = match &row.user {
        Some(user) => user.user_id,
        None => users::service_account(tx, &row.principal, &row.created_at)?.user_id,
    };
    tx.exec(
        "INSERT INTO tokens (token_hash, role, subject, created_at, expires_at, revoked_at, user_id, label) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            row.token_hash.as_str().into(),
            row.principal.role().into(),
            row.principal.subject().into(),
            row.created_at.as_str().into(),
            row.expires_at.clone().into(),
            row.revoked_at.clone().into(),
            user_id.into(),
            row.label.as_str().into(),
        ],
    )?;
    Ok(())
}

pub fn lookup(tx: &mut dyn Sql, token_hash: &str) -> Result<Option<TokenRow>> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM {FROM} WHERE t.token_hash = $1"),
        &[token_hash.into()],
    )?
    .first()
    .map(|r| row_of(r))
    .transpose()
}

/// The tokens whose hash starts with `prefix` (hex, lowercase).
pub fn by_prefix(tx: &mut dyn Sql, prefix: &str) -> Result<Vec<TokenRow>> {
    // substr rather than LIKE: a prefix is matched literally on both backends.
    tx.query(
        &format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE substr(t.token_hash, 1, {}) = $1 ORDER BY t.token_hash",
            prefix.len()
        ),
        &[prefix.into()],
    )?
    .iter()
    .map(|r| row_of(r))
    .collect()
}

/// Marks a token revoked at `at`; a token revoked before keeps its first time. Returns whether
/// this call revoked it.
pub fn revoke(tx: &mut dyn Sql, token_hash: &str, at: &str) -> Result<bool> {
    Ok(tx.exec(
        "UPDATE tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        &[at.into(), token_hash.into()],
    )? == 1)
}

/// Every token, by user login and then newest first.
pub fn all(tx: &mut dyn Sql) -> Result<Vec<TokenRow>> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM {FROM} ORDER BY u.login, t.created_at DESC"),
        &[],
    )?
    .iter()
    .map(|r| row_of(r))
    .collect()
}

/// The tokens of a user, newest first.
pub fn of_user(tx: &mut dyn Sql, user_id: i64) -> Result<Vec<TokenRow>> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM {FROM} WHERE t.user_id = $1 ORDER BY t.created_at DESC"),
        &[user_id.into()],
    )?
    .iter()
    .map(|r| row_of(r))
    .collect()
}
