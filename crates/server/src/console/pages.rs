//! The console's pages: sign-in, errors, and the enterprise, provider, finance and auditor
//! views. Each page reads through the settlement use cases (`settle.rs`) on the writer thread
//! (the audit page reads its ledger a page at a time beside it) and fills a template
//! (`crates/server/templates/`); actions call the same use cases as the gRPC services.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use suanli_domain::money::Fen;
use suanli_store::Principal;
use suanli_store::ingest_stats::{self, ReasonRow};
use suanli_store::ledger::{JournalShown, RunLineRow, RunRow};

use super::charts::{Axes, Column, Segment, Unit, columns, legend, progress};
use super::format::{shanghai, url_encode};
use super::i18n::{Lang, lookup, t};
use super::lists::{format_count, next_day, read_ledger, time_bound};
use super::view::{Markup, View, view};
use super::{
    Code, Console, ConsoleError, Ctx, FINANCE, FieldError, Form, READERS, require, settle_error,
};
use suanli_app::balances::{Balance, ProgrammeOverview};
use suanli_app::ledger::PayeePosition;
use suanli_app::settlement::{self as settle};

/// Journals on one page of the audit page's journal (newest first).
pub const JOURNALS_PER_PAGE: u64 = 50;
/// Journals the audit page counts; above it, it says "more than".
pub const JOURNALS_COUNTED_MAX: u64 = 10_000;
/// Entries of a journal shown on the audit page; a longer journal (a run's, one entry per
/// payee) says how many it has.
pub const ENTRIES_SHOWN_MAX: i64 = 50;
/// Accounts on one page of the trial balance.
pub const ACCOUNTS_PER_PAGE: u64 = 200;
/// Posted runs offered for re-derive on the audit page (the latest); the runs list has all.
pub const POSTED_RUNS_SHOWN: i64 = 20;
/// The highest page number asked for.
const PAGE_MAX: u64 = 1_000_000;
/// Days of ingest statistics shown to a provider.
pub const INGEST_DAYS_SHOWN: i64 = 14;

pub(super) fn tr(ctx: &Ctx, key: &str) -> &'static str {
    t(ctx.lang, key)
}

/// Renders a page template to the response body.
fn page(template: &impl Template) -> String {
    Markup::render(template).into_string()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    status: u16,
    error: &'a FieldError,
}

pub fn error_page(ctx: &Ctx, status: StatusCode, error: &FieldError) -> String {
    let title = match status {
        StatusCode::FORBIDDEN => tr(ctx, "error.forbidden"),
        StatusCode::NOT_FOUND => tr(ctx, "error.not_found"),
        StatusCode::UNAUTHORIZED => tr(ctx, "error.signin"),
        StatusCode::CONFLICT => tr(ctx, "error.conflict"),
        StatusCode::SERVICE_UNAVAILABLE => tr(ctx, "error.unavailable"),
        _ => tr(ctx, "error.invalid"),
    };
    page(&ErrorPage {
        ctx,
        title,
        status: status.as_u16(),
        error,
    })
}

#[derive(Template)]
#[template(path = "preparing.html")]
struct PreparingPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    /// Seconds since the server began preparing the figures.
    seconds: u64,
    /// What the server is doing, with `seconds` in it.
    body: String,
    refresh_secs: &'static str,
}

/// What a page shows while the server prepares the balance figures after its start: what it
/// is doing and for how long so far, refreshing itself until the figures are ready.
pub fn preparing_page(ctx: &Ctx, since: std::time::Duration) -> String {
    page(&PreparingPage {
        ctx,
        title: tr(ctx, "preparing.title"),
        seconds: since.as_secs(),
        body: tr(ctx, "preparing.body").replace("{s}", &since.as_secs().to_string()),
        refresh_secs: super::PREPARING_REFRESH_SECS,
    })
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    /// The field at fault, the refusal's code and its text in the page's language.
    refused: Option<(&'a str, &'a str, &'a str)>,
    login: &'a str,
}

/// The sign-in page: single sign-on first when configured, login and password for people, and below it an API token for service
/// accounts and scripts. `refused` is the field at fault and the message; `login` is kept.
pub fn signin_page(ctx: &Ctx, refused: Option<(&str, &str, &str)>, login: &str) -> String {
    page(&SigninPage {
        ctx,
        title: tr(ctx, "signin.title"),
        refused,
        login,
    })
}

/// The answer to a single sign-on that succeeded: a page that moves on to the start page by
/// itself (a `refresh`, which needs no script), with a link for a browser that does not.
pub fn sso_done_page(ctx: &Ctx) -> String {
    format!(
        "<!doctype html><html lang=\"{html_lang}\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=/\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title><link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\"><link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><main><section class=\"card narrow\"><p id=\"sso-done\">{done} <a href=\"/\">{next}</a></p></section></main></body></html>",
        html_lang = ctx.lang.html(),
        title = tr(ctx, "signin.title"),
        done = tr(ctx, "sso.done"),
        next = tr(ctx, "sso.continue"),
    )
}

/// The `year` query field: a fiscal year, if given.
pub fn year_of(query: &Form) -> Result<Option<i32>, ConsoleError> {
    match query.optional("year") {
        None => Ok(None),
        Some(y) => y
            .parse::<i32>()
            .ok()
            .filter(|y| (2000..=2100).contains(y))
            .map(Some)
            .ok_or_else(|| {
                ConsoleError::field("year", Code::YearNotAYear, format!("{y:?} is not a year"))
            }),
    }
}

/// The years of the registry's programmes (newest first) and the one chosen.
async fn years(console: &Console, query: &Form) -> Result<(Vec<i32>, i32), ConsoleError> {
    // Beside the writer, like the balances the page shows.
    let years = console
        .balances(|r| r.read(|s| suanli_app::registry::registry_years(s)))
        .await?
        .map_err(|e| settle_error(e, "registry"))?;
    let year = match year_of(query)? {
        Some(y) => y,
        None => years
            .first()
            .copied()
            .unwrap_or_else(|| chrono::Datelike::year(&Utc::now().with_timezone(&shanghai()))),
    };
    Ok((years, year))
}

const PROGRAMME_CLASSES: [&str; 4] = ["p0", "p1", "p2", "p3"];
const MONTHS: [&str; 12] = [
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
];

fn month_label(ctx: &Ctx, month: usize) -> String {
    match ctx.lang {
        Lang::Zh => format!("{}月", MONTHS[month]),
        Lang::En => [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][month]
            .to_owned(),
    }
}

/// A beneficiary or provider to choose, for readers who have none of their own.
#[derive(Template)]
#[template(path = "pick.html")]
struct PickPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    action: &'static str,
    name: &'static str,
    ids: Vec<String>,
}

/// A grant's figures and its progress bar (with its legend) when it has a cap.
struct BalanceCard<'a> {
    b: &'a Balance,
    /// Pending as it is: negative when the enterprise was settled more than it is entitled to
    /// now (the next run claws it back), and then labelled as owed back.
    pending: Fen,
    bar: Option<(Markup, Markup)>,
}

#[derive(Template)]
#[template(path = "enterprise.html")]
struct EnterprisePage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    beneficiary: &'a str,
    years: Vec<i32>,
    year: i32,
    /// The rest of the query of the year links and the statement (`&beneficiary=…`).
    extra: String,
    cards: Vec<BalanceCard<'a>>,
    total: Fen,
    chart: Markup,
    legend: Markup,
    /// The year's posted lines, each linked to its explanation (`console::explain`).
    lines: Markup,
    /// The current registry, for the names of programmes and of the enterprise.
    registry: Option<Arc<suanli_domain::Registry>>,
}

/// The enterprise view: per grant cap / paid / pending / remaining with a progress bar, the
/// monthly subsidy chart and the statement download.
pub async fn enterprise(
    console: &Arc<Console>,
    ctx: &Ctx,
    beneficiary: Option<String>,
    query: &Form,
) -> Result<String, ConsoleError> {
    let Some(beneficiary) = beneficiary else {
        let (ids, _) = console
            .store(|s| suanli_app::registry::registry_parties(s))
            .await?
            .map_err(|e| settle_error(e, "registry"))?;
        return Ok(page(&PickPage {
            ctx,
            title: tr(ctx, "enterprise.title"),
            action: "/enterprise",
            name: "beneficiary",
            ids,
        }));
    };
    let (years, year) = years(console, query).await?;
    let b = beneficiary.clone();
    let (balances, monthly, registry) = console
        .balances(move |r| {
            let balances = r.balance(&b, year)?;
            let monthly = r.monthly_settled(&b, year)?;
            Ok::<_, settle::SettleError>((balances, monthly, r.registry().ok()))
        })
        .await?
        .map_err(|e| settle_error(e, "beneficiary"))?;
    let extra = if matches!(ctx.principal(), Principal::Beneficiary(_)) {
        String::new()
    } else {
        format!("&beneficiary={}", url_encode(&beneficiary))
    };
    // Monthly chart: one segment per programme, named.
    let programmes: Vec<&String> = monthly.keys().collect();
    let names: Vec<&str> = programmes
        .iter()
        .map(|p| {
            registry
                .as_ref()
                .and_then(|r| r.programme(p))
                .map_or(p.as_str(), |p| p.name.as_str())
        })
        .collect();
    let cols: Vec<Column> = (0..12)
        .map(|m| Column {
            label: month_label(ctx, m),
            segments: programmes
                .iter()
                .enumerate()
                .map(|(i, p)| Segment {
                    value: monthly[*p][m].0,
                    class: PROGRAMME_CLASSES[i % PROGRAMME_CLASSES.len()],
                    label: names[i].to_owned(),
                })
                .collect(),
        })
        .collect();
    let legend_items: Vec<(&'static str, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (PROGRAMME_CLASSES[i % PROGRAMME_CLASSES.len()], *name))
        .collect();
    let total: Fen = monthly.values().flat_map(|m| m.iter().copied()).sum();
    let cards = balances
        .iter()
        .map(|b| BalanceCard {
            b,
            pending: b.pending,
            // Without a cap there is nothing to fill: the figures say it all.
            bar: b.cap.map(|cap| {
                (
                    progress(
                        cap,
                        &[
                            (b.settled, "paid", tr(ctx, "settled").to_owned()),
                            (
                                b.pending.max(Fen::ZERO),
                                "pending",
                                tr(ctx, "pending").to_owned(),
                            ),
                        ],
                    ),
                    legend(&[
                        ("paid", tr(ctx, "settled")),
                        ("pending", tr(ctx, "pending")),
                        ("left", tr(ctx, "remaining")),
                    ]),
                )
            }),
        })
        .collect();
    let lines = super::explain::enterprise_lines(console, ctx, &beneficiary, year).await?;
    Ok(page(&EnterprisePage {
        lines,
        ctx,
        title: tr(ctx, "enterprise.title"),
        beneficiary: &beneficiary,
        years,
        year,
        extra,
        cards,
        total,
        chart: columns(
            tr(ctx, "enterprise.monthly"),
            Axes {
                x: tr(ctx, "axis.month"),
                y: tr(ctx, "axis.cny"),
            },
            Unit::Fen,
            &cols,
        ),
        legend: legend(&legend_items),
        registry,
    }))
}

const OUTCOMES: [&str; 4] = ["accepted", "duplicate", "conflict", "rejected"];

#[derive(Template)]
#[template(path = "provider.html")]
struct ProviderPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    provider: &'a str,
    positions: Vec<PayeePosition>,
    chart: Markup,
    legend: Markup,
    outcomes: [&'static str; 4],
    /// Records per day by outcome, newest day first.
    days: Vec<(String, [i64; 4])>,
    reasons: Vec<RejectsShown>,
    /// The query of the statement link (`?provider=…`) for readers.
    extra: String,
    /// The void form is offered to the provider itself (and to an administrator).
    may_void: bool,
    /// A refused void form, shown again.
    kept: Option<Kept>,
    /// The current registry, for the names of the provider and the programmes.
    registry: Option<Arc<suanli_domain::Registry>>,
}

/// A provider's rejects of one reason as its page shows them.
struct RejectsShown {
    reason: String,
    records: i64,
    last_at: String,
    examples: Vec<RejectSaid>,
}

/// An example reject said in the page's language: `before`, the record id, `after` (the
/// sentence of its code naming the record and the field), and the engine's English message as
/// a technical detail on English pages only.
struct RejectSaid {
    record_id: String,
    before: String,
    after: String,
    detail: Option<String>,
}

fn rejects_shown(lang: Lang, row: ReasonRow) -> RejectsShown {
    let sentence = lookup(lang, &format!("reject.said.{}", row.reason))
        .unwrap_or_else(|| t(lang, "reject.said.unspecified"));
    let examples = row
        .examples
        .into_iter()
        .map(|e| {
            let field = lookup(lang, &format!("reject.field.{}", e.field))
                .unwrap_or_else(|| t(lang, "reject.field.unknown"));
            let sentence = sentence.replace("{field}", field);
            let (before, after) = sentence
                .split_once("{record}")
                .unwrap_or((sentence.as_str(), ""));
            RejectSaid {
                before: before.to_owned(),
                after: after.to_owned(),
                record_id: e.record_id,
                detail: (lang == Lang::En).then_some(e.message),
            }
        })
        .collect();
    RejectsShown {
        reason: row.reason,
        records: row.records,
        last_at: row.last_at,
        examples,
    }
}

/// The provider view: records per day by outcome, rejects by reason with examples, payables
/// owed and paid, statements.
pub async fn provider(
    console: &Arc<Console>,
    ctx: &Ctx,
    provider: Option<String>,
    kept: Option<Kept>,
) -> Result<String, ConsoleError> {
    let Some(provider) = provider else {
        let (_, ids) = console
            .store(|s| suanli_app::registry::registry_parties(s))
            .await?
            .map_err(|e| settle_error(e, "registry"))?;
        return Ok(page(&PickPage {
            ctx,
            title: tr(ctx, "provider.title"),
            action: "/provider",
            name: "provider",
            ids,
        }));
    };
    let today = Utc::now().with_timezone(&shanghai()).date_naive();
    let since = (today - Duration::days(INGEST_DAYS_SHOWN - 1))
        .format("%Y-%m-%d")
        .to_string();
    let p = provider.clone();
    let (daily, reasons, positions) = console
        .store(move |s| {
            let mut stats = None;
            s.transaction(&mut |tx| {
                stats = Some((
                    ingest_stats::daily(tx, &p, &since)?,
                    ingest_stats::reasons(tx, &p)?,
                ));
                Ok(())
            })
            .map_err(settle::SettleError::Store)?;
            let (daily, reasons) = stats.expect("read in the transaction");
            let positions = suanli_app::ledger::payee(s, &p)?;
            Ok::<_, settle::SettleError>((daily, reasons, positions))
        })
        .await?
        .map_err(|e| settle_error(e, "provider"))?;
    let extra = if matches!(ctx.principal(), Principal::Provider(_)) {
        String::new()
    } else {
        format!("?provider={}", url_encode(&provider))
    };
    // Records per day by outcome.
    let mut by_day: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    for d in &daily {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == d.outcome) {
            by_day.entry(d.day.clone()).or_default()[i] += d.records;
        }
    }
    let cols: Vec<Column> = (0..INGEST_DAYS_SHOWN)
        .map(|back| {
            let day = (today - Duration::days(INGEST_DAYS_SHOWN - 1 - back))
                .format("%Y-%m-%d")
                .to_string();
            let counts = by_day.get(&day).copied().unwrap_or_default();
            // The day of the month: the table below gives the full dates.
            Column {
                label: day[8..].to_owned(),
                segments: OUTCOMES
                    .iter()
                    .zip(counts)
                    .map(|(o, n)| Segment {
                        value: n,
                        class: o,
                        label: tr(ctx, &format!("outcome.{o}")).to_owned(),
                    })
                    .collect(),
            }
        })
        .collect();
    let legend_items = OUTCOMES.map(|o| (o, tr(ctx, &format!("outcome.{o}"))));
    let registry = console.balances(|r| r.registry()).await?.ok();
    Ok(page(&ProviderPage {
        ctx,
        registry,
        title: tr(ctx, "provider.title"),
        provider: &provider,
        positions,
        chart: columns(
            tr(ctx, "provider.daily"),
            Axes {
                x: tr(ctx, "axis.day"),
                y: tr(ctx, "axis.records"),
            },
            Unit::Records,
            &cols,
        ),
        legend: legend(&legend_items),
        outcomes: OUTCOMES,
        days: by_day.into_iter().rev().collect(),
        reasons: reasons
            .into_iter()
            .map(|r| rejects_shown(ctx.lang, r))
            .collect(),
        extra,
        may_void: may_void(ctx.principal(), &provider),
        kept,
    }))
}

/// The gRPC rule for voiding usage records: the provider its own, an administrator any.
pub fn may_void(p: &Principal, provider: &str) -> bool {
    match p {
        Principal::Provider(own) => own == provider,
        Principal::Admin => true,
        _ => false,
    }
}

#[derive(Template)]
#[template(path = "confirm_void.html")]
struct ConfirmVoidPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    provider: &'a str,
    record: &'a suanli_domain::usage::UsageRecord,
    reason: &'a str,
    /// When the record was voided already: voiding again changes nothing.
    voided_at: Option<&'a str>,
    confirm: String,
}

#[derive(Template)]
#[template(path = "voided.html")]
struct VoidedPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    provider: &'a str,
    record_id: &'a str,
    /// `true` when this request voided it, `false` when it was voided before.
    now: bool,
    at: &'a str,
    back: String,
}

impl ConfirmVoidPage<'_> {
    fn quantity(&self) -> String {
        self.record.quantity.normalize().to_string()
    }

    fn when(&self, t: &chrono::DateTime<chrono::FixedOffset>) -> String {
        t.with_timezone(&shanghai())
            .format("%Y-%m-%d %H:%M")
            .to_string()
    }
}

/// Voids one of `provider`'s usage records: the first post shows the record and what voiding
/// it does and asks for confirmation; the confirmed post voids it (once: again is a no-op).
pub async fn void_record(
    console: &Arc<Console>,
    ctx: &Ctx,
    provider: &str,
    form: &Form,
) -> Result<String, ConsoleError> {
    let record_id = form.required("record_id")?.to_owned();
    let reason = form.required("reason")?.to_owned();
    if reason.chars().count() > crate::grpc::metering::VOID_REASON_CHARS_MAX {
        return Err(ConsoleError::field(
            "reason",
            Code::TooLong,
            "the reason is too long",
        ));
    }
    let (p, r) = (provider.to_owned(), record_id.clone());
    let stored = console
        .store(move |s| s.record(&p, &r))
        .await?
        .map_err(|e| ConsoleError::Unavailable(format!("store: {e}")))?
        .ok_or_else(|| {
            ConsoleError::Field(
                FieldError::new(
                    "record_id",
                    Code::RecordNotFound,
                    format!("provider {provider:?} has no record {record_id:?}"),
                ),
                StatusCode::NOT_FOUND,
            )
        })?;
    let confirm = confirmation(
        ctx,
        &[
            "void",
            provider,
            &record_id,
            &reason,
            stored.voided_at.as_deref().unwrap_or(""),
        ],
    );
    match form.optional("confirm") {
        None => {
            return Ok(page(&ConfirmVoidPage {
                ctx,
                title: tr(ctx, "confirm.void_title"),
                provider,
                record: &stored.record,
                reason: &reason,
                voided_at: stored.voided_at.as_deref(),
                confirm,
            }));
        }
        Some(given) if !super::same_secret(given, &confirm) => {
            return Err(ConsoleError::field(
                "void",
                Code::RecordChangedSinceConfirmed,
                "the record or the reason differs from the one confirmed",
            ));
        }
        Some(_) => {}
    }
    let actor = ctx.actor.clone().expect("signed in");
    let (p, r, why) = (provider.to_owned(), record_id.clone(), reason.clone());
    let result = console
        .store(move |s| suanli_app::usage::void(s, &p, &r, &why, &actor))
        .await?
        .map_err(|e| ConsoleError::Unavailable(format!("store: {e}")))?;
    let (now, at) = match result {
        suanli_store::VoidResult::Voided { at } => (true, at),
        suanli_store::VoidResult::AlreadyVoided { at } => (false, at),
        suanli_store::VoidResult::NotFound => {
            return Err(ConsoleError::Field(
                FieldError::new(
                    "record_id",
                    Code::RecordNotFound,
                    format!("provider {provider:?} has no record {record_id:?}"),
                ),
                StatusCode::NOT_FOUND,
            ));
        }
    };
    let back = if matches!(ctx.principal(), Principal::Provider(_)) {
        "/provider".to_owned()
    } else {
        format!("/provider?provider={}", url_encode(provider))
    };
    Ok(page(&VoidedPage {
        ctx,
        title: tr(ctx, "void.title"),
        provider,
        record_id: &record_id,
        now,
        at: &at,
        back,
    }))
}

/// A programme's pool figures, its progress bar and its monthly chart.
struct PoolCard<'a> {
    o: &'a ProgrammeOverview,
    /// Pending, claw-backs owed included (`ProgrammeOverview::pending` + `owed_back`).
    pending: Fen,
    bar: Option<(Markup, Markup)>,
    chart: Markup,
}

/// A run in the finance page's list: the run, its number of lines and its total.
struct RunSummary {
    run: RunRow,
    lines: usize,
    total: Fen,
}

/// A refused form, shown again with its input and the error next to the field at fault.
pub struct Kept {
    /// The form's id: `create-run` or `payment`.
    pub form: &'static str,
    /// The fields as they were sent.
    pub values: Vec<(&'static str, String)>,
    pub error: FieldError,
}

impl Kept {
    /// The fields of `form` named in `fields`, as sent, with the refusal.
    pub fn of(form: &'static str, sent: &Form, fields: &[&'static str], error: FieldError) -> Kept {
        Kept {
            form,
            values: fields
                .iter()
                .map(|f| (*f, sent.optional(f).unwrap_or("").to_owned()))
                .collect(),
            error,
        }
    }
}

/// The value sent in `name` of `form`, when that form was refused.
fn kept_value<'a>(kept: &'a Option<Kept>, form: &str, name: &str) -> &'a str {
    kept.as_ref()
        .filter(|k| k.form == form)
        .and_then(|k| k.values.iter().find(|(n, _)| *n == name))
        .map_or("", |(_, v)| v.as_str())
}

/// The refusal to show next to `name` of `form`; `*` takes a refusal naming no field of the
/// form (shown above its fields).
fn kept_error<'a>(kept: &'a Option<Kept>, form: &str, name: &str) -> Option<&'a FieldError> {
    let k = kept.as_ref().filter(|k| k.form == form)?;
    let own = k.values.iter().any(|(n, _)| *n == k.error.field);
    let here = if name == "*" {
        !own
    } else {
        k.error.field == name
    };
    here.then_some(&k.error)
}

impl FinancePage<'_> {
    fn kept(&self, form: &str, name: &str) -> &str {
        kept_value(&self.kept, form, name)
    }

    fn error_at(&self, form: &str, name: &str) -> Option<&FieldError> {
        kept_error(&self.kept, form, name)
    }
}

impl ProviderPage<'_> {
    fn kept(&self, form: &str, name: &str) -> &str {
        kept_value(&self.kept, form, name)
    }

    fn error_at(&self, form: &str, name: &str) -> Option<&FieldError> {
        kept_error(&self.kept, form, name)
    }
}

#[derive(Template)]
#[template(path = "finance.html")]
struct FinancePage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    years: Vec<i32>,
    year: i32,
    pools: Vec<PoolCard<'a>>,
    /// Newest first.
    runs: Vec<RunSummary>,
    /// The create and payment forms are shown to the finance role only.
    finance: bool,
    /// A refused create or payment form, shown again.
    kept: Option<Kept>,
    /// Payments awaiting a second finance person, and the payment form's note on when one is
    /// needed (`console::payments`).
    awaiting: Markup,
    payment_hint: Markup,
    /// The current registry, for programme names.
    registry: Option<Arc<suanli_domain::Registry>>,
}

impl FinancePage<'_> {
    /// The payment form's programmes: the registry's, by name (and a refused form's choice).
    fn payment_programmes(&self) -> Vec<(String, String)> {
        super::lists::programme_options(
            self.registry.as_deref(),
            kept_value(&self.kept, "payment", "programme"),
        )
    }
}

/// The finance view: pools per programme, cap positions, runs, create and payment forms.
pub async fn finance(
    console: &Arc<Console>,
    ctx: &Ctx,
    query: &Form,
    kept: Option<Kept>,
) -> Result<String, ConsoleError> {
    let (years, year) = years(console, query).await?;
    let (overview, runs, awaiting, registry) = console
        .balances_whole(move |r| {
            let overview = r.programme_overview(year)?;
            let (runs, awaiting) = r.read(|s| {
                Ok((
                    settle::runs_with_totals(s, None)?,
                    suanli_app::ledger::list_payments(s, true)?,
                ))
            })?;
            Ok::<_, settle::SettleError>((overview, runs, awaiting, r.registry().ok()))
        })
        .await?
        .map_err(|e| settle_error(e, "year"))?;
    let runs: Vec<RunSummary> = runs
        .into_iter()
        .map(|(run, lines, total)| RunSummary { run, lines, total })
        .collect();
    let pools = overview.iter().map(|o| pool_card(ctx, o)).collect();
    Ok(page(&FinancePage {
        ctx,
        title: tr(ctx, "finance.title"),
        years,
        year,
        pools,
        runs: runs.into_iter().rev().collect(),
        finance: FINANCE.contains(&ctx.principal().role()),
        kept,
        awaiting: super::payments::awaiting_section(ctx, &awaiting, registry.clone()),
        payment_hint: super::payments::threshold_hint(ctx, console.shared.payment_confirm_above),
        registry,
    }))
}

fn pool_card<'a>(ctx: &Ctx, o: &'a ProgrammeOverview) -> PoolCard<'a> {
    let bar = o.pool.map(|pool| {
        (
            progress(
                pool,
                &[
                    (o.settled, "paid", tr(ctx, "settled").to_owned()),
                    (
                        o.pending.plus(o.owed_back),
                        "pending",
                        tr(ctx, "pending").to_owned(),
                    ),
                ],
            ),
            legend(&[
                ("paid", tr(ctx, "settled")),
                ("pending", tr(ctx, "pending")),
                ("left", tr(ctx, "left")),
            ]),
        )
    });
    let cols: Vec<Column> = (0..12)
        .map(|m| Column {
            label: month_label(ctx, m),
            segments: vec![Segment {
                value: o.monthly_settled[m].0,
                class: "paid",
                label: tr(ctx, "settled").to_owned(),
            }],
        })
        .collect();
    PoolCard {
        o,
        pending: o.pending.plus(o.owed_back),
        bar,
        chart: columns(
            tr(ctx, "finance.monthly_paid"),
            Axes {
                x: tr(ctx, "axis.month"),
                y: tr(ctx, "axis.cny"),
            },
            Unit::Fen,
            &cols,
        ),
    }
}

impl RunPage<'_> {
    /// A line's class named: category / chip origin / registered model.
    fn class_of(&self, l: &RunLineRow) -> String {
        super::explain::class_words(self.ctx, l)
    }

    /// A line's ratio as a percentage.
    fn ratio_of(&self, l: &RunLineRow) -> String {
        super::explain::ratio_percent(l)
    }

    /// The explanation of a line (`console::explain`).
    fn explain_href(&self, l: &RunLineRow) -> String {
        super::explain::line_href(self.run.run_id, l)
    }

    /// How many lines the page's filter selects, and their sum.
    fn selected_text(&self) -> String {
        let key = if self.beneficiary.is_empty() {
            "run.lines_all"
        } else {
            "run.lines_of"
        };
        tr(self.ctx, key)
            .replace("{n}", &format_count(self.selected))
            .replace("{amount}", &self.cny(self.selected_total))
            .replace("{beneficiary}", &self.party_name(self.beneficiary))
    }
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage<'a> {
    ctx: &'a Ctx,
    title: String,
    run: &'a RunRow,
    /// The registry's content hash, shortened.
    hash: &'a str,
    /// The page's lines.
    lines: &'a [RunLineRow],
    /// The current registry, for the names of the lines' parties.
    registry: Arc<suanli_domain::Registry>,
    /// The run's lines and their sum.
    line_count: u64,
    total: Fen,
    /// The enterprise whose lines the page shows, as typed ("" for all).
    beneficiary: &'a str,
    /// The lines the filter selects, and their sum.
    selected: u64,
    selected_total: Fen,
    pages: Pager,
    /// The finance actions the run's state allows: (action, button class).
    actions: Vec<(&'static str, &'static str)>,
    /// Readers may re-derive a posted run.
    rederive: bool,
    /// The signed-in person created this run, so another must approve it.
    created_by_me: bool,
    /// The result of a re-derivation: `Some(None)` matches, `Some(Some(diff))` differs.
    rederived: Option<Option<String>>,
    /// A refused action on this run, shown beside the actions.
    refused: Option<FieldError>,
}

/// Lines a run's page shows at once.
pub const RUN_LINES_PER_PAGE: u64 = 100;

/// Which of a run's lines its page shows: a page of them, of one enterprise or of all.
#[derive(Clone, Debug)]
pub struct RunLines {
    /// From 1.
    pub page: u64,
    /// An enterprise (beneficiary) id; empty for all.
    pub beneficiary: String,
}

impl RunLines {
    /// The page's query: `page` (a number from 1) and `beneficiary` (an id, trimmed).
    pub fn of(query: &Form) -> Result<RunLines, ConsoleError> {
        let beneficiary = query.optional("beneficiary").unwrap_or("").trim();
        if beneficiary.chars().count() > 200 {
            return Err(ConsoleError::field(
                "beneficiary",
                Code::TooLong,
                "beneficiary: longer than 200 characters",
            ));
        }
        Ok(RunLines {
            page: page_field(query, "page")?.unwrap_or(1),
            beneficiary: beneficiary.to_owned(),
        })
    }

    /// The first page of all lines.
    pub fn default_page() -> RunLines {
        RunLines {
            page: 1,
            beneficiary: String::new(),
        }
    }

    /// The link to page `page` of run `run_id` with this filter.
    fn href(&self, run_id: i64, page: u64) -> String {
        let mut parts = Vec::new();
        if !self.beneficiary.is_empty() {
            parts.push(format!("beneficiary={}", url_encode(&self.beneficiary)));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            format!("/finance/runs/{run_id}")
        } else {
            format!("/finance/runs/{run_id}?{}", parts.join("&"))
        }
    }
}

/// A run: its state, a page of its (preview) lines, and the actions its state and the role
/// allow. The page reads its own lines beside the writer, so a run of a city's 800,000 lines
/// is shown a page at a time and holds up no ingest.
pub async fn run_page(
    console: &Arc<Console>,
    ctx: &Ctx,
    run_id: i64,
    shown: &RunLines,
    rederived: Option<Option<String>>,
    refused: Option<FieldError>,
) -> Result<String, ConsoleError> {
    let per = RUN_LINES_PER_PAGE;
    let from = i64::try_from((shown.page - 1).saturating_mul(per)).unwrap_or(i64::MAX);
    let beneficiary = (!shown.beneficiary.is_empty()).then(|| shown.beneficiary.clone());
    let (registry, view, creator) = console
        .balances(move |r| {
            let registry = r.registry()?;
            let view = r.read(|t| {
                settle::run_lines_page(t, run_id, beneficiary.as_deref(), from, per as i64)
            })?;
            let creator = r.read(|t| settle::run_creator_user_id(t, run_id))?;
            Ok::<_, settle::SettleError>((registry, view, creator))
        })
        .await?
        .map_err(|e| settle_error(e, "run"))?;
    let selected = u64::try_from(view.selected).unwrap_or(0);
    if shown.page > 1 && view.lines.is_empty() {
        return Err(ConsoleError::Field(
            FieldError::new(
                "page",
                Code::PageBeyondEnd,
                format!(
                    "page {}: the selection has {selected} lines, {per} a page",
                    shown.page
                ),
            ),
            StatusCode::NOT_FOUND,
        ));
    }
    let pages = Pager::new(shown.page, per, selected, false, view.lines.len(), |page| {
        shown.href(run_id, page)
    });
    let run = &view.run;
    let total = Fen(view.total_fen);
    let role = ctx.principal().role();
    // Four eyes: the creator is not offered the approval the use case would refuse. The
    // creator is the user of the run's `run.create` audit entry; a run created with a
    // credential without a user is compared by the person its actor names.
    let actor = ctx.actor.as_ref().expect("signed in");
    let created_by_me = match (creator, &actor.user) {
        (Some(creator), Some(me)) => creator == me.user_id,
        _ => actor.same_person(&run.created_by),
    };
    let mut actions = Vec::new();
    if FINANCE.contains(&role) {
        match run.status.as_str() {
            "open" if created_by_me => actions.push(("cancel", "secondary")),
            "open" => actions.extend([("approve", ""), ("cancel", "secondary")]),
            "approved" => actions.extend([("post", ""), ("cancel", "secondary")]),
            _ => {}
        }
    }
    Ok(page(&RunPage {
        ctx,
        title: format!("{} {}", tr(ctx, "run"), run.run_id),
        run,
        hash: &run.content_hash[..run.content_hash.len().min(12)],
        lines: &view.lines,
        registry,
        line_count: u64::try_from(view.lines_total).unwrap_or(0),
        total,
        beneficiary: &shown.beneficiary,
        selected,
        selected_total: Fen(view.selected_fen),
        pages,
        actions,
        rederive: READERS.contains(&role) && run.status == "posted",
        created_by_me,
        rederived,
        refused,
    }))
}

/// `YYYY-MM` with a month 1-12, else an error naming `period`.
fn period_field(text: &str) -> Result<&str, ConsoleError> {
    suanli_domain::usage::Period::parse(text)
        .map(|_| text)
        .ok_or_else(|| {
            ConsoleError::field(
                "period",
                Code::PeriodNotAMonth,
                format!("{text:?} is not a month YYYY-MM"),
            )
        })
}

pub async fn create_run(
    console: &Arc<Console>,
    ctx: &Ctx,
    form: &Form,
) -> Result<i64, ConsoleError> {
    let programme = form.required("programme")?.to_owned();
    let period = period_field(form.required("period")?)?.to_owned();
    let actor = ctx.actor.clone().expect("signed in");
    let view = console
        .store(move |s| settle::create_run(s, &programme, &period, &actor))
        .await?
        .map_err(|e| match e {
            settle::SettleError::NotFound(_) => settle_error(e, "programme"),
            settle::SettleError::InvalidArgument(_) => settle_error(e, "period"),
            other => settle_error(other, "run"),
        })?;
    Ok(view.run.run_id)
}

/// What confirming an action binds: a digest of the session's CSRF token and of everything the
/// confirmation showed, so a confirmation of another session, or of a run or payment that has
/// changed since, does not act.
fn confirmation(ctx: &Ctx, parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(ctx.csrf.as_bytes());
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// One payee's share of a run, as its confirmation lists it.
struct PayeeShare {
    payee: String,
    lines: u64,
    amount: Fen,
}

impl ConfirmRunPage<'_> {
    /// The row of the payees not listed: "其余 95 个收款方" / "95 other payees".
    fn others_text(&self, n: &usize) -> String {
        tr(self.ctx, "confirm.other_payees").replace("{n}", &format_count(*n as u64))
    }
}

/// Payees a run's confirmation lists by name, the largest shares first; the others are
/// summed in one row (a reimbursement run of a city pays 100,000 enterprises).
const CONFIRM_PAYEES_SHOWN: usize = 50;

#[derive(Template)]
#[template(path = "confirm_run.html")]
struct ConfirmRunPage<'a> {
    ctx: &'a Ctx,
    title: String,
    action: &'a str,
    run: &'a RunRow,
    lines: u64,
    total: Fen,
    payee_count: usize,
    /// The largest shares, at most [`CONFIRM_PAYEES_SHOWN`].
    payees: Vec<PayeeShare>,
    /// How many payees are not listed, and their lines and sum.
    others: Option<(usize, PayeeShare)>,
    confirm: String,
    /// The current registry, for the names of the programme and the payees.
    registry: Option<Arc<suanli_domain::Registry>>,
}

/// Approves, posts or cancels a run. Posting and cancelling first show what will happen
/// (`Ok(Some(page))`) and act only when the form comes back with that confirmation, for the
/// run as it was shown.
pub async fn run_action(
    console: &Arc<Console>,
    ctx: &Ctx,
    run_id: i64,
    action: &str,
    confirmed: Option<&str>,
) -> Result<Option<String>, ConsoleError> {
    if action != "approve" {
        // Beside the writer, summed by the database: at a city's scale the run's lines would
        // take the writer seconds to read.
        let view = console
            .balances(move |r| r.read(|t| settle::run_summary(t, run_id)))
            .await?
            .map_err(|e| settle_error(e, "run"))?;
        let run = &view.run;
        // Nothing to confirm for what cannot happen (the use case's refusal, at once) or has
        // happened already (the use case's no-op).
        let refused = match (action, run.status.as_str()) {
            ("post", "open" | "cancelled") => Some(Code::RunNotApproved),
            ("cancel", "posted") => Some(Code::RunPosted),
            _ => None,
        };
        if let Some(code) = refused {
            return Err(ConsoleError::Field(
                FieldError::new(
                    "run",
                    code,
                    format!(
                        "run {run_id} is {}; it cannot be {}",
                        run.status,
                        if action == "post" {
                            "posted"
                        } else {
                            "cancelled"
                        }
                    ),
                ),
                StatusCode::CONFLICT,
            ));
        }
        let done = matches!(
            (action, run.status.as_str()),
            ("post", "posted") | ("cancel", "cancelled")
        );
        let total = Fen(view.total_fen);
        let confirm = confirmation(
            ctx,
            &[
                action,
                &run.run_id.to_string(),
                &run.status,
                &run.content_hash,
                &view.lines.to_string(),
                &total.0.to_string(),
            ],
        );
        match confirmed {
            _ if done => {}
            None => {
                let registry = console.balances(|r| r.registry()).await?.ok();
                let share = |(payee, lines, amount): &(String, i64, i64)| PayeeShare {
                    payee: payee.clone(),
                    lines: u64::try_from(*lines).unwrap_or(0),
                    amount: Fen(*amount),
                };
                let shown = view.payees.len().min(CONFIRM_PAYEES_SHOWN);
                let others = view.payees[shown..].iter().fold(
                    PayeeShare {
                        payee: String::new(),
                        lines: 0,
                        amount: Fen(0),
                    },
                    |sum, p| PayeeShare {
                        payee: String::new(),
                        lines: sum.lines + share(p).lines,
                        amount: Fen(sum.amount.0.saturating_add(p.2)),
                    },
                );
                return Ok(Some(page(&ConfirmRunPage {
                    ctx,
                    registry,
                    title: format!("{} {}", tr(ctx, &format!("action.{action}")), run.run_id),
                    action,
                    run,
                    lines: u64::try_from(view.lines).unwrap_or(0),
                    total,
                    payee_count: view.payees.len(),
                    payees: view.payees[..shown].iter().map(share).collect(),
                    others: (shown < view.payees.len())
                        .then_some((view.payees.len() - shown, others)),
                    confirm,
                })));
            }
            Some(given) if !super::same_secret(given, &confirm) => {
                return Err(ConsoleError::Field(
                    FieldError::new(
                        "run",
                        Code::RunChangedSinceConfirmed,
                        format!("run {run_id} changed after the confirmation was shown"),
                    ),
                    StatusCode::CONFLICT,
                ));
            }
            Some(_) => {}
        }
    }
    let actor = ctx.actor.clone().expect("signed in");
    let action = action.to_owned();
    let posted = action == "post";
    let view = console
        .store(move |s| match action.as_str() {
            "approve" => settle::approve_run(s, run_id, &actor),
            "post" => settle::post_run(s, run_id, &actor),
            _ => settle::cancel_run(s, run_id, &actor),
        })
        .await?
        .map_err(|e| settle_error(e, "run"))?;
    if posted && !view.unchanged {
        crate::grpc::refresh_programme_gauges(&console.shared).await;
    }
    Ok(None)
}

#[derive(Template)]
#[template(path = "payment.html")]
struct PaymentPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    /// Booked, or awaiting a second person (`console::payments::recorded_result`).
    result: Markup,
    payee: &'a str,
    amount: Fen,
    reference: &'a str,
    outstanding: Fen,
}

#[derive(Template)]
#[template(path = "confirm_payment.html")]
struct ConfirmPaymentPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    payee: &'a str,
    /// The programme that pays: as given, or the only one that owes the payee.
    programme: &'a str,
    /// As typed, so the confirmation posts back what was checked.
    programme_given: &'a str,
    amount_text: &'a str,
    amount: Fen,
    reference: &'a str,
    outstanding: Fen,
    after: Fen,
    confirm: String,
    /// The current registry, for the names of the payee and the programme.
    registry: Option<Arc<suanli_domain::Registry>>,
}

/// Which programme a payment of `amount` to `payee` would be booked to and what it owes the
/// payee now: the checks of the payment use case, made before asking for confirmation.
fn payment_plan(
    positions: &[PayeePosition],
    payee: &str,
    programme: Option<&str>,
    amount: Fen,
) -> Result<(String, Fen), ConsoleError> {
    let refuse = |field: &str, code: Code, status: StatusCode, message: String| {
        ConsoleError::Field(FieldError::new(field, code, message), status)
    };
    let position = match programme {
        Some(p) => positions
            .iter()
            .find(|pos| pos.programme == p)
            .ok_or_else(|| {
                refuse(
                    "programme",
                    Code::ProgrammeOwesNothing,
                    StatusCode::CONFLICT,
                    format!("programme {p:?} owes payee {payee:?} nothing"),
                )
            })?,
        None => {
            let owed: Vec<&PayeePosition> =
                positions.iter().filter(|p| p.outstanding.0 > 0).collect();
            match owed.as_slice() {
                [one] => *one,
                [] => {
                    return Err(refuse(
                        "payee",
                        Code::PayeeOwedNothing,
                        StatusCode::CONFLICT,
                        format!("nothing is owed to payee {payee:?}"),
                    ));
                }
                _ => {
                    return Err(refuse(
                        "programme",
                        Code::SeveralProgrammes,
                        StatusCode::BAD_REQUEST,
                        format!("payee {payee:?} is owed by several programmes; name one"),
                    ));
                }
            }
        }
    };
    if amount > position.outstanding {
        return Err(refuse(
            "amount",
            Code::AmountExceedsOwed,
            StatusCode::CONFLICT,
            format!(
                "payment {amount} to {payee} exceeds the {} owed by {}",
                position.outstanding, position.programme
            ),
        ));
    }
    Ok((position.programme.clone(), position.outstanding))
}

/// Records a payment: the first post shows what will be booked (payee, programme, amount,
/// what is owed before and after) and asks for confirmation; the confirmed post books it.
pub async fn record_payment(
    console: &Arc<Console>,
    ctx: &Ctx,
    form: &Form,
) -> Result<String, ConsoleError> {
    let payee = form.required("payee")?.to_owned();
    let amount_text = form.required("amount")?;
    let amount = Fen::parse_cny(amount_text)
        .map_err(|e| ConsoleError::field("amount", Code::AmountNotANumber, e.to_string()))?;
    if amount.0 <= 0 {
        return Err(ConsoleError::field(
            "amount",
            Code::AmountNotPositive,
            format!("{amount_text:?} must be more than zero"),
        ));
    }
    let reference = form.required("reference")?.to_owned();
    let programme = form.optional("programme").map(str::to_owned);
    let who = payee.clone();
    let positions = console
        .store(move |s| suanli_app::ledger::payee(s, &who))
        .await?
        .map_err(|e| settle_error(e, "payee"))?;
    let (paying, outstanding) = payment_plan(&positions, &payee, programme.as_deref(), amount)?;
    let confirm = confirmation(
        ctx,
        &[
            "payment",
            &payee,
            &paying,
            &amount.0.to_string(),
            &reference,
        ],
    );
    match form.optional("confirm") {
        None => {
            let registry = console.balances(|r| r.registry()).await?.ok();
            return Ok(page(&ConfirmPaymentPage {
                ctx,
                registry,
                title: tr(ctx, "confirm.payment_title"),
                payee: &payee,
                programme: &paying,
                programme_given: programme.as_deref().unwrap_or(""),
                amount_text,
                amount,
                reference: &reference,
                outstanding,
                after: outstanding.minus(amount),
                confirm,
            }));
        }
        Some(given) if !super::same_secret(given, &confirm) => {
            return Err(ConsoleError::field(
                "payment",
                Code::PaymentChangedSinceConfirmed,
                "the payment differs from the one confirmed",
            ));
        }
        Some(_) => {}
    }
    let actor = ctx.actor.clone().expect("signed in");
    let (who, reference2) = (payee.clone(), reference.clone());
    let confirm_above = console.shared.payment_confirm_above;
    let recorded = console
        .store(move |s| {
            if let Some(p) = &programme
                && !suanli_app::ledger::payee(s, &who)?
                    .iter()
                    .any(|pos| pos.programme == *p)
            {
                return Err(settle::SettleError::InvalidArgument(format!(
                    "programme {p:?} owes payee {who:?} nothing"
                )));
            }
            suanli_app::ledger::record_payment(
                s,
                programme.as_deref(),
                &who,
                amount,
                &reference2,
                &actor,
                confirm_above,
            )
        })
        .await?
        .map_err(payment_error)?;
    let (result, outstanding) = super::payments::recorded_result(ctx, &recorded, confirm_above);
    Ok(page(&PaymentPage {
        ctx,
        title: tr(ctx, "finance.payment"),
        result,
        payee: &payee,
        amount,
        reference: &reference,
        outstanding,
    }))
}

/// A payment's refusal, naming the field at fault.
fn payment_error(e: settle::SettleError) -> ConsoleError {
    match Code::of_settle(&e) {
        Code::ProgrammeOwesNothing => match settle_error(e, "programme") {
            ConsoleError::Field(f, _) => ConsoleError::Field(f, StatusCode::CONFLICT),
            other => other,
        },
        Code::ReferenceReused => settle_error(e, "reference"),
        Code::AmountExceedsOwed | Code::AmountNotPositive => settle_error(e, "amount"),
        Code::SeveralProgrammes => settle_error(e, "programme"),
        _ => settle_error(e, "payee"),
    }
}

/// A `YYYY-MM-DD` filter field.
fn day_field<'a>(query: &'a Form, name: &str) -> Result<Option<&'a str>, ConsoleError> {
    match query.optional(name) {
        None => Ok(None),
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(|_| Some(d))
            .map_err(|_| {
                ConsoleError::field(
                    name,
                    Code::DayNotADate,
                    format!("{d:?} is not a date YYYY-MM-DD"),
                )
            }),
    }
}

/// One account of the trial balance: its debits, credits and its balance on the side it
/// falls, as a positive amount (a payable's credit balance is what is owed).
struct TrialRow {
    account: String,
    debit: Fen,
    credit: Fen,
    debit_balance: Option<Fen>,
    credit_balance: Option<Fen>,
}

/// The links of a paged table of a page (the audit page's, a run's lines).
pub(super) struct Pager {
    page: u64,
    /// The last page, when it is known (the journals are counted only so far).
    pages: Option<u64>,
    first: String,
    prev: Option<String>,
    next: Option<String>,
    last: Option<String>,
}

impl Pager {
    /// The pager of page `page` of `per` rows of `total` selected rows (`more`: more than
    /// `total`, so the last page is not known), `shown` of them on this page; `href` makes a
    /// page's link.
    fn new(
        page: u64,
        per: u64,
        total: u64,
        more: bool,
        shown: usize,
        href: impl Fn(u64) -> String,
    ) -> Pager {
        let pages = total.div_ceil(per).max(1);
        let next = if more {
            shown as u64 == per
        } else {
            page < pages
        };
        Pager {
            page,
            pages: (!more).then_some(pages),
            first: href(1),
            prev: (page > 1).then(|| href(page - 1)),
            next: next.then(|| href(page + 1)),
            last: (!more && pages > 1).then(|| href(pages)),
        }
    }

    /// "Page 2 of 7", or "page 2" where the last page is not known.
    fn text(&self, lang: Lang) -> String {
        match self.pages {
            Some(pages) => t(lang, "list.page_of").replace("{pages}", &pages.to_string()),
            None => t(lang, "list.page_of_more").to_owned(),
        }
        .replace("{page}", &self.page.to_string())
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    account: &'a str,
    from: &'a str,
    to: &'a str,
    run: String,
    /// How many journals the filters selected, counted up to [`JOURNALS_COUNTED_MAX`]; `more`
    /// when there are more than that.
    selected: u64,
    more: bool,
    journals: Vec<JournalShown>,
    journal_pages: Pager,
    /// How many accounts the trial balance holds (those of the account filter).
    accounts: u64,
    totals: Vec<TrialRow>,
    account_pages: Pager,
    debit: Fen,
    credit: Fen,
    balanced: bool,
    /// The latest posted runs, newest first; `posted_more` when there are older ones.
    posted: Vec<RunRow>,
    posted_more: bool,
    /// A filter that is not valid, shown beside it.
    refused: Option<FieldError>,
    /// The current registry, for the accounts' programme and party names.
    registry: Option<Arc<suanli_domain::Registry>>,
}

impl AuditPage<'_> {
    /// How many journals the filters selected.
    fn journals_text(&self) -> String {
        let key = if self.more {
            "audit.journals_more"
        } else {
            "audit.journals"
        };
        tr(self.ctx, key).replace("{n}", &format_count(self.selected))
    }

    /// How many accounts the trial balance holds.
    fn accounts_text(&self) -> String {
        tr(self.ctx, "audit.accounts").replace("{n}", &format_count(self.accounts))
    }

    /// What a journal cut short says: how many of its entries are shown.
    fn cut_text(&self, shown: &JournalShown) -> Option<String> {
        let listed = shown.journal.entries.len();
        let key = if shown.matching_only {
            "audit.entries_matching"
        } else {
            "audit.entries_cut"
        };
        (shown.entries > listed as i64).then(|| {
            tr(self.ctx, key)
                .replace("{prefix}", self.account)
                .replace("{shown}", &format_count(listed as u64))
                .replace(
                    "{n}",
                    &format_count(u64::try_from(shown.entries).unwrap_or(0)),
                )
        })
    }
}

/// The value of a field that is valid; the first refusal of a field that is not is kept in
/// `refused` (the page goes on without the field).
fn kept<T>(refused: &mut Option<FieldError>, r: Result<Option<T>, ConsoleError>) -> Option<T> {
    match r {
        Ok(v) => v,
        Err(e) => {
            refused.get_or_insert(e.as_field());
            None
        }
    }
}

/// A page number parameter of the audit page, if given.
fn page_field(query: &Form, name: &str) -> Result<Option<u64>, ConsoleError> {
    match query.optional(name) {
        None => Ok(None),
        Some(p) => p
            .parse::<u64>()
            .ok()
            .filter(|p| (1..=PAGE_MAX).contains(p))
            .map(Some)
            .ok_or_else(|| {
                ConsoleError::field(
                    name,
                    Code::PageNotANumber,
                    format!("{p:?} is not a page number (1, 2, …)"),
                )
            }),
    }
}

/// What the audit page reads, on a reader beside the writer.
struct AuditRead {
    selected: i64,
    journals: Vec<JournalShown>,
    totals: suanli_store::ledger::LedgerTotals,
    accounts: i64,
    rows: Vec<(String, i64, i64)>,
    posted: Vec<RunRow>,
}

/// The auditor view: the journal with filters, the trial balance, and re-derive on posted runs.
/// The audit page and its status: a filter that is not valid is shown as typed with its error
/// beside it (HTTP 400), and the journal is listed without it. The journal (newest first) and
/// the trial balance are read a page at a time, on a reader beside the writer, so neither
/// ingest nor the page waits on the other and a ledger of any size shows in bounded pages.
pub async fn audit(
    console: &Arc<Console>,
    ctx: &Ctx,
    query: &Form,
) -> Result<(StatusCode, String), ConsoleError> {
    let account = query.optional("account").unwrap_or("").to_owned();
    let mut refused = None;
    let from = kept(
        &mut refused,
        day_field(query, "from").map(|d| d.map(str::to_owned)),
    );
    let to = kept(
        &mut refused,
        day_field(query, "to").map(|d| d.map(str::to_owned)),
    );
    let run = kept(
        &mut refused,
        match query.optional("run") {
            None => Ok(None),
            Some(r) => r
                .parse::<i64>()
                .ok()
                .filter(|r| *r > 0)
                .map(|r| Some(r.to_string()))
                .ok_or_else(|| {
                    ConsoleError::field(
                        "run",
                        Code::RunNotANumber,
                        format!("{r:?} is not a run number"),
                    )
                }),
        },
    );
    let journals_page = kept(&mut refused, page_field(query, "page")).unwrap_or(1);
    let accounts_page = kept(&mut refused, page_field(query, "accounts_page")).unwrap_or(1);

    // The links keep the filters that were valid, and the other table's page.
    let mut filters: Vec<String> = Vec::new();
    for (name, value) in [
        ("account", Some(account.as_str())),
        ("from", from.as_deref()),
        ("to", to.as_deref()),
        ("run", run.as_deref()),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            filters.push(format!("{name}={}", url_encode(v)));
        }
    }
    let href = |journals: u64, accounts: u64| {
        let mut parts = filters.clone();
        if journals != 1 {
            parts.push(format!("page={journals}"));
        }
        if accounts != 1 {
            parts.push(format!("accounts_page={accounts}"));
        }
        format!("?{}", parts.join("&"))
    };

    let filter = suanli_store::ledger::JournalFilter {
        through: i64::MAX,
        kind: if run.is_some() {
            "run".to_owned()
        } else {
            String::new()
        },
        account_prefix: account.clone(),
        reference: run.as_ref().map(|r| format!("run:{r}")).unwrap_or_default(),
        from: from.as_deref().map(time_bound).unwrap_or_default(),
        before: to
            .as_deref()
            .map(|d| time_bound(&next_day(d)))
            .unwrap_or_default(),
    };
    let prefix = account.clone();
    let journals_offset = (journals_page - 1).saturating_mul(JOURNALS_PER_PAGE);
    let accounts_offset = (accounts_page - 1).saturating_mul(ACCOUNTS_PER_PAGE);
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let (journals_offset, accounts_offset) = (int(journals_offset), int(accounts_offset));
    let read = read_ledger(console, move |tx| {
        use suanli_store::ledger as rows;
        let selected = rows::journals_counted(tx, &filter, int(JOURNALS_COUNTED_MAX))?;
        let journals = rows::journals_newest(
            tx,
            &filter,
            journals_offset,
            int(JOURNALS_PER_PAGE),
            ENTRIES_SHOWN_MAX,
        )?;
        let totals = rows::running_totals(tx)?;
        let accounts = if prefix.is_empty() {
            totals.accounts
        } else {
            rows::accounts_count(tx, &prefix)?
        };
        let rows =
            rows::account_totals_window(tx, &prefix, accounts_offset, int(ACCOUNTS_PER_PAGE))?;
        let posted = rows::latest_runs(tx, "posted", POSTED_RUNS_SHOWN + 1)?;
        Ok(AuditRead {
            selected,
            journals,
            totals,
            accounts,
            rows,
            posted,
        })
    })
    .await?;

    let selected = u64::try_from(read.selected).unwrap_or(0);
    let more = selected > JOURNALS_COUNTED_MAX;
    let selected = selected.min(JOURNALS_COUNTED_MAX);
    let accounts = u64::try_from(read.accounts).unwrap_or(0);
    if refused.is_none() {
        // A page past the end of its table: nothing on it.
        refused = [
            ("page", journals_page, read.journals.is_empty()),
            ("accounts_page", accounts_page, read.rows.is_empty()),
        ]
        .into_iter()
        .find(|(_, page, empty)| *page > 1 && *empty)
        .map(|(name, page, _)| {
            FieldError::new(
                name,
                Code::PageBeyondEnd,
                format!("page {page} is past the last page"),
            )
        });
    }
    let journal_pages = Pager::new(
        journals_page,
        JOURNALS_PER_PAGE,
        selected,
        more,
        read.journals.len(),
        |p| href(p, accounts_page),
    );
    let account_pages = Pager::new(
        accounts_page,
        ACCOUNTS_PER_PAGE,
        accounts,
        false,
        read.rows.len(),
        |p| href(journals_page, p),
    );
    let status = match &refused {
        Some(e) if e.code == Code::PageBeyondEnd => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let mut posted = read.posted;
    let posted_more = posted.len() as i64 > POSTED_RUNS_SHOWN;
    posted.truncate(usize::try_from(POSTED_RUNS_SHOWN).unwrap_or(0));
    let body = page(&AuditPage {
        ctx,
        title: tr(ctx, "audit.title"),
        account: &account,
        from: query.optional("from").unwrap_or(""),
        to: query.optional("to").unwrap_or(""),
        run: query.optional("run").unwrap_or("").to_owned(),
        refused,
        selected,
        more,
        journals: read.journals,
        journal_pages,
        accounts,
        totals: read
            .rows
            .into_iter()
            .map(|(account, d, c)| {
                let balance = d.saturating_sub(c);
                TrialRow {
                    account,
                    debit: Fen(d),
                    credit: Fen(c),
                    debit_balance: (balance > 0).then_some(Fen(balance)),
                    credit_balance: (balance < 0).then(|| Fen(balance.saturating_neg())),
                }
            })
            .collect(),
        account_pages,
        debit: Fen(read.totals.debit_fen),
        credit: Fen(read.totals.credit_fen),
        balanced: read.totals.debit_fen == read.totals.credit_fen,
        posted,
        posted_more,
        // Accounts named by id where no registry can be read.
        registry: console.balances(|r| r.registry()).await?.ok(),
    });
    Ok((status, body))
}

/// Re-derives a run from its frozen inputs and shows the run with the result.
pub async fn rederive(
    console: &Arc<Console>,
    ctx: &Ctx,
    run_id: i64,
) -> Result<String, ConsoleError> {
    let (run, difference) = console
        .store(move |s| settle::rederive_run(s, run_id))
        .await?
        .map_err(|e| settle_error(e, "run"))?;
    if run.status != "posted" {
        return Err(ConsoleError::Field(
            FieldError::new(
                "run",
                Code::RederivePostedOnly,
                format!(
                    "run {run_id} is {}; only posted runs are re-derived here",
                    run.status
                ),
            ),
            StatusCode::CONFLICT,
        ));
    }
    require(ctx.principal(), READERS, "re-deriving a settlement run")?;
    run_page(
        console,
        ctx,
        run_id,
        &RunLines::default_page(),
        Some(difference),
        None,
    )
    .await
}

view!(
    ErrorPage,
    PreparingPage,
    SigninPage,
    PickPage,
    ConfirmVoidPage,
    VoidedPage,
    PaymentPage,
);
view!(
    registry: FinancePage,
    EnterprisePage,
    ProviderPage,
    ConfirmRunPage,
    ConfirmPaymentPage,
    AuditPage,
);

impl View for RunPage<'_> {
    fn ctx(&self) -> &Ctx {
        self.ctx
    }

    fn registry(&self) -> Option<&suanli_domain::Registry> {
        Some(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suanli_store::ingest_stats::Example;

    fn row(reason: &str, field: &str) -> ReasonRow {
        ReasonRow {
            reason: reason.to_owned(),
            records: 1,
            last_at: String::new(),
            examples: vec![Example {
                record_id: "r-7".to_owned(),
                field: field.to_owned(),
                message: "record \"r-7\": quantity \"x\" is not a decimal number".to_owned(),
            }],
        }
    }

    fn said(lang: Lang, reason: &str, field: &str) -> (String, Option<String>) {
        let e = rejects_shown(lang, row(reason, field)).examples.remove(0);
        (
            format!("{}[{}]{}", e.before, e.record_id, e.after),
            e.detail,
        )
    }

    // An example is its code's sentence with the record and the field named; the engine's
    // English message comes only on English pages. A field or code the table does not know
    // (an example kept before fields were, a newer server's code) still reads as a sentence.
    #[test]
    fn an_example_reject_is_said_in_the_page_language() {
        assert_eq!(
            said(Lang::Zh, "invalid_field", "quantity"),
            ("记录 [r-7] 的数量格式无效或超出允许范围。".to_owned(), None)
        );
        let (text, detail) = said(Lang::En, "invalid_field", "quantity");
        assert_eq!(
            text,
            "Record [r-7] has an invalid quantity (malformed or out of range)."
        );
        assert_eq!(
            detail.as_deref(),
            Some("record \"r-7\": quantity \"x\" is not a decimal number")
        );
        assert_eq!(
            said(Lang::Zh, "missing_field", "").0,
            "记录 [r-7] 缺少某个字段。"
        );
        assert_eq!(
            said(Lang::En, "missing_field", "colour").0,
            "Record [r-7] has no field."
        );
        assert_eq!(
            said(Lang::Zh, "a_newer_code", "sku").0,
            "记录 [r-7] 被拒收。"
        );
    }
}
