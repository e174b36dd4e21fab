//! What every console template may call: the page's strings in its language, money, times,
//! and the header's navigation. Templates are askama's (`crates/server/templates/`), checked at
//! compile time and HTML-escaped by default; [`Markup`] is the only way to put already rendered
//! HTML into a page, and only a template can make one.

use std::fmt;

use askama::Template;
use suanli_domain::money::Fen;
use suanli_store::Principal;

use super::Ctx;
use super::format::{cny, shanghai_time};
use super::i18n::{Lang, t};

/// HTML rendered by a template (a chart, a legend): shown as it is, never escaped twice.
pub struct Markup(String);

impl Markup {
    /// Renders `template`; a template that fails to render (a `Display` error of a field)
    /// shows nothing rather than half a page.
    pub fn render(template: &impl Template) -> Markup {
        Markup(template.render().unwrap_or_else(|e| {
            tracing::error!(error = %e, "console template failed");
            String::new()
        }))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Markup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Markup {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

// A template's output is escaped where it was rendered.
impl askama::filters::HtmlSafe for Markup {}

/// An amount a template shows: fen as `Fen` or as the stores' `i64`.
pub trait Money {
    fn fen(&self) -> Fen;
}

impl Money for Fen {
    fn fen(&self) -> Fen {
        *self
    }
}

impl Money for i64 {
    fn fen(&self) -> Fen {
        Fen(*self)
    }
}

impl<T: Money + ?Sized> Money for &T {
    fn fen(&self) -> Fen {
        (**self).fen()
    }
}

/// One link of the header's navigation.
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The helpers every page template calls; a template struct implements it with [`view!`].
pub trait View {
    fn ctx(&self) -> &Ctx;

    /// The string of `key` in the page's language (`i18n.rs`).
    fn t(&self, key: impl AsRef<str>) -> &'static str {
        t(self.ctx().lang, key.as_ref())
    }

    /// The string of `prefix.key`, for codes shown by name (statuses, outcomes, reasons).
    fn tk(&self, prefix: &str, key: impl AsRef<str>) -> &'static str {
        t(self.ctx().lang, &format!("{prefix}.{}", key.as_ref()))
    }

    /// CNY from integer fen: `¥1,234.56`.
    fn cny(&self, amount: impl Money) -> String {
        cny(amount.fen())
    }

    /// An RFC 3339 instant in Asia/Shanghai.
    fn time(&self, text: impl AsRef<str>) -> String {
        shanghai_time(text.as_ref())
    }

    fn zh(&self) -> bool {
        self.ctx().lang == Lang::Zh
    }

    /// The role's links, the current page's marked.
    fn nav(&self) -> Vec<NavLink> {
        let ctx = self.ctx();
        let links: &[(&'static str, &str)] = match &ctx.principal {
            None => &[],
            Some(Principal::Beneficiary(_)) => &[("/enterprise", "nav.enterprise")],
            Some(Principal::Provider(_)) => &[("/provider", "nav.provider")],
            Some(Principal::Finance | Principal::Auditor | Principal::Admin) => &[
                ("/finance", "nav.finance"),
                ("/audit", "nav.audit"),
                ("/enterprise", "nav.enterprise"),
                ("/provider", "nav.provider"),
            ],
        };
        links
            .iter()
            .map(|(href, key)| NavLink {
                href,
                label: t(ctx.lang, key),
                current: ctx.path.starts_with(href),
            })
            .collect()
    }

    /// The person signed in, named first: `财务一号 (finance1)`, when a user is.
    fn person(&self) -> Option<&str> {
        self.ctx()
            .actor
            .as_ref()
            .filter(|a| a.user.is_some())
            .map(|a| a.actor.as_str())
    }
}

/// Implements [`View`] for template structs with a `ctx: &Ctx` field.
macro_rules! view {
    ($($name:ident),* $(,)?) => {$(
        impl $crate::console::view::View for $name<'_> {
            fn ctx(&self) -> &$crate::console::Ctx {
                self.ctx
            }
        }
    )*};
}
pub(super) use view;
