//! The account page of a signed-in person: who they are, their authenticator (TOTP enrolment
//! with a QR code, RFC 6238), and their sessions, each revocable.

use std::time::Instant;

use askama::Template;

use super::pages::tr;
use super::view::{Markup, View, view};
use super::{Code, Console, ConsoleError, Ctx, SignedInWith, Via, alive};

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

/// The enrolment QR code and the key to type instead.
struct Enrolment {
    qr: QrCode,
    secret: String,
}

/// The enrolment QR code as inline SVG (allowed by the console's CSP, unlike scripts), drawn by
/// the `qrcode` crate: dark modules as paths, no text from the page.
struct QrCode(String);

impl std::fmt::Display for QrCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// The SVG is the qrcode crate's drawing of the code's modules; nothing of the input appears
// in it as text.
impl askama::filters::HtmlSafe for QrCode {}

fn qr_svg(url: &str) -> QrCode {
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build();
            // Inline in HTML: without the XML declaration.
            QrCode(
                svg.find("<svg")
                    .map_or(svg.clone(), |at| svg[at..].to_owned()),
            )
        }
        Err(_) => QrCode(String::new()),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    who: &'a str,
    enrolled: bool,
    enrolment: Option<Enrolment>,
    password_session: bool,
    /// Signed in by single sign-on: the identity provider owns second factors.
    sso_session: bool,
    listed: Vec<Listed>,
    refused: Option<super::FieldError>,
}

view!(AccountPage);

fn page(template: &impl Template) -> String {
    Markup::render(template).into_string()
}

impl Console {
    /// The account page; `refused` is a refused enrolment or revocation, shown beside its
    /// field.
    pub(super) async fn account_page(
        &self,
        ctx: &Ctx,
        refused: Option<super::FieldError>,
    ) -> Result<String, ConsoleError> {
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

        // The enrolment's QR code and key, while the user has no authenticator.
        let enrolment = match (&row, pending) {
            (Some(r), Some(secret)) if r.totp_secret.is_none() => {
                let url = suanli_app::totp::otpauth_url(&secret, &r.login);
                Some(Enrolment {
                    qr: qr_svg(&url),
                    secret,
                })
            }
            _ => None,
        };
        Ok(page(&AccountPage {
            ctx,
            title: tr(ctx, "account.title"),
            who: &actor.actor,
            enrolled: row.as_ref().is_some_and(|r| r.totp_secret.is_some()),
            enrolment,
            password_session,
            sso_session,
            listed,
            refused,
        }))
    }

    /// Confirms the enrolment shown on the account page with a code from the app.
    pub(super) async fn enrol_totp(&self, ctx: &Ctx, code: &str) -> Result<(), ConsoleError> {
        let actor = ctx.actor.clone().expect("signed in");
        let id = ctx.session_id.clone().expect("signed in");
        let user_id = actor.user.as_ref().map(|u| u.user_id).ok_or_else(|| {
            ConsoleError::field(
                "code",
                Code::EnrolWithPassword,
                "a session signed in with an API token cannot enrol an authenticator",
            )
        })?;
        let secret = self
            .sessions
            .lock()
            .expect("sessions lock")
            .get(&id)
            .and_then(|s| s.pending_totp.clone())
            .ok_or_else(|| {
                ConsoleError::field(
                    "code",
                    Code::EnrolReload,
                    "no enrolment is pending; reload the account page",
                )
            })?;
        if !self.fresh_code(user_id, &secret, code) {
            return Err(ConsoleError::field(
                "code",
                Code::CodeWrong,
                "the one-time code is wrong, expired or already used",
            ));
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
                Code::NotYourSession,
                format!("{handle:?} is not one of your sessions"),
            )),
        }
    }
}
