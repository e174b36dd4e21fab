//! Single sign-on with OpenID Connect (`auth.oidc.*`): the authorization code flow with PKCE
//! (S256), `state` bound to the browser by a cookie and `nonce` checked in the ID token, whose
//! signature, issuer, audience and expiry the `openidconnect` crate checks against the
//! provider's published keys. The configured claim (`email` or `preferred_username`) names an
//! existing, enabled person in Suanli; nobody is created, and roles stay Suanli's. Provider
//! metadata (discovery and keys) is cached for [`METADATA_TTL`], and dropped when an ID token
//! fails its checks; flows in progress live in the server's memory for at most
//! [`FLOW_SECS_MAX`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use crate::config::{OidcConfig, UserClaim};

/// The cookie that binds a flow's `state` to the browser that started it.
pub const FLOW_COOKIE: &str = "suanli_sso";
/// A sign-in must come back from the provider within this time.
pub const FLOW_SECS_MAX: u64 = 600;
/// Most flows in progress at once; the oldest is dropped beyond it.
pub const FLOWS_MAX: usize = 10_000;
/// Most flows in progress from one client address; its oldest is dropped beyond it.
pub const ADDRESS_FLOWS_MAX: usize = 32;
/// How long the provider's metadata and keys are used before they are fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(300);
/// Longest a call to the provider may take.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `code` or `state` accepted on the callback, in characters.
pub const CALLBACK_FIELD_CHARS_MAX: usize = 2048;

/// The client as built from discovered metadata: authorization endpoint set, token and
/// userinfo endpoints as the provider published them.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A sign-in sent to the provider and not yet back.
struct Flow {
    verifier: String,
    nonce: Nonce,
    /// The address that started it, so one address cannot push out everybody's flows.
    client: Option<std::net::IpAddr>,
    started_at: Instant,
}

/// Why a single sign-on was refused; each has a metric reason and a page.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No flow of this browser with that state: expired, used, or not started here.
    State,
    /// The provider answered with an error, could not be reached, or its token failed a check.
    Provider(String),
    /// The ID token lacks the configured claim, or its email is not verified.
    NoClaim(String),
    /// No enabled person in Suanli has that login or email (or several share the email).
    UnknownUser(String),
    /// The person is disabled.
    Disabled(String),
}

impl Refusal {
    /// The `reason` label of `suanli_console_sso_refusals_total`.
    pub fn reason(&self) -> &'static str {
        use crate::metrics::{
            SSO_DISABLED, SSO_NO_CLAIM, SSO_PROVIDER, SSO_STATE, SSO_UNKNOWN_USER,
        };
        match self {
            Refusal::State => SSO_STATE,
            Refusal::Provider(_) => SSO_PROVIDER,
            Refusal::NoClaim(_) => SSO_NO_CLAIM,
            Refusal::UnknownUser(_) => SSO_UNKNOWN_USER,
            Refusal::Disabled(_) => SSO_DISABLED,
        }
    }
}

/// Who the provider says signed in: the configured claim's value.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    Email(String),
    Login(String),
}

/// The console's OpenID Connect client.
pub struct Sso {
    config: OidcConfig,
    http: openidconnect::reqwest::Client,
    metadata: tokio::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>,
    flows: Mutex<HashMap<String, Flow>>,
}

impl Sso {
    /// The client of `config`; its HTTP client follows no redirects (a redirect could send the
    /// token request elsewhere) and checks the provider's certificate against the system's roots.
    pub fn new(config: OidcConfig) -> anyhow::Result<Sso> {
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(Sso {
            config,
            http,
            metadata: tokio::sync::Mutex::new(None),
            flows: Mutex::new(HashMap::new()),
        })
    }

    /// The provider's metadata and keys, fetched again after [`METADATA_TTL`]. A failed fetch
    /// is not cached: the next sign-in tries again.
    async fn metadata(&self) -> Result<CoreProviderMetadata, String> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, m)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer_url.clone()).map_err(|e| e.to_string())?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| format!("discovery at {}: {}", self.config.issuer_url, chain(&e)))?;
        *cached = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    async fn client(&self) -> Result<Client, String> {
        let redirect =
            RedirectUrl::new(self.config.redirect_url.clone()).map_err(|e| e.to_string())?;
        Ok(CoreClient::from_provider_metadata(
            self.metadata().await?,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in from `client`: returns the provider's authorization URL to send the
    /// browser to and the flow's `state`, for the browser's flow cookie.
    pub async fn start(
        &self,
        client: Option<std::net::IpAddr>,
    ) -> Result<(String, String), String> {
        let oidc = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let scope = match self.config.user_claim {
            UserClaim::Email => "email",
            UserClaim::PreferredUsername => "profile",
        };
        let (url, state, nonce) = oidc
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new(scope.to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        self.remember(
            state.secret().clone(),
            Flow {
                verifier: verifier.secret().clone(),
                nonce,
                client,
                started_at: Instant::now(),
            },
        );
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Keeps a new flow, within [`ADDRESS_FLOWS_MAX`] for its address and [`FLOWS_MAX`] in all
    /// (the oldest goes first), after dropping the expired ones.
    fn remember(&self, state: String, flow: Flow) {
        let mut flows = self.flows.lock().expect("flows lock");
        flows.retain(|_, f| live(f, flow.started_at));
        let from_address = flows.values().filter(|f| f.client == flow.client).count();
        let oldest = |flows: &HashMap<String, Flow>, same_address: bool| {
            flows
                .iter()
                .filter(|(_, f)| !same_address || f.client == flow.client)
                .min_by_key(|(_, f)| f.started_at)
                .map(|(k, _)| k.clone())
        };
        if from_address >= ADDRESS_FLOWS_MAX
            && let Some(k) = oldest(&flows, true)
        {
            flows.remove(&k);
        } else if flows.len() >= FLOWS_MAX
            && let Some(k) = oldest(&flows, false)
        {
            flows.remove(&k);
        }
        flows.insert(state, flow);
    }

    /// Takes the flow of `state` if the browser's cookie names it and it is live: a flow is
    /// used once, whatever the outcome.
    fn take_flow(&self, state: &str, cookie: Option<&str>) -> Result<Flow, Refusal> {
        let bound = cookie.is_some_and(|c| super::same_secret(c, state));
        let mut flows = self.flows.lock().expect("flows lock");
        if !bound {
            return Err(Refusal::State);
        }
        match flows.remove(state) {
            Some(f) if live(&f, Instant::now()) => Ok(f),
            _ => Err(Refusal::State),
        }
    }

    /// Finishes a sign-in from the provider's answer on the callback (`query` holds `state` and
    /// `code`, or `error`): exchanges the code with the flow's PKCE verifier, checks the ID
    /// token and its nonce (and the access token's hash when the token carries one), and
    /// returns the configured claim.
    pub async fn finish(
        &self,
        query: &super::Form,
        cookie: Option<&str>,
    ) -> Result<Claimed, Refusal> {
        let field = |name: &str| {
            query
                .optional(name)
                .filter(|v| !v.is_empty() && v.chars().count() <= CALLBACK_FIELD_CHARS_MAX)
        };
        let state = field("state").ok_or(Refusal::State)?;
        let flow = self.take_flow(state, cookie)?;
        // RFC 9207: a provider that names itself must be the one the flow went to.
        if let Some(iss) = query.optional("iss")
            && iss != self.config.issuer_url
        {
            return Err(Refusal::Provider(format!(
                "iss: the answer came from {iss:?}, not {:?}",
                self.config.issuer_url
            )));
        }
        if let Some(error) = query.optional("error") {
            let description = query.optional("error_description").unwrap_or("");
            return Err(Refusal::Provider(
                format!("{error}: {description}")
                    .trim_end_matches([' ', ':'])
                    .to_owned(),
            ));
        }
        let code = field("code")
            .ok_or_else(|| Refusal::Provider("code: the answer carries no code".into()))?;
        let client = self.client().await.map_err(Refusal::Provider)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| Refusal::Provider(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| Refusal::Provider(format!("token request: {}", chain(&e))))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| Refusal::Provider("the token response has no ID token".into()))?;
        let verifier = client.id_token_verifier();
        let claims = match id_token.claims(&verifier, &flow.nonce) {
            Ok(claims) => claims,
            Err(e) => {
                // The provider may have rotated its keys: the next sign-in fetches them again.
                *self.metadata.lock().await = None;
                return Err(Refusal::Provider(format!("ID token: {e}")));
            }
        };
        if let Some(expected) = claims.access_token_hash() {
            let algorithm = id_token
                .signing_alg()
                .map_err(|e| Refusal::Provider(format!("ID token: {e}")))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| Refusal::Provider(format!("ID token: {e}")))?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), algorithm, key)
                .map_err(|e| Refusal::Provider(format!("at_hash: {e}")))?;
            if actual != *expected {
                return Err(Refusal::Provider(
                    "at_hash: the access token is not the one the ID token names".into(),
                ));
            }
        }
        let from_token = pick(
            self.config.user_claim,
            claims.email().map(|e| e.as_str()),
            claims.email_verified(),
            claims.preferred_username().map(|u| u.as_str()),
        );
        if let Some(picked) = from_token {
            return picked;
        }
        // Some providers put the profile's claims only in the userinfo answer (as the core
        // specification has it when an access token is issued): ask there, for the same subject.
        let Ok(request) = client.user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        ) else {
            return Err(Refusal::NoClaim(self.config.user_claim.name().to_owned()));
        };
        let info: CoreUserInfoClaims = request
            .request_async(&self.http)
            .await
            .map_err(|e| Refusal::Provider(format!("userinfo: {}", chain(&e))))?;
        pick(
            self.config.user_claim,
            info.email().map(|e| e.as_str()),
            info.email_verified(),
            info.preferred_username().map(|u| u.as_str()),
        )
        .unwrap_or_else(|| Err(Refusal::NoClaim(self.config.user_claim.name().to_owned())))
    }
}

/// The configured claim among those a provider sent: `None` when it is absent; a refusal when
/// the email is one the provider says it has not verified.
fn pick(
    claim: UserClaim,
    email: Option<&str>,
    email_verified: Option<bool>,
    preferred_username: Option<&str>,
) -> Option<Result<Claimed, Refusal>> {
    match claim {
        UserClaim::Email => {
            let email = email.map(str::trim).filter(|e| !e.is_empty())?;
            // A provider that says the address is unverified does not vouch for it.
            Some(if email_verified == Some(false) {
                Err(Refusal::NoClaim(format!("email_verified: {email}")))
            } else {
                Ok(Claimed::Email(email.to_owned()))
            })
        }
        UserClaim::PreferredUsername => preferred_username
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| Ok(Claimed::Login(u.to_lowercase()))),
    }
}

impl super::Console {
    /// The person the provider's claim names, as a new session's id: an enabled person (never
    /// a service account) whose login, or whose email, is the claim. Nobody is created. The
    /// one-time code is not asked: the identity provider owns second factors.
    pub(super) async fn sign_in_sso(
        &self,
        claimed: Claimed,
        client: Option<std::net::IpAddr>,
    ) -> Result<Result<String, Refusal>, super::ConsoleError> {
        let store_error =
            |e: suanli_store::StoreError| super::ConsoleError::Unavailable(format!("store: {e}"));
        let (shown, found) = match claimed {
            Claimed::Login(login) => {
                let wanted = login.clone();
                let row = self
                    .store(move |store| suanli_app::access::user_by_login(store, &wanted))
                    .await?
                    .map_err(store_error)?;
                (
                    format!("preferred_username {login}"),
                    row.into_iter().collect::<Vec<_>>(),
                )
            }
            Claimed::Email(email) => {
                let wanted = email.clone();
                let rows = self
                    .store(move |store| suanli_app::access::users_by_email(store, &wanted))
                    .await?
                    .map_err(store_error)?;
                (format!("email {email}"), rows)
            }
        };
        let mut people = found.into_iter().filter(|u| !u.service);
        let (Some(user), None) = (people.next(), people.next()) else {
            return Ok(Err(Refusal::UnknownUser(shown)));
        };
        if user.disabled_at.is_some() {
            return Ok(Err(Refusal::Disabled(shown)));
        }
        let identity = crate::auth::Identity {
            principal: user.principal.clone(),
            user: Some(user.user_ref()),
        };
        Ok(Ok(self.new_session(
            super::SignedInWith::User {
                identity,
                checked_at: Instant::now(),
                via: super::Via::Sso,
            },
            Some(user.user_id),
            client,
        )))
    }
}

fn live(f: &Flow, now: Instant) -> bool {
    now.duration_since(f.started_at) < Duration::from_secs(FLOW_SECS_MAX)
}

/// An error and its sources on one line: a transport error's cause is in its source.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn sso() -> Sso {
        Sso::new(OidcConfig {
            issuer_url: "http://localhost:1".into(),
            client_id: "suanli".into(),
            client_secret: Secret::new("s"),
            redirect_url: "http://127.0.0.1:8080/signin/sso/callback".into(),
            user_claim: UserClaim::Email,
        })
        .unwrap()
    }

    fn flow(age: Duration) -> Flow {
        Flow {
            verifier: "v".into(),
            nonce: Nonce::new("n".into()),
            client: None,
            started_at: Instant::now() - age,
        }
    }

    // One address keeps at most ADDRESS_FLOWS_MAX flows (its oldest goes), so flooding the
    // start of sign-ins from one address leaves other browsers' flows alone.
    #[test]
    fn one_address_cannot_push_out_other_flows() {
        let s = sso();
        let other: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let flooder: std::net::IpAddr = "10.0.0.66".parse().unwrap();
        s.remember(
            "theirs".into(),
            Flow {
                client: Some(other),
                ..flow(Duration::from_secs(5))
            },
        );
        for i in 0..ADDRESS_FLOWS_MAX * 3 {
            // Each later than the one before, so "oldest" is well defined.
            let age = Duration::from_millis(1000 - i as u64);
            s.remember(
                format!("flood-{i}"),
                Flow {
                    client: Some(flooder),
                    ..flow(age)
                },
            );
        }
        let flows = s.flows.lock().unwrap();
        assert_eq!(
            flows.len(),
            ADDRESS_FLOWS_MAX + 1,
            "the flooder's newest, and theirs"
        );
        assert!(
            flows.contains_key("theirs"),
            "another browser's flow is kept"
        );
        let newest = format!("flood-{}", ADDRESS_FLOWS_MAX * 3 - 1);
        assert!(flows.contains_key(&newest), "the flooder's newest is kept");
        assert!(!flows.contains_key("flood-0"), "the flooder's oldest went");
    }

    // A flow is taken only by the browser whose cookie names its state, only once, and only
    // while it is live.
    #[test]
    fn a_flow_is_bound_to_its_browser_used_once_and_expires() {
        let s = sso();
        s.flows
            .lock()
            .unwrap()
            .insert("st".into(), flow(Duration::ZERO));
        assert_eq!(s.take_flow("st", None).err(), Some(Refusal::State));
        assert_eq!(s.take_flow("st", Some("other")).err(), Some(Refusal::State));
        assert!(s.take_flow("st", Some("st")).is_ok(), "its own browser");
        assert_eq!(
            s.take_flow("st", Some("st")).err(),
            Some(Refusal::State),
            "used once"
        );
        s.flows
            .lock()
            .unwrap()
            .insert("old".into(), flow(Duration::from_secs(FLOW_SECS_MAX + 1)));
        assert_eq!(
            s.take_flow("old", Some("old")).err(),
            Some(Refusal::State),
            "expired"
        );
    }

    // The configured claim is picked; an unverified email is refused, an absent claim is None
    // (the userinfo answer is asked then), a login is lower-cased.
    #[test]
    fn the_configured_claim_is_picked() {
        use UserClaim::{Email, PreferredUsername};
        assert_eq!(
            pick(Email, Some(" a@b.org "), None, Some("x")),
            Some(Ok(Claimed::Email("a@b.org".into())))
        );
        assert_eq!(
            pick(Email, Some("a@b.org"), Some(false), None),
            Some(Err(Refusal::NoClaim("email_verified: a@b.org".into())))
        );
        assert_eq!(pick(Email, None, Some(true), Some("x")), None);
        assert_eq!(pick(Email, Some(" "), None, None), None);
        assert_eq!(
            pick(PreferredUsername, Some("a@b.org"), None, Some("Fin-SSO")),
            Some(Ok(Claimed::Login("fin-sso".into())))
        );
        assert_eq!(pick(PreferredUsername, Some("a@b.org"), None, None), None);
    }

    // A callback without a live flow is refused before anything is sent to the provider, and
    // a provider's error is shown with its description.
    #[tokio::test]
    async fn callbacks_without_a_flow_or_with_an_error() {
        let s = sso();
        let q = super::super::Form::parse(b"state=nope&code=c").unwrap();
        assert_eq!(s.finish(&q, Some("nope")).await.err(), Some(Refusal::State));
        s.flows
            .lock()
            .unwrap()
            .insert("st".into(), flow(Duration::ZERO));
        let q = super::super::Form::parse(
            b"state=st&error=access_denied&error_description=End-User+aborted",
        )
        .unwrap();
        assert_eq!(
            s.finish(&q, Some("st")).await.err(),
            Some(Refusal::Provider("access_denied: End-User aborted".into()))
        );
        s.flows
            .lock()
            .unwrap()
            .insert("st2".into(), flow(Duration::ZERO));
        let q = super::super::Form::parse(b"state=st2&code=c&iss=http%3A%2F%2Fevil").unwrap();
        assert!(
            matches!(s.finish(&q, Some("st2")).await, Err(Refusal::Provider(m)) if m.starts_with("iss:")),
            "another issuer's answer"
        );
    }
}
