//! Token lifetimes in storage, written once for both backends over [`Sql`]: when a token
//! expires and whether it was revoked. Only sha256 hashes of tokens are stored.

use crate::sql::{Sql, Value};
use crate::{Principal, Result, StoreError};

/// A stored token: whom it speaks for and its lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub token_hash: String,
    pub principal: Principal,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

fn row_of(r: &[Value]) -> Result<TokenRow> {
    let (role, subject) = (r[1].text()?, r[2].text()?);
    Ok(TokenRow {
        token_hash: r[0].text()?,
        principal: Principal::from_parts(&role, &subject).ok_or_else(|| {
            StoreError::Corrupt(format!("token with role {role:?} and subject {subject:?}"))
        })?,
        created_at: r[3].text()?,
        expires_at: r[4].opt_text()?,
        revoked_at: r[5].opt_text()?,
    })
}

const COLUMNS: &str = "token_hash, role, subject, created_at, expires_at, revoked_at";

pub fn insert(tx: &mut dyn Sql, row: &TokenRow) -> Result<()> {
    tx.exec(
        &format!("INSERT INTO tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            row.token_hash.as_str().into(),
            row.principal.role().into(),
            row.principal.subject().into(),
            row.created_at.as_str().into(),
            row.expires_at.clone().into(),
            row.revoked_at.clone().into(),
        ],
    )?;
    Ok(())
}

pub fn lookup(tx: &mut dyn Sql, token_hash: &str) -> Result<Option<TokenRow>> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM tokens WHERE token_hash = $1"),
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
            "SELECT {COLUMNS} FROM tokens WHERE substr(token_hash, 1, {}) = $1 ORDER BY token_hash",
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
