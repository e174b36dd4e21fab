//! User administration for the `admin` role (`/admin/users`): the list of users, creating a
//! person with an initial password, and per user disable / enable, change of role, password
//! reset and authenticator (TOTP) reset. Every action calls the use case `suanli user …` calls
//! (`suanli_app::users`), which audits it with the admin as actor. A refused form is shown
//! again with the error next to its field and the input kept (never a password).

use std::sync::Arc;

use askama::Template;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use suanli_app::settlement::SettleError;
use suanli_app::users::{self, CreateUser};
use suanli_store::Principal;
use suanli_store::users::UserRow;

use super::codes::Code;
use super::format::url_encode;
use super::pages::tr;
use super::view::{Markup, View, view};
use super::{
    Console, ConsoleError, Ctx, FieldError, Form, html, posted, redirect, require, signed_in,
};

/// Who may administer users.
const ADMIN: &[&str] = &["admin"];
/// Most users listed on one page; the search narrows the rest.
pub const USERS_SHOWN_MAX: usize = 500;
/// The roles, in the order the forms offer them.
const ROLES: [&str; 5] = ["finance", "auditor", "admin", "provider", "beneficiary"];

/// A refused form: the field at fault, the message and the status.
struct Refused {
    field: &'static str,
    /// What is shown in the page's language; `message` adds the detail on English pages.
    code: Code,
    message: String,
    status: StatusCode,
}

impl Refused {
    fn new(
        field: &'static str,
        code: Code,
        message: impl Into<String>,
        status: StatusCode,
    ) -> Refused {
        Refused {
            field,
            code,
            message: message.into(),
            status,
        }
    }

    fn invalid(field: &'static str, code: Code, message: impl Into<String>) -> Refused {
        Refused::new(field, code, message, StatusCode::BAD_REQUEST)
    }

    /// A form field the form parser refused (missing, too long, ...), with its own code.
    fn form(field: &'static str, e: FieldError) -> Refused {
        Refused::invalid(field, e.code, e.message)
    }
}

/// What the create form sent, kept for showing it again (without the passwords).
#[derive(Default)]
struct Kept {
    login: String,
    name: String,
    role: String,
    subject: String,
    email: String,
}

/// A use-case error on `field`, or the console error it is when no field is at fault.
fn refused(e: SettleError, field: &'static str) -> Result<Refused, ConsoleError> {
    match e {
        SettleError::NotFound(m) => Ok(Refused::new(
            field,
            Code::NotFound,
            m,
            StatusCode::NOT_FOUND,
        )),
        SettleError::InvalidArgument(m) => Ok(Refused::invalid(field, Code::Invalid, m)),
        SettleError::FailedPrecondition(m) | SettleError::AlreadyExists(m) => {
            Ok(Refused::new(field, Code::Conflict, m, StatusCode::CONFLICT))
        }
        SettleError::PermissionDenied(m) => Err(ConsoleError::Forbidden(Code::RoleRefused, m)),
        SettleError::Store(e) => Err(ConsoleError::Unavailable(format!("store: {e}"))),
        SettleError::Unavailable(m) => Err(ConsoleError::Unavailable(m)),
    }
}

/// The role and subject fields as a principal, each refusal naming its field.
fn principal_of(form: &Form) -> Result<Principal, Refused> {
    let role = form
        .required("role")
        .map_err(|e| Refused::form("role", e))?;
    let subject = form.optional("subject").unwrap_or("");
    if !ROLES.contains(&role) {
        return Err(Refused::invalid(
            "role",
            Code::NotAChoice,
            format!("{role:?} is not a role: expected {}", ROLES.join(", ")),
        ));
    }
    match (role, subject.is_empty()) {
        ("provider" | "beneficiary", true) => Err(Refused::invalid(
            "subject",
            Code::SubjectNeeded,
            format!("a {role} user needs the {role} id it speaks for"),
        )),
        ("provider" | "beneficiary", false) => {
            let max = suanli_domain::usage::ID_BYTES_MAX;
            if subject.len() > max || subject.chars().any(char::is_control) {
                return Err(Refused::invalid(
                    "subject",
                    Code::Invalid,
                    format!("expected an id of at most {max} bytes without control characters"),
                ));
            }
            Principal::from_parts(role, subject).ok_or_else(|| {
                Refused::invalid(
                    "subject",
                    Code::Invalid,
                    format!("{subject:?} is not an id"),
                )
            })
        }
        (_, false) => Err(Refused::invalid(
            "subject",
            Code::SubjectNotTaken,
            format!("only provider and beneficiary users have a subject; {role} has none"),
        )),
        (_, true) => Principal::from_parts(role, "").ok_or_else(|| {
            Refused::invalid("role", Code::NotAChoice, format!("{role:?} is not a role"))
        }),
    }
}

/// The new password and its repetition, checked against the policy for `login`.
fn new_password(form: &Form, login: &str) -> Result<String, Refused> {
    let password = form
        .required("password")
        .map_err(|e| Refused::form("password", e))?;
    if form.optional("password_again") != Some(password) {
        return Err(Refused::invalid(
            "password_again",
            Code::PasswordsDiffer,
            "does not repeat the password",
        ));
    }
    if let Some(why) = suanli_app::password::policy_violation(login, password) {
        return Err(Refused::invalid("password", Code::PasswordWeak, why));
    }
    Ok(password.to_owned())
}

impl Console {
    async fn all_users(&self) -> Result<Vec<UserRow>, ConsoleError> {
        self.store(users::list)
            .await?
            .map_err(|e| ConsoleError::Unavailable(e.to_string()))
    }

    async fn user(&self, login: &str) -> Result<UserRow, ConsoleError> {
        let wanted = login.to_owned();
        self.store(move |s| users::by_login(s, &wanted))
            .await?
            .map_err(|e| match e {
                SettleError::NotFound(m) => ConsoleError::NotFound(m),
                other => ConsoleError::Unavailable(other.to_string()),
            })
    }
}

/// What the admins' user templates share: the refusal shown next to its field, and the roles
/// a form offers.
trait UserForms {
    fn refusal(&self) -> Option<&Refused>;

    /// The refusal, when it names `field`.
    fn error_for(&self, field: &str) -> Option<&Refused> {
        self.refusal().filter(|r| r.field == field)
    }

    fn roles(&self) -> [&'static str; 5] {
        ROLES
    }

    fn same(&self, a: &str, b: &str) -> bool {
        a == b
    }
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    /// The search as typed, and the role filter.
    q: &'a str,
    role: &'a str,
    /// The users shown (at most [`USERS_SHOWN_MAX`]) of `total` selected.
    users: Vec<&'a UserRow>,
    total: usize,
    kept: &'a Kept,
    refusal: Option<&'a Refused>,
}

impl UsersPage<'_> {
    fn href(&self, u: &UserRow) -> String {
        url_encode(&u.login)
    }

    /// The role the create form offers first: as sent, else finance.
    fn kept_role(&self) -> &str {
        if self.kept.role.is_empty() {
            "finance"
        } else {
            &self.kept.role
        }
    }
}

impl UserForms for UsersPage<'_> {
    fn refusal(&self) -> Option<&Refused> {
        self.refusal
    }
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage<'a> {
    ctx: &'a Ctx,
    title: &'a str,
    x: &'a UserRow,
    /// `/admin/users/{login}`, the login url-encoded.
    href: String,
    /// What was just done (`users.done_*`).
    done: Option<&'a str>,
    refusal: Option<&'a Refused>,
}

impl UserPage<'_> {
    fn done_text(&self, key: &str) -> &'static str {
        tr(self.ctx, &format!("users.done_{key}"))
    }
}

impl UserForms for UserPage<'_> {
    fn refusal(&self) -> Option<&Refused> {
        self.refusal
    }
}

view!(UsersPage, UserPage);

/// The list of users (filtered by `q` and `role`) and the create form.
async fn list_page(
    console: &Arc<Console>,
    ctx: &Ctx,
    query: &Form,
    kept: &Kept,
    refusal: Option<&Refused>,
) -> Result<String, ConsoleError> {
    let q = query.optional("q").unwrap_or("").to_lowercase();
    let role = query.optional("role").unwrap_or("");
    if !role.is_empty() && !ROLES.contains(&role) {
        return Err(ConsoleError::field(
            "role",
            Code::Invalid,
            format!("{role:?} is not a role: expected {}", ROLES.join(", ")),
        ));
    }
    let all = console.all_users().await?;
    let selected: Vec<&UserRow> = all
        .iter()
        .filter(|u| q.is_empty() || u.login.contains(&q) || u.name.to_lowercase().contains(&q))
        .filter(|u| role.is_empty() || u.principal.role() == role)
        .collect();
    let total = selected.len();
    Ok(Markup::render(&UsersPage {
        ctx,
        title: tr(ctx, "users.title"),
        q: query.optional("q").unwrap_or(""),
        role,
        users: selected.into_iter().take(USERS_SHOWN_MAX).collect(),
        total,
        kept,
        refusal,
    })
    .into_string())
}

/// One user: the figures, and the forms for each action the admin may take on it.
fn user_page(ctx: &Ctx, u: &UserRow, done: Option<&str>, refusal: Option<&Refused>) -> String {
    Markup::render(&UserPage {
        ctx,
        title: &u.name,
        x: u,
        href: format!("/admin/users/{}", url_encode(&u.login)),
        done,
        refusal,
    })
    .into_string()
}

/// `/admin/users…`: `rest` is the path after `/admin/users`.
pub(super) async fn route(
    console: &Arc<Console>,
    ctx: &Ctx,
    method: &Method,
    rest: &[&str],
    query: &Form,
    body: &[u8],
) -> Result<Response, ConsoleError> {
    let form = if *method == Method::POST {
        Some(posted(ctx, body)?)
    } else {
        None
    };
    require(signed_in(ctx)?, ADMIN, "administering users")?;
    match (form, rest) {
        (None, []) => {
            let body = list_page(console, ctx, query, &Kept::default(), None).await?;
            Ok(html(ctx, StatusCode::OK, body))
        }
        (Some(form), []) => match create(console, ctx, &form).await? {
            Ok(login) => Ok(redirect(
                ctx,
                &format!("/admin/users/{}?done=created", url_encode(&login)),
            )),
            Err((kept, refusal)) => {
                let body = list_page(console, ctx, &Form::default(), &kept, Some(&refusal)).await?;
                Ok(html(ctx, refusal.status, body))
            }
        },
        (None, [login]) => {
            let user = console.user(login).await?;
            let done = query
                .optional("done")
                .filter(|d| DONE.contains(d))
                .map(str::to_owned);
            Ok(html(
                ctx,
                StatusCode::OK,
                user_page(ctx, &user, done.as_deref(), None),
            ))
        }
        (Some(form), [login, action]) => {
            let user = console.user(login).await?;
            match act(console, ctx, &user, action, &form).await? {
                Ok(done) => Ok(redirect(
                    ctx,
                    &format!("/admin/users/{}?done={done}", url_encode(&user.login)),
                )),
                Err(refusal) => {
                    // The page shows the user as stored now, with the error by its field.
                    let user = console.user(login).await?;
                    Ok(html(
                        ctx,
                        refusal.status,
                        user_page(ctx, &user, None, Some(&refusal)),
                    ))
                }
            }
        }
        _ => Err(ConsoleError::NotFound(format!(
            "no page /admin/users/{}",
            rest.join("/")
        ))),
    }
}

/// What an action did, for the message on the user's page (`users.done_*`).
const DONE: [&str; 6] = ["created", "disabled", "enabled", "role", "password", "totp"];

/// Creates a person from the create form; returns the login, or the form to show again.
async fn create(
    console: &Arc<Console>,
    ctx: &Ctx,
    form: &Form,
) -> Result<Result<String, (Kept, Refused)>, ConsoleError> {
    let kept = Kept {
        login: form.optional("login").unwrap_or("").to_lowercase(),
        name: form.optional("name").unwrap_or("").to_owned(),
        role: form.optional("role").unwrap_or("").to_owned(),
        subject: form.optional("subject").unwrap_or("").to_owned(),
        email: form.optional("email").unwrap_or("").to_owned(),
    };
    let checked = (|| {
        let login = form
            .required("login")
            .map_err(|e| Refused::form("login", e))?
            .to_lowercase();
        users::check_login(&login)
            .map_err(|e| Refused::invalid("login", Code::Invalid, e.to_string()))?;
        let name = form
            .required("name")
            .map_err(|e| Refused::form("name", e))?;
        users::check_name(name)
            .map_err(|e| Refused::invalid("name", Code::Invalid, e.to_string()))?;
        let principal = principal_of(form)?;
        let email = form.optional("email").map(str::to_owned);
        if let Some(email) = &email {
            users::check_email(email)
                .map_err(|e| Refused::invalid("email", Code::Invalid, e.to_string()))?;
        }
        let password = new_password(form, &login)?;
        Ok::<_, Refused>(CreateUser {
            login,
            name: name.to_owned(),
            principal,
            email,
            service: false,
            password: Some(password),
        })
    })();
    let new = match checked {
        Ok(new) => new,
        Err(refusal) => return Ok(Err((kept, refusal))),
    };
    let who = ctx.actor.clone().expect("signed in");
    let created = console.store(move |s| users::create(s, &who, &new)).await?;
    match created {
        Ok(user) => Ok(Ok(user.login)),
        Err(e) => Ok(Err((kept, refused(e, "login")?))),
    }
}

/// Applies `action` to `user`; returns what was done, or the refusal to show.
async fn act(
    console: &Arc<Console>,
    ctx: &Ctx,
    user: &UserRow,
    action: &str,
    form: &Form,
) -> Result<Result<&'static str, Refused>, ConsoleError> {
    let who = ctx.actor.clone().expect("signed in");
    let login = user.login.clone();
    // An admin does not lock themselves out here: disabling or demoting oneself is left to
    // another admin, or to `suanli user` on the database.
    let own = who.user_id() == Some(user.user_id);
    let outcome: Result<&'static str, SettleError> = match action {
        "disable" | "enable" => {
            let disable = action == "disable";
            if own && disable {
                return Ok(Err(Refused::new(
                    "login",
                    Code::NotYourself,
                    "you cannot disable your own user; another admin can",
                    StatusCode::CONFLICT,
                )));
            }
            console
                .store(move |s| {
                    if disable {
                        users::disable(s, &who, &login)
                    } else {
                        users::enable(s, &who, &login)
                    }
                })
                .await?
                .map(|_| if disable { "disabled" } else { "enabled" })
        }
        "role" => {
            let principal = match principal_of(form) {
                Ok(p) => p,
                Err(r) => return Ok(Err(r)),
            };
            if own && principal != user.principal {
                return Ok(Err(Refused::new(
                    "role",
                    Code::NotYourself,
                    "you cannot change your own role; another admin can",
                    StatusCode::CONFLICT,
                )));
            }
            console
                .store(move |s| users::set_role(s, &who, &login, &principal))
                .await?
                .map(|_| "role")
        }
        "password" => {
            let password = match new_password(form, &user.login) {
                Ok(p) => p,
                Err(r) => return Ok(Err(r)),
            };
            console
                .store(move |s| users::reset_password(s, &who, &login, Some(&password)))
                .await?
                .map(|_| "password")
        }
        "totp" => {
            if form.optional("confirm") != Some("yes") {
                return Ok(Err(Refused::invalid(
                    "confirm",
                    Code::ConfirmFirst,
                    tr(ctx, "users.reset_totp_confirm"),
                )));
            }
            console
                .store(move |s| users::reset_totp(s, &who, &login))
                .await?
                .map(|_| "totp")
        }
        other => {
            return Err(ConsoleError::NotFound(format!("no user action {other:?}")));
        }
    };
    let field = match action {
        "role" => "role",
        "password" => "password",
        "totp" => "confirm",
        _ => "login",
    };
    match outcome {
        Ok(done) => Ok(Ok(done)),
        Err(e) => Ok(Err(refused(e, field)?)),
    }
}
