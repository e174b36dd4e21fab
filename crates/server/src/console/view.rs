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
use super::i18n::{Lang, lookup, t};

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

    /// `text` percent-encoded for a query value (a link's filters); the template escapes the
    /// link as a whole.
    fn query_value(&self, text: impl AsRef<str>) -> String {
        super::format::url_encode(text.as_ref())
    }

    /// An RFC 3339 instant in Asia/Shanghai.
    fn time(&self, text: impl AsRef<str>) -> String {
        shanghai_time(text.as_ref())
    }

    /// `prefix.code` from the table, or the code itself when the table has no name for it.
    fn named(&self, prefix: &str, code: &str) -> String {
        lookup(self.ctx().lang, &format!("{prefix}.{code}"))
            .map_or_else(|| code.to_owned(), str::to_owned)
    }

    /// Why a line was cut (`beneficiary_cap`, …), named; empty when it was not.
    fn cut(&self, code: impl AsRef<str>) -> String {
        let code = code.as_ref();
        if code.is_empty() {
            String::new()
        } else {
            self.named("cut", code)
        }
    }

    /// The registry whose names a page gives programmes and parties, where it has one.
    fn registry(&self) -> Option<&suanli_domain::Registry> {
        None
    }

    /// A count with thousands separators: `800,000`.
    fn count<N: Copy + TryInto<u64>>(&self, n: &N) -> String {
        super::lists::format_count((*n).try_into().unwrap_or(u64::MAX))
    }

    /// A number of records in words: `1 条记录`, `1,234 records`.
    fn records_count(&self, n: &i64) -> String {
        if *n == 1 {
            self.t("records.one").to_owned()
        } else {
            self.t("records.n")
                .replace("{n}", &super::lists::format_count(n.unsigned_abs()))
        }
    }

    /// A programme's name in [`View::registry`]; empty where the page has no registry, the
    /// registry no longer holds the programme or names it by its id (the id is shown alone).
    fn programme_name(&self, id: impl AsRef<str>) -> String {
        let id = id.as_ref();
        self.registry()
            .and_then(|r| r.programme(id))
            .map(|p| p.name.as_str())
            .filter(|name| *name != id)
            .unwrap_or_default()
            .to_owned()
    }

    /// A beneficiary's or provider's name in [`View::registry`]; empty as
    /// [`View::programme_name`].
    fn party_name(&self, id: impl AsRef<str>) -> String {
        let id = id.as_ref();
        self.registry()
            .and_then(|r| party_name_in(r, id))
            .filter(|name| *name != id)
            .unwrap_or_default()
            .to_owned()
    }

    /// A ledger account named: `资金池支出 · 杭州市级算力券 2025 · 市级`, `应付款 · P · A`,
    /// with the names of [`View::registry`] (the ids where a page has none, or the registry no
    /// longer holds them: the account's code is shown beside it).
    fn account(&self, code: impl AsRef<str>) -> String {
        let registry = self.registry();
        let mut parts = code.as_ref().split(':');
        let kind = parts.next().unwrap_or_default();
        let mut named = vec![self.named("account", kind)];
        if let Some(programme) = parts.next() {
            named.push(
                registry
                    .and_then(|r| r.programme(programme))
                    .map_or(programme, |p| p.name.as_str())
                    .to_owned(),
            );
        }
        let rest: Vec<&str> = parts.collect();
        if !rest.is_empty() {
            let rest = rest.join(":");
            named.push(if kind == "expense" {
                self.named("funder", &rest)
            } else {
                registry
                    .and_then(|r| party_name_in(r, &rest))
                    .map_or(rest.clone(), str::to_owned)
            });
        }
        named.join(" · ")
    }

    /// An actor as stored: a person (`name (login)`) as it is; a credential without a user
    /// (`finance:3f2a…`) with its role named.
    fn actor(&self, text: impl AsRef<str>) -> String {
        let text = text.as_ref();
        match text.split_once(':') {
            Some((role, rest)) if lookup(self.ctx().lang, &format!("role.{role}")).is_some() => {
                format!("{}:{rest}", self.named("role", role))
            }
            _ => text.to_owned(),
        }
    }

    fn zh(&self) -> bool {
        self.ctx().lang == Lang::Zh
    }

    /// The role's links, the current page's marked.
    fn nav(&self) -> Vec<NavLink> {
        let ctx = self.ctx();
        let links: &[(&'static str, &str)] = match &ctx.principal {
            None => &[],
            Some(Principal::Beneficiary(_)) => &[
                ("/enterprise", "nav.enterprise"),
                ("/records", "list.records"),
            ],
            Some(Principal::Provider(_)) => {
                &[("/provider", "nav.provider"), ("/records", "list.records")]
            }
            Some(Principal::Finance | Principal::Auditor) => &[
                ("/finance", "nav.finance"),
                ("/audit", "nav.audit"),
                ("/enterprise", "nav.enterprise"),
                ("/provider", "nav.provider"),
                ("/finance/enterprises", "list.lists"),
            ],
            Some(Principal::Admin) => &[
                ("/finance", "nav.finance"),
                ("/audit", "nav.audit"),
                ("/enterprise", "nav.enterprise"),
                ("/provider", "nav.provider"),
                ("/finance/enterprises", "list.lists"),
                ("/admin/users", "nav.users"),
            ],
        };
        // The longest link the path starts with is the current one (`/finance/enterprises`,
        // not also `/finance`).
        let current = links
            .iter()
            .filter(|(href, _)| ctx.path.starts_with(href))
            .max_by_key(|(href, _)| href.len())
            .map(|(href, _)| *href);
        links
            .iter()
            .map(|(href, key)| NavLink {
                href,
                label: t(ctx.lang, key),
                current: current == Some(*href),
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

/// A beneficiary's or provider's name in `registry`.
pub(super) fn party_name_in<'r>(
    registry: &'r suanli_domain::Registry,
    id: &str,
) -> Option<&'r str> {
    registry
        .beneficiary(id)
        .map(|b| b.name.as_str())
        .or_else(|| registry.provider(id).map(|p| p.name.as_str()))
}

/// Implements [`View`] for template structs with a `ctx: &Ctx` field (and, after
/// `registry:`, a `registry: Option<Arc<Registry>>` field naming programmes and parties).
macro_rules! view {
    (registry: $($name:ident),* $(,)?) => {$(
        impl $crate::console::view::View for $name<'_> {
            fn ctx(&self) -> &$crate::console::Ctx {
                self.ctx
            }

            fn registry(&self) -> Option<&suanli_domain::Registry> {
                self.registry.as_deref()
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {$(
        impl $crate::console::view::View for $name<'_> {
            fn ctx(&self) -> &$crate::console::Ctx {
                self.ctx
            }
        }
    )*};
}
pub(super) use view;

#[cfg(test)]
mod tests {
    use super::*;

    struct Page(Ctx);

    impl View for Page {
        fn ctx(&self) -> &Ctx {
            &self.0
        }
    }

    /// A page with a registry.
    struct Named(Page, suanli_domain::Registry);

    impl View for Named {
        fn ctx(&self) -> &Ctx {
            &self.0.0
        }

        fn registry(&self) -> Option<&suanli_domain::Registry> {
            Some(&self.1)
        }
    }

    fn page(lang: Lang) -> Page {
        Page(Ctx {
            lang,
            set_lang: false,
            principal: None,
            actor: None,
            client: None,
            must_enrol: false,
            csrf: String::new(),
            session_id: None,
            path: "/audit".into(),
            query_without_lang: String::new(),
            sso: false,
            sso_flow: None,
        })
    }

    // Codes are named in the page's language; codes the table does not know stay as they are.
    #[test]
    fn codes_are_named_in_the_page_language() {
        let zh = page(Lang::Zh);
        assert_eq!(
            zh.account("expense:hz-municipal-2025:city"),
            "资金池支出 · hz-municipal-2025 · 市级"
        );
        assert_eq!(zh.account("payable:p:dc-a"), "应付款 · p · dc-a");
        assert_eq!(zh.account("paid:p:dc-a"), "已付款 · p · dc-a");
        assert_eq!(zh.account("expense:p:someone"), "资金池支出 · p · someone");
        assert_eq!(zh.cut("beneficiary_cap"), "企业额度上限");
        assert_eq!(zh.cut(""), "");
        assert_eq!(zh.named("journal", "run"), "结算过账");
        assert_eq!(zh.actor("finance:3f2a9c"), "财务:3f2a9c");
        assert_eq!(zh.actor("财务一号 (finance1)"), "财务一号 (finance1)");
        let en = page(Lang::En);
        assert_eq!(en.account("expense:p"), "Subsidy expense · p");
        let registry = suanli_domain::Registry::from_toml(
            "worked.toml",
            include_str!("../../../../examples/worked/registry.toml"),
        )
        .expect("the worked registry loads")
        .0;
        let named = Named(page(Lang::Zh), registry);
        assert_eq!(
            named.account("expense:hz-municipal-2025:city"),
            "资金池支出 · 杭州市级算力券 2025 · 市级"
        );
        assert_eq!(
            named.account("payable:national-intelligence-2025:dc-b"),
            "应付款 · 国家智能券 2025 · B"
        );
        assert_eq!(
            named.account("paid:hz-municipal-2025:gone"),
            "已付款 · 杭州市级算力券 2025 · gone",
            "an id the registry no longer holds stays"
        );
        assert_eq!(en.cut("pool"), "pool");
        assert_eq!(en.named("journal", "payment"), "Payment");
    }
}
