//! `suanli user …` and `suanli token create --user`: named users, worked on the database
//! directly like `suanli token create`, so the first admin needs no SQL. Every change is
//! audited with the `operator:<os user>` actor.

use std::io::BufRead;

use anyhow::{Context, bail};
use suanli_app::audit::{Actor, user_display};
use suanli_app::users::{self, CreateUser};
use suanli_store::Store;

use crate::client;

fn open(database_url: &str) -> anyhow::Result<Box<dyn Store>> {
    suanli_store::open(database_url).with_context(|| format!("cannot open {database_url}"))
}

/// One line of standard input without its line ending.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("--password-stdin: standard input holds no password");
    }
    Ok(password)
}

pub struct Create {
    pub login: String,
    pub name: String,
    pub role: String,
    pub provider: Option<String>,
    pub beneficiary: Option<String>,
    pub email: Option<String>,
    pub service: bool,
    pub password_stdin: bool,
}

pub fn create(database_url: &str, c: Create) -> anyhow::Result<()> {
    let principal = client::principal_of(&c.role, c.provider.as_deref(), c.beneficiary.as_deref())?;
    let password = if c.password_stdin {
        Some(password_from_stdin()?)
    } else {
        None
    };
    let mut store = open(database_url)?;
    let user = users::create(
        store.as_mut(),
        &Actor::operator(),
        &CreateUser {
            login: c.login,
            name: c.name,
            principal,
            email: c.email,
            service: c.service,
            password,
        },
    )?;
    let kind = if user.service {
        "service account"
    } else {
        "user"
    };
    outln!(
        "created {kind} {} (id {}), role {}{}",
        user_display(&user.user_ref()),
        user.user_id,
        user.principal.role(),
        match user.principal.subject() {
            "" => String::new(),
            s => format!(" {s}"),
        }
    );
    if !user.service && user.password_hash.is_none() {
        outln!(
            "set a console password with: suanli user reset-password {}",
            user.login
        );
    }
    Ok(())
}

pub fn list(database_url: &str) -> anyhow::Result<()> {
    let mut store = open(database_url)?;
    let all = users::list(store.as_mut())?;
    outln!("id\tlogin\tname\trole\tsubject\tkind\tpassword\tstatus\tcreated_at");
    for u in all {
        outln!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            u.user_id,
            u.login,
            u.name,
            u.principal.role(),
            u.principal.subject(),
            if u.service { "service" } else { "person" },
            if u.password_hash.is_some() {
                "set"
            } else {
                "none"
            },
            u.disabled_at
                .as_deref()
                .map_or_else(|| "active".to_owned(), |at| format!("disabled {at}")),
            u.created_at
        );
    }
    Ok(())
}

pub fn disable(database_url: &str, login: &str, disable: bool) -> anyhow::Result<()> {
    let mut store = open(database_url)?;
    let who = Actor::operator();
    let (user, changed) = if disable {
        users::disable(store.as_mut(), &who, login)?
    } else {
        users::enable(store.as_mut(), &who, login)?
    };
    let shown = user_display(&user.user_ref());
    match (disable, changed) {
        (true, true) => outln!(
            "disabled {shown}; a running server refuses its tokens and sessions within its --token-recheck-secs"
        ),
        (true, false) => outln!(
            "{shown} was already disabled at {}",
            user.disabled_at.as_deref().unwrap_or("?")
        ),
        (false, true) => outln!("enabled {shown}"),
        (false, false) => outln!("{shown} was not disabled"),
    }
    Ok(())
}

pub fn set_role(
    database_url: &str,
    login: &str,
    role: &str,
    provider: Option<&str>,
    beneficiary: Option<&str>,
) -> anyhow::Result<()> {
    let principal = client::principal_of(role, provider, beneficiary)?;
    let mut store = open(database_url)?;
    let (user, changed) = users::set_role(store.as_mut(), &Actor::operator(), login, &principal)?;
    let shown = user_display(&user.user_ref());
    if changed {
        outln!(
            "{shown} is now {role}; a running server applies it to its tokens within its --token-recheck-secs"
        );
    } else {
        outln!("{shown} already has that role");
    }
    Ok(())
}

pub fn reset_password(database_url: &str, login: &str, password_stdin: bool) -> anyhow::Result<()> {
    let given = if password_stdin {
        Some(password_from_stdin()?)
    } else {
        None
    };
    let mut store = open(database_url)?;
    let password =
        users::reset_password(store.as_mut(), &Actor::operator(), login, given.as_deref())?;
    if given.is_some() {
        outln!("set the console password of {login}");
    } else {
        eprintln!("the new password of {login}; it is shown once:");
        outln!("{password}");
    }
    Ok(())
}

pub fn reset_totp(database_url: &str, login: &str) -> anyhow::Result<()> {
    let mut store = open(database_url)?;
    let (user, removed) = users::reset_totp(store.as_mut(), &Actor::operator(), login)?;
    let shown = user_display(&user.user_ref());
    if removed {
        outln!("removed the authenticator of {shown}; its next password sign-in asks for none");
    } else {
        outln!("{shown} has no authenticator");
    }
    Ok(())
}

/// `suanli token create --user LOGIN`: a token with the user's role and subject.
pub fn token_create_for_user(
    database_url: &str,
    login: &str,
    label: Option<&str>,
    expires_in_days: Option<u32>,
) -> anyhow::Result<()> {
    let user = {
        let mut store = open(database_url)?;
        users::by_login(store.as_mut(), login)?
    };
    if let Some(at) = &user.disabled_at {
        bail!("user {login:?} was disabled at {at}; enable it before giving it a token");
    }
    let principal = user.principal.clone();
    client::issue_token(database_url, principal, Some(user), label, expires_in_days)
}
