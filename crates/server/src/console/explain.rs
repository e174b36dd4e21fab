//! Why a run line has its amount, in the page's language: the explanation of one beneficiary's
//! lines of a run (`/finance/runs/{run}/explain?beneficiary=…` for finance and auditors,
//! `/enterprise/runs/{run}/explain` for an enterprise's own lines) and the printable settlement
//! statement (结算单) of a run (`/finance/runs/{run}/statement`). The figures are the use case
//! `settle explain`'s (`suanli_app::explain`), recomputed from the run's frozen inputs beside
//! the writer; the sentences are written here from those figures, in zh-CN or English.

use std::sync::Arc;

use askama::Template;
use axum::http::StatusCode;
use suanli_app::explain::{Cut, Explanation, LineExplanation, RecordFilter, RecordsPage};
use suanli_app::reasons::percent;
use suanli_app::settlement::{SettleError, Transact};
use suanli_app::statement::{PostedLine, RunStatement};
use suanli_domain::money::Fen;
use suanli_domain::settlement::{ChosenBecause, CutBy};
use suanli_store::Principal;
use suanli_store::ledger::RunLineRow;

use super::format::{cny, url_encode};
use super::i18n::t;
use super::view::{View, view};
use super::{Code, Console, ConsoleError, Ctx, FieldError, Form, READERS, require, settle_error};

/// Records listed per line on an explanation page.
pub const RECORDS_SHOWN: usize = 50;
/// A beneficiary's posted lines listed on its page, newest run first.
pub const POSTED_LINES_SHOWN: usize = 100;

/// Explanations and statements read at once, from all sessions: each recomputes or reads a run
/// on a database connection and a thread of its own beside the writer, so more wait their turn
/// rather than open more connections (the API bounds its callers the same way).
pub const READS_AT_ONCE: usize = 4;
static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(READS_AT_ONCE);

/// Runs `f` beside the writer on a connection of its own, at most [`READS_AT_ONCE`] at a time.
async fn read_alone<R: Send + 'static>(
    console: &Console,
    f: impl FnOnce(&mut dyn Transact) -> Result<R, SettleError> + Send + 'static,
) -> Result<R, SettleError> {
    let _permit = READS
        .acquire()
        .await
        .map_err(|_| SettleError::Unavailable("the console is stopping".into()))?;
    console.shared.balances.read_alone(f).await
}

/// Lines at most that a whole run's statement lists ([`suanli_app::statement::STATEMENT_LINES_MAX`]).
/// Debug builds take `SUANLI_TEST_STATEMENT_LINES_MAX` instead, so that end-to-end tests see a
/// summarised statement without a run of ten thousand lines; release builds have no such knob.
fn statement_lines_max() -> i64 {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("SUANLI_TEST_STATEMENT_LINES_MAX")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        return n;
    }
    suanli_app::statement::STATEMENT_LINES_MAX
}

/// `key`'s string with each `{name}` replaced by its value.
fn fill(ctx: &Ctx, key: &str, values: &[(&str, String)]) -> String {
    let mut text = t(ctx.lang, key).to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

/// `name (id)`, or the id alone when the name is the id.
fn named(name: &str, id: &str) -> String {
    if name.is_empty() || name == id {
        id.to_owned()
    } else {
        format!("{name} ({id})")
    }
}

/// A line's class in words: category / chip origin / registered model.
pub fn class_words(ctx: &Ctx, l: &RunLineRow) -> String {
    let lookup = |prefix: &str, code: &str| {
        super::i18n::lookup(ctx.lang, &format!("{prefix}.{code}"))
            .map_or_else(|| code.to_owned(), str::to_owned)
    };
    let mut parts = vec![lookup("category", &l.key.category)];
    if !l.key.chip_origin.is_empty() {
        parts.push(lookup("chip", &l.key.chip_origin));
    }
    if l.key.registered_model == "true" {
        parts.push(t(ctx.lang, "class.registered").to_owned());
    }
    parts.join(" / ")
}

/// Why the line has its ratio, from the engine's decision.
fn ratio_sentence(ctx: &Ctx, e: &Explanation, l: &LineExplanation) -> String {
    let r = &l.ratio;
    let programme = named(&e.programme_name, &e.run.programme);
    let class = class_words(ctx, &l.line);
    if r.ratio.is_zero() {
        return fill(ctx, "explain.ratio_none", &[("programme", programme)]);
    }
    let mut text = match (&r.stacked_with, r.ceiling) {
        (Some((other, name, other_ratio, true)), Some(ceiling)) => fill(
            ctx,
            "explain.ratio_stacked_primary",
            &[
                ("ratio", percent(r.ratio)),
                ("class", class),
                ("programme", programme),
                ("other", named(name, other)),
                ("other_ratio", percent(*other_ratio)),
                ("sum", percent(r.ratio + other_ratio)),
                ("ceiling", percent(ceiling)),
            ],
        ),
        (Some((other, name, other_ratio, false)), Some(ceiling)) => fill(
            ctx,
            "explain.ratio_stacked_second",
            &[
                ("ratio", percent(r.ratio)),
                ("class", class),
                ("programme", programme),
                ("other", named(name, other)),
                ("other_ratio", percent(*other_ratio)),
                (
                    "own",
                    r.own
                        .map_or_else(|| t(ctx.lang, "explain.rate").to_owned(), percent),
                ),
                ("ceiling", percent(ceiling)),
            ],
        ),
        _ => fill(
            ctx,
            "explain.ratio_own",
            &[
                ("ratio", percent(r.ratio)),
                ("class", class),
                ("programme", programme),
            ],
        ),
    };
    if let Some((programmes, total)) = &r.runner_up {
        let chosen = r.ratio + r.stacked_with.as_ref().map_or(Default::default(), |s| s.2);
        let tie = match r.chosen_because {
            ChosenBecause::HigherRatio | ChosenBecause::Only => "",
            ChosenBecause::StackedOnTie => t(ctx.lang, "explain.tie_stacked"),
            ChosenBecause::FunderOnTie => t(ctx.lang, "explain.tie_funder"),
            ChosenBecause::IdOnTie => t(ctx.lang, "explain.tie_id"),
        };
        text.push_str(&fill(
            ctx,
            "explain.most_favourable",
            &[
                ("chosen", percent(chosen)),
                ("other", percent(*total)),
                ("programmes", programmes.join(" + ")),
                ("tie", tie.to_owned()),
            ],
        ));
    }
    text
}

/// The sentence of one cut: what the line had, what the limit left it, and why.
fn cut_sentence(ctx: &Ctx, e: &Explanation, l: &LineExplanation, c: &Cut) -> String {
    let period = &l.line.original_period;
    let year = period.get(..4).unwrap_or(period).to_owned();
    let run = e.run.run_id.to_string();
    let had = if c.before == l.demand {
        fill(ctx, "explain.cut_had_demand", &[("amount", cny(c.before))])
    } else {
        fill(ctx, "explain.cut_had_after", &[("amount", cny(c.before))])
    };
    let limit = match c.stage {
        CutBy::BeneficiaryCap => fill(
            ctx,
            "explain.limit_beneficiary",
            &[
                ("year", year),
                ("limit", cny(c.limit)),
                ("who", named(&c.subject_name, &c.subject)),
            ],
        ),
        CutBy::ProviderCap => fill(
            ctx,
            "explain.limit_provider",
            &[
                ("year", year),
                ("limit", cny(c.limit)),
                ("who", named(&c.subject_name, &c.subject)),
            ],
        ),
        CutBy::Pool => fill(
            ctx,
            "explain.limit_pool",
            &[
                ("year", year),
                ("limit", cny(c.limit)),
                ("programme", named(&e.programme_name, &e.run.programme)),
            ],
        ),
    };
    let reached = if c.left == Fen::ZERO {
        fill(ctx, "explain.reached_before", &[("period", period.clone())])
    } else if *period == e.run.period {
        fill(ctx, "explain.reached_with", &[("run", run)])
    } else {
        fill(
            ctx,
            "explain.reached_restated",
            &[("period", period.clone()), ("run", run)],
        )
    };
    let earlier = c.prior.minus(c.prior_opening);
    let mut parts = Vec::new();
    if earlier != Fen::ZERO {
        parts.push(fill(
            ctx,
            "explain.prior_months",
            &[("amount", cny(earlier))],
        ));
    }
    if c.prior_opening != Fen::ZERO {
        parts.push(fill(
            ctx,
            "explain.prior_opening",
            &[("amount", cny(c.prior_opening))],
        ));
    }
    let prior = if parts.is_empty() {
        fill(ctx, "explain.prior_none", &[("period", period.clone())])
    } else {
        fill(
            ctx,
            "explain.prior",
            &[
                ("amount", cny(c.prior)),
                ("period", period.clone()),
                ("parts", parts.join(t(ctx.lang, "explain.comma"))),
            ],
        )
    };
    fill(
        ctx,
        "explain.cut",
        &[
            ("had", had),
            ("after", cny(c.after)),
            ("limit", limit),
            ("reached", reached),
            ("prior", prior),
            ("left", cny(c.left)),
            ("lines", c.lines.to_string()),
            ("wanted", cny(c.wanted)),
        ],
    )
}

/// One record of a line as the page shows it.
pub struct RecordView {
    pub record_id: String,
    pub sku: String,
    pub start: String,
    pub end: String,
    pub quantity: String,
    pub amount: Fen,
    pub void: bool,
    /// Void, in words: when, why, and whether the run's base still counted it.
    pub state: String,
}

/// One line of the explanation page.
pub struct LineView {
    pub l: LineExplanation,
    pub class: String,
    pub ratio_percent: String,
    pub ratio_text: String,
    pub base_text: String,
    pub demand_text: Option<String>,
    pub cut_texts: Vec<String>,
    pub settles_text: String,
    /// Who is paid: the enterprise itself or the provider on its behalf, named.
    pub payee: String,
    pub records: Vec<RecordView>,
    /// This line alone, first page: the search form's `line`.
    pub line_token: String,
    /// The query of the next page of records, when there is one.
    pub next: Option<String>,
}

fn line_view(ctx: &Ctx, e: &Explanation, l: LineExplanation) -> LineView {
    let line = &l.line;
    let period = line.original_period.clone();
    let run = e.run.run_id.to_string();
    let base_now = if l.base_now.0 == line.base_fen {
        fill(
            ctx,
            "explain.base_same",
            &[("records", l.records_now.to_string())],
        )
    } else {
        fill(
            ctx,
            "explain.base_moved",
            &[
                ("records", l.records_now.to_string()),
                ("amount", cny(l.base_now)),
            ],
        )
    };
    let base_text = fill(
        ctx,
        "explain.base",
        &[
            ("base", cny(Fen(line.base_fen))),
            ("period", period.clone()),
            ("run", run.clone()),
            ("now", base_now),
        ],
    );
    let demand_text = (!l.ratio.ratio.is_zero()).then(|| {
        let mut text = fill(
            ctx,
            "explain.demand",
            &[
                ("demand", cny(l.demand)),
                ("base", cny(Fen(line.base_fen))),
                ("ratio", percent(l.ratio.ratio)),
            ],
        );
        if l.cuts.is_empty() {
            text.push_str(t(ctx.lang, "explain.no_cut"));
        }
        text
    });
    let (entitled, before, change) = (
        cny(Fen(line.entitlement_fen)),
        cny(Fen(line.posted_before_fen)),
        cny(Fen(line.amount_fen)),
    );
    let settles_text = if l.adjustment {
        let kind = if line.amount_fen < 0 {
            "explain.claw_back"
        } else {
            "explain.late_records"
        };
        fill(
            ctx,
            "explain.settles_adjustment",
            &[
                ("period", period.clone()),
                ("entitled", entitled),
                ("before", before),
                ("change", change),
                ("kind", t(ctx.lang, kind).to_owned()),
            ],
        )
    } else if line.posted_before_fen == 0 {
        fill(
            ctx,
            "explain.settles_own",
            &[("period", period.clone()), ("entitled", entitled)],
        )
    } else {
        fill(
            ctx,
            "explain.settles_rest",
            &[
                ("period", period.clone()),
                ("entitled", entitled),
                ("before", before),
                ("change", change),
            ],
        )
    };
    let cut_texts = l.cuts.iter().map(|c| cut_sentence(ctx, e, &l, c)).collect();
    let time = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&super::format::shanghai())
            .format("%Y-%m-%d %H:%M")
            .to_string()
    };
    let records = l
        .records
        .iter()
        .map(|r| RecordView {
            record_id: r.record_id.clone(),
            sku: r.sku.clone(),
            start: time(r.start),
            end: time(r.end),
            quantity: r.quantity.clone(),
            amount: r.amount,
            void: r.voided_at.is_some(),
            state: match &r.voided_at {
                None => t(ctx.lang, "explain.record_counted").to_owned(),
                Some(at) => fill(
                    ctx,
                    if r.counted {
                        "explain.record_void_after"
                    } else {
                        "explain.record_void"
                    },
                    &[
                        ("at", super::format::shanghai_time(at)),
                        ("reason", r.void_reason.clone().unwrap_or_default()),
                    ],
                ),
            },
        })
        .collect();
    let payee = if line.payee == e.beneficiary {
        fill(
            ctx,
            "explain.payee_self",
            &[("name", named(&e.beneficiary_name, &e.beneficiary))],
        )
    } else if line.payee == line.key.provider {
        fill(
            ctx,
            "explain.payee_provider",
            &[("name", named(&l.provider_name, &line.key.provider))],
        )
    } else {
        line.payee.clone()
    };
    LineView {
        payee,
        class: class_words(ctx, &l.line),
        ratio_percent: percent(l.ratio.ratio),
        ratio_text: ratio_sentence(ctx, e, &l),
        base_text,
        demand_text,
        cut_texts,
        settles_text,
        records,
        line_token: suanli_app::explain::line_token(&l.line, ""),
        next: l.next_records_page_token.clone(),
        l,
    }
}

#[derive(Template)]
#[template(path = "explain.html")]
struct ExplainPage<'a> {
    ctx: &'a Ctx,
    title: String,
    e: &'a Explanation,
    lines: Vec<LineView>,
    /// Where the page lives: `/finance/runs/{run}/explain` or `/enterprise/runs/{run}/explain`.
    base_path: String,
    /// `beneficiary=…` for readers (an enterprise's own page needs none), url-encoded.
    who_query: String,
    /// The search as typed: a record id's beginning and `yes` / `no` / empty for void.
    q: &'a str,
    void: &'a str,
    /// One line was chosen (a search or a page of its records).
    one_line: bool,
    /// The run page, for readers.
    run_link: bool,
}

impl ExplainPage<'_> {
    /// The query of a page of `token`'s line, the search kept.
    fn page_query(&self, token: &str) -> String {
        let mut parts = Vec::new();
        if !self.who_query.is_empty() {
            parts.push(self.who_query.clone());
        }
        parts.push(format!("line={}", url_encode(token)));
        if !self.q.is_empty() {
            parts.push(format!("q={}", url_encode(self.q)));
        }
        if !self.void.is_empty() {
            parts.push(format!("void={}", url_encode(self.void)));
        }
        parts.join("&")
    }
}

/// Which beneficiary's lines `ctx` asks for on `area`'s explanation page, checked against
/// the role: an enterprise its own only, finance and auditors any named one.
fn beneficiary_of(ctx: &Ctx, area: &str, query: &Form) -> Result<String, ConsoleError> {
    let p = ctx.principal();
    let asked = query.optional("beneficiary").map(str::trim);
    match (p, asked) {
        (Principal::Beneficiary(own), None) => Ok(own.clone()),
        (Principal::Beneficiary(own), Some(b)) if b == own => Ok(own.clone()),
        (Principal::Beneficiary(own), Some(b)) => Err(ConsoleError::Forbidden(
            Code::OtherParty,
            format!("beneficiary {own:?} cannot read {b:?}'s lines"),
        )),
        (_, asked) => {
            let what = if area == "finance" {
                "explaining a settlement run"
            } else {
                "reading another party's lines"
            };
            require(p, READERS, what)?;
            asked
                .filter(|b| !b.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ConsoleError::field("beneficiary", Code::Missing, "is missing"))
        }
    }
}

/// The explanation page of `run_id`'s lines of one beneficiary (`area` is `finance` or
/// `enterprise`, the first segment of the path).
pub async fn explain_page(
    console: &Arc<Console>,
    ctx: &Ctx,
    area: &str,
    run_id: i64,
    query: &Form,
) -> Result<String, ConsoleError> {
    let beneficiary = beneficiary_of(ctx, area, query)?;
    if area == "finance" {
        require(ctx.principal(), READERS, "explaining a settlement run")?;
    }
    let q = query.optional("q").unwrap_or("").trim().to_owned();
    if q.len() > suanli_domain::usage::ID_BYTES_MAX {
        return Err(ConsoleError::field(
            "q",
            Code::TooLong,
            format!(
                "a record id has at most {} bytes",
                suanli_domain::usage::ID_BYTES_MAX
            ),
        ));
    }
    let void = match query.optional("void").unwrap_or("") {
        "" => None,
        "yes" => Some(true),
        "no" => Some(false),
        other => {
            return Err(ConsoleError::field(
                "void",
                Code::Invalid,
                format!("{other:?} is not yes or no"),
            ));
        }
    };
    let token = query
        .optional("line")
        .map(str::to_owned)
        .filter(|t| !t.is_empty());
    if (!q.is_empty() || void.is_some()) && token.is_none() {
        return Err(ConsoleError::field(
            "line",
            Code::Missing,
            "a record search names its line",
        ));
    }
    let one_line = token.is_some();
    let page = RecordsPage {
        size: RECORDS_SHOWN,
        token,
        filter: RecordFilter {
            id_prefix: q.clone(),
            void,
        },
    };
    let who = beneficiary.clone();
    // Beside the writer, on a connection of its own, as the API's ExplainRun: the run's
    // programme-year is recomputed, which must hold up neither ingest nor balance look-ups.
    let e = read_alone(console, move |s| {
        suanli_app::settlement::explain(s, run_id, &who, None, &page)
    })
    .await
    .map_err(|e| match e {
        SettleError::InvalidArgument(m) => ConsoleError::field("line", Code::Invalid, m),
        e => settle_error(e, "beneficiary"),
    })?;
    let lines = e
        .lines
        .clone()
        .into_iter()
        .map(|l| line_view(ctx, &e, l))
        .collect();
    let who_query = if matches!(ctx.principal(), Principal::Beneficiary(_)) {
        String::new()
    } else {
        format!("beneficiary={}", url_encode(&beneficiary))
    };
    let void_text = query.optional("void").unwrap_or("");
    let page = ExplainPage {
        ctx,
        title: format!(
            "{} · {} {}",
            t(ctx.lang, "explain.title"),
            t(ctx.lang, "run"),
            run_id
        ),
        e: &e,
        lines,
        base_path: format!("/{area}/runs/{run_id}/explain"),
        who_query,
        q: &q,
        void: void_text,
        one_line,
        run_link: READERS.contains(&ctx.principal().role()),
    };
    Ok(super::view::Markup::render(&page).into_string())
}

#[derive(Template)]
#[template(path = "statement.html")]
struct StatementPage<'a> {
    ctx: &'a Ctx,
    title: String,
    /// Why a large run's statement lists no line, in the page's language.
    summarised: Option<String>,
    s: &'a RunStatement,
}

impl StatementPage<'_> {
    fn class_of(&self, l: &RunLineRow) -> String {
        class_words(self.ctx, l)
    }

    fn ratio_of(&self, l: &RunLineRow) -> String {
        ratio_percent(l)
    }
}

/// A line's ratio as a percentage (`0.30` → `30%`).
pub fn ratio_percent(l: &RunLineRow) -> String {
    l.ratio
        .parse::<rust_decimal::Decimal>()
        .map_or_else(|_| l.ratio.clone(), percent)
}

/// The printable settlement statement of an approved or posted run.
pub async fn statement_page(
    console: &Arc<Console>,
    ctx: &Ctx,
    run_id: i64,
    query: &Form,
) -> Result<String, ConsoleError> {
    require(ctx.principal(), READERS, "a settlement statement")?;
    let payee = query
        .optional("payee")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let asked = payee.clone();
    let lines_max = statement_lines_max();
    let s = read_alone(console, move |s| {
        suanli_app::statement::run_statement(s, run_id, asked.as_deref(), lines_max)
    })
    .await
    .map_err(|e| settle_error(e, "run"))?;
    let refuse = |code: Code, what: &str| {
        Err(ConsoleError::Field(
            FieldError::new(
                "run",
                code,
                format!(
                    "run {run_id} is {what}; a statement is signed for an approved or posted run"
                ),
            ),
            StatusCode::CONFLICT,
        ))
    };
    match s.run.status.as_str() {
        "approved" | "posted" => {}
        "cancelled" => return refuse(Code::RunCancelled, "cancelled"),
        other => return refuse(Code::RunNotApproved, other),
    }
    if let Some(payee) = &payee
        && s.payee.is_none()
    {
        return Err(ConsoleError::Field(
            FieldError::new(
                "payee",
                Code::PayeeNotInRun,
                format!("payee {payee:?} has no line in run {run_id}"),
            ),
            StatusCode::NOT_FOUND,
        ));
    }
    let mut title = format!(
        "{} · {} {}",
        t(ctx.lang, "statement.sheet"),
        s.programme_name,
        s.run.period
    );
    if let Some(p) = &s.payee {
        title = format!("{title} · {}", named(&p.name, &p.payee));
    }
    let page = StatementPage {
        ctx,
        title,
        summarised: s.summarised.then(|| {
            let n = u64::try_from(s.line_count).unwrap_or(u64::MAX);
            fill(
                ctx,
                "statement.summarised",
                &[("n", super::lists::format_count(n))],
            )
        }),
        s: &s,
    };
    Ok(super::view::Markup::render(&page).into_string())
}

/// A beneficiary's posted lines of `year`, each linked to its explanation: the part of the
/// enterprise page (`enterprise_lines.html`) that lists them.
#[derive(Template)]
#[template(path = "enterprise_lines.html")]
pub struct EnterpriseLines<'a> {
    ctx: &'a Ctx,
    lines: Vec<PostedLine>,
    all: usize,
    /// `beneficiary=…&` for readers, url-encoded.
    who_query: String,
}

impl EnterpriseLines<'_> {
    fn class_of(&self, l: &RunLineRow) -> String {
        class_words(self.ctx, l)
    }

    fn token_of(&self, l: &RunLineRow) -> String {
        suanli_app::explain::line_token(l, "")
    }
}

/// The explanation of one line of a run, for finance and auditors (the run page links every
/// line to it).
pub fn line_href(run_id: i64, l: &RunLineRow) -> String {
    format!(
        "/finance/runs/{run_id}/explain?beneficiary={}&line={}",
        url_encode(&l.key.beneficiary),
        suanli_app::explain::line_token(l, "")
    )
}

/// The lines part of the enterprise page: the beneficiary's posted lines of `year`.
pub async fn enterprise_lines(
    console: &Arc<Console>,
    ctx: &Ctx,
    beneficiary: &str,
    year: i32,
) -> Result<super::view::Markup, ConsoleError> {
    let who = beneficiary.to_owned();
    let (lines, all) = console
        .balances(move |r| {
            r.read(|s| suanli_app::statement::posted_lines(s, &who, year, POSTED_LINES_SHOWN))
        })
        .await?
        .map_err(|e| settle_error(e, "beneficiary"))?;
    let who_query = if matches!(ctx.principal(), Principal::Beneficiary(_)) {
        String::new()
    } else {
        format!("beneficiary={}&", url_encode(beneficiary))
    };
    Ok(super::view::Markup::render(&EnterpriseLines {
        ctx,
        lines,
        all,
        who_query,
    }))
}

view!(ExplainPage, StatementPage, EnterpriseLines);

#[cfg(test)]
mod tests {
    use super::super::i18n::{Lang, lookup};
    use super::*;
    use rust_decimal::Decimal;
    use suanli_app::explain::RatioExplanation;
    use suanli_store::ledger::{LineKeyRow, RunRow};

    fn ctx(lang: Lang) -> Ctx {
        Ctx {
            lang,
            set_lang: false,
            principal: None,
            actor: None,
            client: None,
            must_enrol: false,
            csrf: String::new(),
            session_id: None,
            path: "/finance".into(),
            query_without_lang: String::new(),
            sso: false,
            sso_flow: None,
        }
    }

    /// A line of programme `p` whose ratio was chosen over another package by `because`.
    fn explained(because: ChosenBecause) -> (Explanation, LineExplanation) {
        let line = RunLineRow {
            original_period: "2025-03".into(),
            key: LineKeyRow {
                beneficiary: "e1".into(),
                provider: "p1".into(),
                category: "model".into(),
                chip_origin: String::new(),
                registered_model: "true".into(),
            },
            base_fen: 100_000,
            ratio: "0.3".into(),
            entitlement_fen: 30_000,
            posted_before_fen: 0,
            amount_fen: 30_000,
            cut_by: String::new(),
            payee: "e1".into(),
        };
        let l = LineExplanation {
            seq: 0,
            line,
            provider_name: "Provider One".into(),
            reason: String::new(),
            adjustment: false,
            ratio: RatioExplanation {
                class: "model/registered".into(),
                ratio: Decimal::new(3, 1),
                own: Some(Decimal::new(3, 1)),
                stacked_with: None,
                ceiling: None,
                chosen_because: because,
                runner_up: Some((vec!["q".into()], Decimal::new(3, 1))),
                text: String::new(),
            },
            demand: Fen(30_000),
            cuts: Vec::new(),
            base_now: Fen(100_000),
            records_now: 1,
            records: Vec::new(),
            next_records_page_token: None,
            text: Vec::new(),
        };
        let e = Explanation {
            run: RunRow {
                run_id: 7,
                programme: "p".into(),
                period: "2025-03".into(),
                ..RunRow::default()
            },
            programme_name: "城市券".into(),
            beneficiary: "e1".into(),
            beneficiary_name: "杭宇智能".into(),
            lines: Vec::new(),
        };
        (e, l)
    }

    // The most favourable package and the tie-break that decided it, in both languages.
    #[test]
    fn most_favourable_package_and_its_tie_break_are_explained() {
        let (e, l) = explained(ChosenBecause::FunderOnTie);
        assert_eq!(
            ratio_sentence(&ctx(Lang::En), &e, &l),
            "ratio 30%: the own rate of 城市券 (p) for model / registered model (R4); the most favourable package (从优、就高、不重复): 30% against 30% for q; equal, and the higher funder level goes first"
        );
        assert_eq!(
            ratio_sentence(&ctx(Lang::Zh), &e, &l),
            "比例 30%：城市券 (p) 对「模型 / 已备案模型」的自有费率（R4）；按从优、就高、不重复原则选择最优方案：30%，优于 q 的 30%（比例相同时出资层级高者优先）"
        );
        let (e, l) = explained(ChosenBecause::HigherRatio);
        assert!(ratio_sentence(&ctx(Lang::En), &e, &l).ends_with("30% against 30% for q"));
        let (e, l) = explained(ChosenBecause::IdOnTie);
        assert!(ratio_sentence(&ctx(Lang::Zh), &e, &l).ends_with("（比例相同时项目编号小者优先）"));
    }

    // Every key this module writes its sentences with exists in both languages, and every
    // placeholder a sentence's text has is one this module fills.
    #[test]
    fn sentence_keys_exist_in_both_languages() {
        let whole = include_str!("explain.rs");
        // The module without these tests.
        let source = &whole[..whole.find("#[cfg(test)]").unwrap()];
        let mut checked = 0;
        for part in source.split("\"explain.").skip(1) {
            let rest = &part[..part.find('"').unwrap()];
            // A template's file name is not a key.
            if rest == "html" {
                continue;
            }
            let key = format!("explain.{rest}");
            for lang in [Lang::Zh, Lang::En] {
                let text = lookup(lang, &key).unwrap_or_else(|| panic!("missing {key}"));
                for name in text.split('{').skip(1) {
                    let name = &name[..name.find('}').expect("a closed placeholder")];
                    assert!(
                        source.contains(&format!("\"{name}\",")),
                        "{key} has a placeholder {{{name}}} nothing fills"
                    );
                }
            }
            checked += 1;
        }
        assert!(checked >= 35, "only {checked} keys found");
    }
}
