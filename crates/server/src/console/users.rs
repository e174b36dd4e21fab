//! User administration for the `admin` role (`/admin/users`): the list of users, creating a
//! person with an initial password, and per user disable / enable, change of role, password
//! reset and authenticator (TOTP) reset. Every action calls the use case `suanli user …` calls
//! (`suanli_app::users`), which audits it with the admin as actor. A refused form is shown
//! again with the error next to its field and the input kept (never a password).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use suanli_app::settlement::SettleError;
use suanli_app::users::{self, CreateUser};
use suanli_store::Principal;
use suanli_store::users::UserRow;

use super::codes::Code;
use super::format::{esc, shanghai_time, url_encode};
use super::pages::{layout, tr};
use super::{Console, ConsoleError, Ctx, Form, html, posted, redirect, require, signed_in};

/// Who may administer users.
const ADMIN: &[&str] = &["admin"];
/// Most users listed on one page; the search narrows the rest.
pub const USERS_SHOWN_MAX: usize = 500;
/// The roles, in the order the forms offer them.
const ROLES: [&str; 5] = ["finance", "auditor", "admin", "provider", "beneficiary"];

/// A refused form: the field at fault, the message and the status.
struct Refused {
    field: &'static str,
    message: String,
    status: StatusCode,
}

impl Refused {
    fn new(field: &'static str, message: impl Into<String>, status: StatusCode) -> Refused {
        Refused {
            field,
            message: message.into(),
            status,
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Refused {
        Refused::new(field, message, StatusCode::BAD_REQUEST)
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
        SettleError::NotFound(m) => Ok(Refused::new(field, m, StatusCode::NOT_FOUND)),
        SettleError::InvalidArgument(m) => Ok(Refused::invalid(field, m)),
        SettleError::FailedPrecondition(m) | SettleError::AlreadyExists(m) => {
            Ok(Refused::new(field, m, StatusCode::CONFLICT))
        }
        SettleError::PermissionDenied(m) => Err(ConsoleError::Forbidden(Code::RoleRefused, m)),
        SettleError::Store(e) => Err(ConsoleError::Unavailable(format!("store: {e}"))),
        SettleError::Unavailable(m) => Err(ConsoleError::Unavailable(m)),
    }
}

/// The error line shown next to `field` when the form was refused there.
fn error_at(refused: Option<&Refused>, field: &str) -> String {
    match refused {
        Some(r) if r.field == field => format!(
            "<p class=\"error\" id=\"error\" data-field=\"{f}\"><b>{f}</b>: {m}</p>",
            f = esc(r.field),
            m = esc(&r.message)
        ),
        _ => String::new(),
    }
}

/// The role and subject fields as a principal, each refusal naming its field.
fn principal_of(form: &Form) -> Result<Principal, Refused> {
    let role = form
        .required("role")
        .map_err(|e| Refused::invalid("role", e.message))?;
    let subject = form.optional("subject").unwrap_or("");
    if !ROLES.contains(&role) {
        return Err(Refused::invalid(
            "role",
            format!("{role:?} is not a role: expected {}", ROLES.join(", ")),
        ));
    }
    match (role, subject.is_empty()) {
        ("provider" | "beneficiary", true) => Err(Refused::invalid(
            "subject",
            format!("a {role} user needs the {role} id it speaks for"),
        )),
        ("provider" | "beneficiary", false) => {
            let max = suanli_domain::usage::ID_BYTES_MAX;
            if subject.len() > max || subject.chars().any(char::is_control) {
                return Err(Refused::invalid(
                    "subject",
                    format!("expected an id of at most {max} bytes without control characters"),
                ));
            }
            Principal::from_parts(role, subject)
                .ok_or_else(|| Refused::invalid("subject", format!("{subject:?} is not an id")))
        }
        (_, false) => Err(Refused::invalid(
            "subject",
            format!("only provider and beneficiary users have a subject; {role} has none"),
        )),
        (_, true) => Principal::from_parts(role, "")
            .ok_or_else(|| Refused::invalid("role", format!("{role:?} is not a role"))),
    }
}

/// The new password and its repetition, checked against the policy for `login`.
fn new_password(form: &Form, login: &str) -> Result<String, Refused> {
    let password = form
        .required("password")
        .map_err(|e| Refused::invalid("password", e.message))?;
    if form.optional("password_again") != Some(password) {
        return Err(Refused::invalid(
            "password_again",
            "does not repeat the password",
        ));
    }
    if let Some(why) = suanli_app::password::policy_violation(login, password) {
        return Err(Refused::invalid("password", why));
    }
    Ok(password.to_owned())
}

fn yes_no(ctx: &Ctx, yes: bool) -> &'static str {
    if yes {
        tr(ctx, "users.yes")
    } else {
        tr(ctx, "users.no")
    }
}

fn status_of(ctx: &Ctx, u: &UserRow) -> String {
    match &u.disabled_at {
        Some(at) => format!(
            "<span class=\"status cancelled\" data-enabled=\"false\">{}</span> <small>{}</small>",
            tr(ctx, "users.disabled"),
            esc(&shanghai_time(at))
        ),
        None => format!(
            "<span class=\"status posted\" data-enabled=\"true\">{}</span>",
            tr(ctx, "users.enabled")
        ),
    }
}

fn role_options(ctx: &Ctx, chosen: &str) -> String {
    let mut html = String::new();
    for role in ROLES {
        let selected = if role == chosen { " selected" } else { "" };
        let _ = write!(
            html,
            "<option value=\"{role}\"{selected}>{} ({role})</option>",
            tr(ctx, &format!("role.{role}"))
        );
    }
    html
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
    let mut main = format!("<h1>{}</h1>", tr(ctx, "users.title"));
    let mut role_filter = format!("<option value=\"\">{}</option>", tr(ctx, "users.all_roles"));
    role_filter += &role_options(ctx, role);
    let _ = write!(
        main,
        "<section class=\"card\"><form method=\"get\" action=\"/admin/users\" class=\"filters\"><label>{l_q}<input name=\"q\" value=\"{q}\" maxlength=\"100\"></label><label>{l_role}<select name=\"role\">{role_filter}</select></label><button type=\"submit\">{filter}</button></form>\
<p class=\"muted\">{shown} {n} / {total}</p><div class=\"scroll\"><table id=\"users\"><thead><tr><th>{l_name}</th><th>{l_login}</th><th>{l_role}</th><th>{l_subject}</th><th>{l_status}</th><th>{l_totp}</th><th>{l_last}</th></tr></thead><tbody>",
        l_q = tr(ctx, "users.search"),
        q = esc(query.optional("q").unwrap_or("")),
        l_role = tr(ctx, "users.role"),
        filter = tr(ctx, "filter"),
        shown = tr(ctx, "audit.shown"),
        n = selected.len().min(USERS_SHOWN_MAX),
        total = selected.len(),
        l_name = tr(ctx, "users.name"),
        l_login = tr(ctx, "signin.login"),
        l_subject = tr(ctx, "users.subject"),
        l_status = tr(ctx, "status"),
        l_totp = tr(ctx, "users.totp"),
        l_last = tr(ctx, "users.last_signin"),
    );
    if selected.is_empty() {
        let _ = write!(
            main,
            "<tr><td colspan=\"7\" class=\"muted\">{}</td></tr>",
            tr(ctx, "none")
        );
    }
    for u in selected.iter().take(USERS_SHOWN_MAX) {
        let service = if u.service {
            format!(
                " <small class=\"muted\">{}</small>",
                tr(ctx, "users.service")
            )
        } else {
            String::new()
        };
        let _ = write!(
            main,
            "<tr data-login=\"{login}\"><td><a href=\"/admin/users/{href}\">{name}</a>{service}</td><td><code>{login}</code></td><td>{role}</td><td>{subject}</td><td>{status}</td><td data-totp=\"{totp}\">{totp_text}</td><td>{last}</td></tr>",
            login = esc(&u.login),
            href = url_encode(&u.login),
            name = esc(&u.name),
            role = esc(tr(ctx, &format!("role.{}", u.principal.role()))),
            subject = esc(u.principal.subject()),
            status = status_of(ctx, u),
            totp = u.totp_secret.is_some(),
            totp_text = yes_no(ctx, u.totp_secret.is_some()),
            last = esc(&u
                .last_signin_at
                .as_deref()
                .map_or_else(|| "—".to_owned(), shanghai_time)),
        );
    }
    main.push_str("</tbody></table></div></section>");
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{h}</h2><p class=\"muted\">{intro}</p><form method=\"post\" action=\"/admin/users\" id=\"create-user\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"login\">{l_login}</label><input id=\"login\" name=\"login\" required maxlength=\"64\" autocomplete=\"off\" value=\"{login}\">{e_login}\
<label for=\"name\">{l_name}</label><input id=\"name\" name=\"name\" required maxlength=\"100\" value=\"{name}\">{e_name}\
<label for=\"role\">{l_role}</label><select id=\"role\" name=\"role\">{roles}</select>{e_role}\
<label for=\"subject\">{l_subject} <small>{subject_hint}</small></label><input id=\"subject\" name=\"subject\" maxlength=\"128\" value=\"{subject}\">{e_subject}\
<label for=\"email\">{l_email} <small>{optional}</small></label><input id=\"email\" name=\"email\" type=\"email\" maxlength=\"200\" value=\"{email}\">{e_email}\
{passwords}<button type=\"submit\">{submit}</button></form></section>",
        h = tr(ctx, "users.create"),
        intro = tr(ctx, "users.create_intro"),
        csrf = esc(&ctx.csrf),
        l_login = tr(ctx, "signin.login"),
        login = esc(&kept.login),
        e_login = error_at(refusal, "login"),
        l_name = tr(ctx, "users.name"),
        name = esc(&kept.name),
        e_name = error_at(refusal, "name"),
        l_role = tr(ctx, "users.role"),
        roles = role_options(
            ctx,
            if kept.role.is_empty() {
                "finance"
            } else {
                &kept.role
            }
        ),
        e_role = error_at(refusal, "role"),
        l_subject = tr(ctx, "users.subject"),
        subject_hint = tr(ctx, "users.subject_hint"),
        subject = esc(&kept.subject),
        e_subject = error_at(refusal, "subject"),
        l_email = tr(ctx, "users.email"),
        optional = tr(ctx, "optional"),
        email = esc(&kept.email),
        e_email = error_at(refusal, "email"),
        passwords = password_fields(ctx, refusal),
        submit = tr(ctx, "users.create_submit"),
    );
    Ok(layout(ctx, tr(ctx, "users.title"), &main))
}

/// The new password typed twice, with their errors.
fn password_fields(ctx: &Ctx, refusal: Option<&Refused>) -> String {
    format!(
        "<label for=\"password\">{l_password} <small>{hint}</small></label><input id=\"password\" name=\"password\" type=\"password\" required minlength=\"12\" maxlength=\"128\" autocomplete=\"new-password\">{e_password}\
<label for=\"password_again\">{l_again}</label><input id=\"password_again\" name=\"password_again\" type=\"password\" required maxlength=\"128\" autocomplete=\"new-password\">{e_again}",
        l_password = tr(ctx, "users.new_password"),
        hint = tr(ctx, "users.password_hint"),
        e_password = error_at(refusal, "password"),
        l_again = tr(ctx, "users.password_again"),
        e_again = error_at(refusal, "password_again"),
    )
}

/// One user: the figures, and the forms for each action the admin may take on it.
fn user_page(ctx: &Ctx, u: &UserRow, done: Option<&str>, refusal: Option<&Refused>) -> String {
    let href = format!("/admin/users/{}", url_encode(&u.login));
    let csrf = esc(&ctx.csrf);
    let done = done.map_or_else(String::new, |key| {
        format!(
            "<p class=\"ok\" id=\"done\" data-done=\"{key}\">{}</p>",
            tr(ctx, &format!("users.done_{key}"))
        )
    });
    let mut main = format!(
        "<p><a href=\"/admin/users\">← {back}</a></p><section class=\"card\"><h1>{name} <small><code>{login}</code></small> {status}</h1>{done}{e_user}<dl class=\"figures\">\
<div><dt>{l_role}</dt><dd id=\"role\" data-role=\"{role}\">{role_text}</dd></div><div><dt>{l_subject}</dt><dd>{subject}</dd></div>\
<div><dt>{l_kind}</dt><dd>{kind}</dd></div><div><dt>{l_email}</dt><dd>{email}</dd></div>\
<div><dt>{l_totp}</dt><dd id=\"totp\" data-totp=\"{totp}\">{totp_text}</dd></div><div><dt>{l_password}</dt><dd>{password}</dd></div>\
<div><dt>{l_created}</dt><dd class=\"person\">{created}</dd></div><div><dt>{l_last}</dt><dd class=\"person\">{last}</dd></div></dl></section>",
        back = tr(ctx, "users.title"),
        name = esc(&u.name),
        login = esc(&u.login),
        status = status_of(ctx, u),
        e_user = error_at(refusal, "login"),
        l_role = tr(ctx, "users.role"),
        role = esc(u.principal.role()),
        role_text = esc(tr(ctx, &format!("role.{}", u.principal.role()))),
        l_subject = tr(ctx, "users.subject"),
        subject = if u.principal.subject().is_empty() {
            "—".to_owned()
        } else {
            esc(u.principal.subject())
        },
        l_kind = tr(ctx, "users.kind"),
        kind = if u.service {
            tr(ctx, "users.service")
        } else {
            tr(ctx, "users.person")
        },
        l_email = tr(ctx, "users.email"),
        email = esc(u.email.as_deref().unwrap_or("—")),
        l_totp = tr(ctx, "users.totp"),
        totp = u.totp_secret.is_some(),
        totp_text = yes_no(ctx, u.totp_secret.is_some()),
        l_password = tr(ctx, "signin.password"),
        password = yes_no(ctx, u.password_hash.is_some()),
        l_created = tr(ctx, "users.created_at"),
        created = esc(&shanghai_time(&u.created_at)),
        l_last = tr(ctx, "users.last_signin"),
        last = esc(&u
            .last_signin_at
            .as_deref()
            .map_or_else(|| "—".to_owned(), shanghai_time)),
    );
    main.push_str("<div class=\"cards\">");
    // Disable or enable.
    let (action, key, class) = if u.disabled_at.is_some() {
        ("enable", "users.enable", "")
    } else {
        ("disable", "users.disable", "secondary")
    };
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{h}</h2><p class=\"muted\">{hint}</p><form method=\"post\" action=\"{href}/{action}\" id=\"{action}-user\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"{class}\">{button}</button></form></section>",
        h = tr(ctx, "users.access"),
        hint = tr(ctx, "users.disable_hint"),
        button = tr(ctx, key),
    );
    // Role.
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{h}</h2><form method=\"post\" action=\"{href}/role\" id=\"set-role\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"new-role\">{l_role}</label><select id=\"new-role\" name=\"role\">{roles}</select>{e_role}\
<label for=\"new-subject\">{l_subject} <small>{subject_hint}</small></label><input id=\"new-subject\" name=\"subject\" maxlength=\"128\" value=\"{subject}\">{e_subject}\
<button type=\"submit\">{button}</button></form><p class=\"muted\">{hint}</p></section>",
        h = tr(ctx, "users.change_role"),
        l_role = tr(ctx, "users.role"),
        roles = role_options(ctx, u.principal.role()),
        e_role = error_at(refusal, "role"),
        l_subject = tr(ctx, "users.subject"),
        subject_hint = tr(ctx, "users.subject_hint"),
        subject = esc(u.principal.subject()),
        e_subject = error_at(refusal, "subject"),
        button = tr(ctx, "users.change_role_submit"),
        hint = tr(ctx, "users.role_hint"),
    );
    // Password: people only.
    if u.service {
        let _ = write!(
            main,
            "<section class=\"card\"><h2>{}</h2><p class=\"muted\">{}</p></section>",
            tr(ctx, "users.reset_password"),
            tr(ctx, "users.service_no_password"),
        );
    } else {
        let _ = write!(
            main,
            "<section class=\"card\"><h2>{h}</h2><form method=\"post\" action=\"{href}/password\" id=\"reset-password\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{fields}<button type=\"submit\">{button}</button></form></section>",
            h = tr(ctx, "users.reset_password"),
            fields = password_fields(ctx, refusal),
            button = tr(ctx, "users.reset_password_submit"),
        );
    }
    // Authenticator.
    if u.totp_secret.is_some() {
        let _ = write!(
            main,
            "<section class=\"card\"><h2>{h}</h2><form method=\"post\" action=\"{href}/totp\" id=\"reset-totp\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> {what}</label>{e_confirm}<button type=\"submit\" class=\"secondary\">{button}</button></form></section>",
            h = tr(ctx, "users.totp"),
            what = tr(ctx, "users.reset_totp_confirm"),
            e_confirm = error_at(refusal, "confirm"),
            button = tr(ctx, "users.reset_totp"),
        );
    }
    main.push_str("</div>");
    layout(ctx, &u.name, &main)
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
            .map_err(|e| Refused::invalid("login", e.message))?
            .to_lowercase();
        users::check_login(&login).map_err(|e| Refused::invalid("login", e.to_string()))?;
        let name = form
            .required("name")
            .map_err(|e| Refused::invalid("name", e.message))?;
        users::check_name(name).map_err(|e| Refused::invalid("name", e.to_string()))?;
        let principal = principal_of(form)?;
        let email = form.optional("email").map(str::to_owned);
        if let Some(email) = &email {
            users::check_email(email).map_err(|e| Refused::invalid("email", e.to_string()))?;
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
