//! Named users in storage, written once for both backends over [`Sql`]: people who sign in to
//! the console and the service accounts of machine clients. Every token belongs to one user
//! (`tokens.user_id`); the user's role and subject are the token's.

use crate::sql::{Sql, Value};
use crate::{Principal, Result, StoreError};

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub user_id: i64,
    pub login: String,
    pub name: String,
    pub principal: Principal,
    pub email: Option<String>,
    /// The Argon2id PHC string; `None`: the user cannot sign in with a password.
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    /// A service account of a machine client: it never has a password.
    pub service: bool,
    pub disabled_at: Option<String>,
    pub created_at: String,
    /// When the user last signed in to the console; `None` when not known.
    pub last_signin_at: Option<String>,
}

/// Who a user is, as actors name them: the id that four eyes compares and the names shown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserRef {
    pub user_id: i64,
    pub login: String,
    pub name: String,
}

impl UserRow {
    pub fn user_ref(&self) -> UserRef {
        UserRef {
            user_id: self.user_id,
            login: self.login.clone(),
            name: self.name.clone(),
        }
    }
}

/// A user to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub login: String,
    pub name: String,
    pub principal: Principal,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub service: bool,
    pub created_at: String,
}

const COLUMNS: &str = "user_id, login, name, role, subject, email, password_hash, totp_secret, \
                       service, disabled_at, created_at, last_signin_at";

fn row_of(r: &[Value]) -> Result<UserRow> {
    let (role, subject) = (r[3].text()?, r[4].text()?);
    Ok(UserRow {
        user_id: r[0].int()?,
        login: r[1].text()?,
        name: r[2].text()?,
        principal: Principal::from_parts(&role, &subject).ok_or_else(|| {
            StoreError::Corrupt(format!("user with role {role:?} and subject {subject:?}"))
        })?,
        email: r[5].opt_text()?,
        password_hash: r[6].opt_text()?,
        totp_secret: r[7].opt_text()?,
        service: r[8].int()? != 0,
        disabled_at: r[9].opt_text()?,
        created_at: r[10].text()?,
        last_signin_at: r[11].opt_text()?,
    })
}

/// Inserts `user`; returns its id. Callers check [`by_login`] first in the same transaction to
/// name a taken login; the unique index stops a race between two of them.
pub fn insert(tx: &mut dyn Sql, user: &NewUser) -> Result<i64> {
    tx.query(
        "INSERT INTO users (login, name, role, subject, email, password_hash, service, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING user_id",
        &[
            user.login.as_str().into(),
            user.name.as_str().into(),
            user.principal.role().into(),
            user.principal.subject().into(),
            user.email.clone().into(),
            user.password_hash.clone().into(),
            i64::from(user.service).into(),
            user.created_at.as_str().into(),
        ],
    )?
    .first()
    .ok_or_else(|| StoreError::Corrupt("insert into users returned no id".into()))?[0]
        .int()
}

pub fn by_login(tx: &mut dyn Sql, login: &str) -> Result<Option<UserRow>> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM users WHERE login = $1"),
        &[login.into()],
    )?
    .first()
    .map(|r| row_of(r))
    .transpose()
}

/// The people (not service accounts) whose email is `email`, ignoring ASCII case, by login.
/// Emails are not unique: a caller that needs one person decides what several mean.
pub fn by_email(tx: &mut dyn Sql, email: &str) -> Result<Vec<UserRow>> {
    tx.query(
        &format!(
            "SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1) AND service = 0 \
             ORDER BY login"
        ),
        &[email.into()],
    )?
    .iter()
    .map(|r| row_of(r))
    .collect()
}

pub fn by_id(tx: &mut dyn Sql, user_id: i64) -> Result<Option<UserRow>> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM users WHERE user_id = $1"),
        &[user_id.into()],
    )?
    .first()
    .map(|r| row_of(r))
    .transpose()
}

/// Every user, by login.
pub fn list(tx: &mut dyn Sql) -> Result<Vec<UserRow>> {
    tx.query(&format!("SELECT {COLUMNS} FROM users ORDER BY login"), &[])?
        .iter()
        .map(|r| row_of(r))
        .collect()
}

/// Sets or clears `disabled_at`; returns whether the row changed.
pub fn set_disabled(tx: &mut dyn Sql, user_id: i64, at: Option<&str>) -> Result<bool> {
    let changed = match at {
        Some(at) => tx.exec(
            "UPDATE users SET disabled_at = $1 WHERE user_id = $2 AND disabled_at IS NULL",
            &[at.into(), user_id.into()],
        )?,
        None => tx.exec(
            "UPDATE users SET disabled_at = NULL WHERE user_id = $1 AND disabled_at IS NOT NULL",
            &[user_id.into()],
        )?,
    };
    Ok(changed == 1)
}

/// Changes a user's role and subject, and those of every token of the user, so that a token
/// never speaks for more than its user.
pub fn set_role(tx: &mut dyn Sql, user_id: i64, principal: &Principal) -> Result<()> {
    let params = [
        principal.role().into(),
        principal.subject().into(),
        user_id.into(),
    ];
    tx.exec(
        "UPDATE users SET role = $1, subject = $2 WHERE user_id = $3",
        &params,
    )?;
    tx.exec(
        "UPDATE tokens SET role = $1, subject = $2 WHERE user_id = $3",
        &params,
    )?;
    Ok(())
}

pub fn set_password(tx: &mut dyn Sql, user_id: i64, password_hash: &str) -> Result<()> {
    tx.exec(
        "UPDATE users SET password_hash = $1 WHERE user_id = $2",
        &[password_hash.into(), user_id.into()],
    )?;
    Ok(())
}

/// Notes that the user signed in to the console at `at`.
pub fn set_last_signin(tx: &mut dyn Sql, user_id: i64, at: &str) -> Result<()> {
    tx.exec(
        "UPDATE users SET last_signin_at = $1 WHERE user_id = $2",
        &[at.into(), user_id.into()],
    )?;
    Ok(())
}

/// Sets or clears a user's TOTP secret (base32).
pub fn set_totp(tx: &mut dyn Sql, user_id: i64, secret: Option<&str>) -> Result<()> {
    tx.exec(
        "UPDATE users SET totp_secret = $1 WHERE user_id = $2",
        &[secret.map(str::to_owned).into(), user_id.into()],
    )?;
    Ok(())
}

/// The login of the generated service account of `principal`: `svc-<role>` or
/// `svc-<role>-<subject>`, as the users migration names the accounts of earlier tokens.
pub fn service_login(principal: &Principal) -> String {
    match principal.subject() {
        "" => format!("svc-{}", principal.role()),
        subject => format!("svc-{}-{subject}", principal.role()),
    }
}

/// The generated service account of `principal`, created at `at` if there is none yet. A user
/// who holds the login with another role is a corrupt state (`svc-` logins are reserved).
pub fn service_account(tx: &mut dyn Sql, principal: &Principal, at: &str) -> Result<UserRow> {
    let login = service_login(principal);
    if let Some(found) = by_login(tx, &login)? {
        if found.principal != *principal || !found.service {
            return Err(StoreError::Corrupt(format!(
                "user {login:?} is not the service account of role {} {:?}",
                principal.role(),
                principal.subject()
            )));
        }
        return Ok(found);
    }
    let name = match principal.subject() {
        "" => format!("{} service account", principal.role()),
        subject => format!("{} {subject} service account", principal.role()),
    };
    let user_id = insert(
        tx,
        &NewUser {
            login: login.clone(),
            name,
            principal: principal.clone(),
            email: None,
            password_hash: None,
            service: true,
            created_at: at.to_owned(),
        },
    )?;
    by_id(tx, user_id)?
        .ok_or_else(|| StoreError::Corrupt(format!("user {user_id} vanished after its insert")))
}
