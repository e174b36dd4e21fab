//! The account page of a signed-in person: who they are, their authenticator (TOTP enrolment
//! with a QR code, RFC 6238), and their sessions, each revocable.

use std::fmt::Write as _;
use std::time::Instant;

use super::format::esc;
use super::pages::{layout, tr};
use super::{Console, ConsoleError, Ctx, SignedInWith, Via, alive};

/// One of the user's sessions, as the page lists it.
struct Listed {
    handle: String,
    /// The i18n key of how the session signed in.
    via: &'static str,
    client: String,
    created_mins: u64,
    seen_mins: u64,
    current: bool,
}

/// The enrolment QR code of `url` as inline SVG (allowed by the console's CSP, unlike scripts).
fn qr_svg(url: &str) -> String {
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build();
            // Inline in HTML: without the XML declaration.
            svg.find("<svg")
                .map_or(svg.clone(), |at| svg[at..].to_owned())
        }
        Err(_) => String::new(),
    }
}

impl Console {
    pub(super) async fn account_page(&self, ctx: &Ctx) -> Result<String, ConsoleError> {
        let actor = ctx.actor.as_ref().expect("signed in");
        let id = ctx.session_id.clone().expect("signed in");
        let row = match &actor.user {
            Some(u) => {
                let user_id = u.user_id;
                self.store(move |s| suanli_app::access::user(s, user_id))
                    .await?
                    .map_err(|e| ConsoleError::Unavailable(format!("store: {e}")))?
            }
            None => None,
        };
        let now = Instant::now();
        let (password_session, sso_session, pending, listed) = {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            let mut password_session = false;
            let mut sso_session = false;
            let mut pending = None;
            if let Some(me) = sessions.get_mut(&id) {
                password_session = matches!(
                    me.with,
                    SignedInWith::User {
                        via: Via::Password,
                        ..
                    }
                );
                sso_session = matches!(me.with, SignedInWith::User { via: Via::Sso, .. });
                if password_session && row.as_ref().is_some_and(|r| r.totp_secret.is_none()) {
                    let secret = me
                        .pending_totp
                        .get_or_insert_with(suanli_app::totp::new_secret);
                    pending = Some(secret.clone());
                }
            }
            let user_id = row.as_ref().map(|r| r.user_id);
            let mut listed: Vec<Listed> = sessions
                .iter()
                .filter(|(_, s)| user_id.is_some() && s.user_id == user_id && alive(s, now))
                .map(|(k, s)| Listed {
                    handle: s.handle.clone(),
                    via: match s.with {
                        SignedInWith::User {
                            via: Via::Password, ..
                        } => "via.password",
                        SignedInWith::User { via: Via::Sso, .. } => "via.sso",
                        SignedInWith::Token(_) => "via.token",
                    },
                    client: s.client.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                    created_mins: now.duration_since(s.created_at).as_secs() / 60,
                    seen_mins: now.duration_since(s.seen_at).as_secs() / 60,
                    current: *k == id,
                })
                .collect();
            listed.sort_by_key(|l| (!l.current, l.created_mins));
            (password_session, sso_session, pending, listed)
        };

        let mut main = format!(
            "<section class=\"card narrow\"><h1>{title}</h1><p id=\"person\">{who}</p>",
            title = tr(ctx, "account.title"),
            who = esc(&actor.actor),
        );
        main.push_str(&format!("<h2>{}</h2>", tr(ctx, "account.totp")));
        match (&row, pending) {
            _ if sso_session => {
                let _ = write!(
                    main,
                    "<p id=\"totp-status\" data-sso=\"true\">{}</p>",
                    tr(ctx, "account.totp_sso")
                );
            }
            (Some(r), _) if r.totp_secret.is_some() => {
                let _ = write!(
                    main,
                    "<p id=\"totp-status\" data-enrolled=\"true\">{}</p>",
                    tr(ctx, "account.totp_on")
                );
            }
            (Some(r), Some(secret)) => {
                let url = suanli_app::totp::otpauth_url(&secret, &r.login);
                if ctx.must_enrol {
                    let _ = write!(
                        main,
                        "<p class=\"error\" id=\"error\" data-field=\"code\">{}</p>",
                        tr(ctx, "account.totp_required")
                    );
                }
                let _ = write!(
                    main,
                    "<p id=\"totp-status\" data-enrolled=\"false\">{intro}</p><div class=\"qr\">{qr}</div>\
<p>{manual} <code id=\"totp-secret\">{secret}</code></p>\
<form method=\"post\" action=\"/account/totp\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"code\">{code}</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required maxlength=\"6\">\
<button type=\"submit\">{confirm}</button></form>",
                    intro = tr(ctx, "account.totp_intro"),
                    qr = qr_svg(&url),
                    manual = tr(ctx, "account.totp_manual"),
                    secret = esc(&secret),
                    csrf = esc(&ctx.csrf),
                    code = tr(ctx, "signin.code"),
                    confirm = tr(ctx, "account.totp_confirm"),
                );
            }
            _ => {
                let why = if password_session {
                    tr(ctx, "account.totp_none")
                } else {
                    tr(ctx, "account.totp_token")
                };
                let _ = write!(main, "<p id=\"totp-status\">{why}</p>");
            }
        }
        let _ = write!(
            main,
            "<h2>{}</h2><div class=\"scroll\"><table id=\"sessions\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
            tr(ctx, "account.sessions"),
            tr(ctx, "account.via"),
            tr(ctx, "account.client"),
            tr(ctx, "account.created_mins"),
            tr(ctx, "account.seen_mins"),
        );
        for l in &listed {
            let action = if l.current {
                tr(ctx, "account.this_session").to_owned()
            } else {
                format!(
                    "<form method=\"post\" action=\"/account/sessions/revoke\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"session\" value=\"{}\"><button type=\"submit\" class=\"link\">{}</button></form>",
                    esc(&ctx.csrf),
                    esc(&l.handle),
                    tr(ctx, "account.revoke")
                )
            };
            let _ = write!(
                main,
                "<tr data-session=\"{}\"><td data-via=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                esc(&l.handle),
                l.via,
                tr(ctx, l.via),
                esc(&l.client),
                l.created_mins,
                l.seen_mins,
            );
        }
        main.push_str("</tbody></table></div></section>");
        Ok(layout(ctx, tr(ctx, "account.title"), &main))
    }

    /// Confirms the enrolment shown on the account page with a code from the app.
    pub(super) async fn enrol_totp(&self, ctx: &Ctx, code: &str) -> Result<(), ConsoleError> {
        let actor = ctx.actor.clone().expect("signed in");
        let id = ctx.session_id.clone().expect("signed in");
        let user_id = actor
            .user
            .as_ref()
            .map(|u| u.user_id)
            .ok_or_else(|| ConsoleError::field("code", tr(ctx, "account.totp_token")))?;
        let secret = self
            .sessions
            .lock()
            .expect("sessions lock")
            .get(&id)
            .and_then(|s| s.pending_totp.clone())
            .ok_or_else(|| ConsoleError::field("code", tr(ctx, "account.totp_reload")))?;
        if !self.fresh_code(user_id, &secret, code) {
            return Err(ConsoleError::field("code", tr(ctx, "signin.code_wrong")));
        }
        let stored = secret.clone();
        self.store(move |s| suanli_app::users::enrol_totp(s, &actor, user_id, &stored))
            .await?
            .map_err(|e| super::settle_error(e, "code"))?;
        if let Some(s) = self.sessions.lock().expect("sessions lock").get_mut(&id) {
            s.pending_totp = None;
            s.must_enrol = false;
        }
        Ok(())
    }

    /// Ends one of the signed-in user's sessions, named by its handle.
    pub(super) fn revoke_session(&self, ctx: &Ctx, handle: &str) -> Result<(), ConsoleError> {
        let user_id = ctx
            .actor
            .as_ref()
            .and_then(|a| a.user.as_ref())
            .map(|u| u.user_id);
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let found = sessions
            .iter()
            .find(|(_, s)| user_id.is_some() && s.user_id == user_id && s.handle == handle)
            .map(|(k, _)| k.clone());
        match found {
            Some(k) => {
                sessions.remove(&k);
                Ok(())
            }
            None => Err(ConsoleError::field(
                "session",
                format!("{handle:?} is not one of your sessions"),
            )),
        }
    }
}
