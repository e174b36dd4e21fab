//! The console's lists: enterprises, providers, settlement runs, payments, usage records and
//! the audit log, each with search, filters, an allow-listed sort, bounded pages and exports.
//!
//! Every list is a GET whose query is the whole state (so a list's URL can be shared): its
//! filters, `sort` and `dir`, `page` (1-based) and `per` (at most [`PER_MAX`]). The query is
//! parsed strictly — an unknown parameter, a value outside its choices, a malformed month or
//! day, a page past the last — and a refusal is shown next to the field at fault. Runs,
//! payments, records and the audit log are read a page at a time in SQL
//! (`suanli_store::lists`, both backends) beside the writer — usage records from the row a
//! page's link starts at (`after`, `before`) when there is one, so a deep page costs only its
//! own rows; enterprises and providers are the
//! current registry's, paged in memory with their cap positions from the maintained balance
//! figures.
//!
//! `export=csv` or `export=xlsx` on any list's URL exports the whole filtered list, read page
//! by page: CSV is streamed (UTF-8 with a byte-order mark so spreadsheet programs read Chinese,
//! cells starting with `=`, `+`, `-` or `@` prefixed with `'` so none becomes a formula); XLSX
//! is written with `rust_xlsxwriter` in its constant-memory mode, amounts as numbers with two
//! decimals (`0.00`). Headers are in the page's language.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use suanli_app::balances::CapState;
use suanli_app::settlement::SettleError;
use suanli_domain::Registry;
use suanli_domain::money::Fen;
use suanli_store::Principal;
use suanli_store::lists::{self as store_lists, Window};

use super::format::{cny, shanghai, shanghai_time, url_encode};
use super::i18n::{Lang, lookup, t};
use super::view::{View, view};
use super::{
    Code, Console, ConsoleError, Ctx, FieldError, Form, READERS, html, require, security_headers,
    settle_error,
};

/// Rows on a page unless `per` says otherwise.
pub const PER_DEFAULT: u64 = 50;
/// Most rows on one page.
pub const PER_MAX: u64 = 200;
/// Rows read per query while exporting.
const EXPORT_CHUNK: u64 = 1000;
/// Most rows of an XLSX export: a worksheet holds 1,048,576 rows, and a list of usage records
/// is counted only up to [`store_lists::RECORDS_COUNTED_MAX`].
const XLSX_ROWS_MAX: u64 = store_lists::RECORDS_COUNTED_MAX;

/// How a filter is typed and checked.
#[derive(Clone, Copy)]
enum Kind {
    /// Free text (a search, an id).
    Text,
    /// One of the values; the labels are `list.choice.<value>`.
    Choice(&'static [&'static str]),
    /// `YYYY-MM`.
    Month,
    /// `YYYY-MM-DD`, a day in Asia/Shanghai.
    Day,
    /// A fiscal year.
    Year,
    /// A programme's id, picked by name among the current registry's programmes (any text is
    /// accepted, as for [`Kind::Text`]: a programme the registry no longer holds still filters,
    /// and the picker shows it).
    Programme,
    /// An audit log action, picked by its name among [`AUDIT_ACTIONS`] (any text is accepted,
    /// as for [`Kind::Programme`]).
    Action,
}

/// The actions the audit log records, each named `audit_action.<action>` in the string table.
const AUDIT_ACTIONS: [&str; 22] = [
    "run.create",
    "run.approve",
    "run.post",
    "run.cancel",
    "payment",
    "payment.record",
    "payment.confirm",
    "payment.withdraw",
    "opening.import",
    "opening.confirm",
    "registry.load",
    "registry.patch",
    "record.void",
    "user.create",
    "user.disable",
    "user.enable",
    "user.set_role",
    "user.reset_password",
    "user.totp_enrol",
    "user.totp_reset",
    "token.create",
    "token.revoke",
];

struct FilterSpec {
    name: &'static str,
    /// The label's key.
    label: &'static str,
    kind: Kind,
}

/// One list: its filters and its sorts (the first is the default, with `default_desc`).
struct Spec {
    name: &'static str,
    title: &'static str,
    filters: &'static [FilterSpec],
    sorts: &'static [&'static str],
    default_desc: bool,
}

const fn text(name: &'static str, label: &'static str) -> FilterSpec {
    FilterSpec {
        name,
        label,
        kind: Kind::Text,
    }
}

const ENTERPRISES: Spec = Spec {
    name: "enterprises",
    title: "list.enterprises",
    filters: &[
        text("q", "list.search_name_id"),
        FilterSpec {
            name: "state",
            label: "list.cap_state",
            kind: Kind::Choice(&["at_cap", "near_cap", "below_cap", "no_cap"]),
        },
        FilterSpec {
            name: "programme",
            label: "programme",
            kind: Kind::Programme,
        },
        FilterSpec {
            name: "year",
            label: "year",
            kind: Kind::Year,
        },
    ],
    sorts: &["name", "id", "settled", "entitled"],
    default_desc: false,
};

const PROVIDERS: Spec = Spec {
    name: "providers",
    title: "list.providers",
    filters: &[text("q", "list.search_name_id")],
    sorts: &["name", "id"],
    default_desc: false,
};

const RUNS: Spec = Spec {
    name: "runs",
    title: "list.runs",
    filters: &[
        FilterSpec {
            name: "programme",
            label: "programme",
            kind: Kind::Programme,
        },
        FilterSpec {
            name: "period",
            label: "period",
            kind: Kind::Month,
        },
        FilterSpec {
            name: "state",
            label: "status",
            kind: Kind::Choice(&["open", "approved", "posted", "cancelled"]),
        },
    ],
    sorts: &["id", "period", "programme"],
    default_desc: true,
};

const PAYMENTS: Spec = Spec {
    name: "payments",
    title: "list.payments",
    filters: &[
        text("payee", "payee"),
        FilterSpec {
            name: "programme",
            label: "programme",
            kind: Kind::Programme,
        },
        FilterSpec {
            name: "state",
            label: "status",
            kind: Kind::Choice(&["booked", "awaiting", "withdrawn"]),
        },
    ],
    sorts: &["at", "amount", "payee"],
    default_desc: true,
};

const RECORDS: Spec = Spec {
    name: "records",
    title: "list.records",
    filters: &[
        text("q", "list.search_record"),
        text("provider", "list.provider"),
        text("beneficiary", "list.beneficiary"),
        text("sku", "list.sku"),
        FilterSpec {
            name: "period",
            label: "period",
            kind: Kind::Month,
        },
        FilterSpec {
            name: "void",
            label: "list.void",
            kind: Kind::Choice(&["yes", "no"]),
        },
    ],
    sorts: &["record"],
    default_desc: false,
};

const AUDIT_LOG: Spec = Spec {
    name: "audit",
    title: "list.audit",
    filters: &[
        text("actor", "list.actor"),
        FilterSpec {
            name: "action",
            label: "list.action",
            kind: Kind::Action,
        },
        FilterSpec {
            name: "from",
            label: "from",
            kind: Kind::Day,
        },
        FilterSpec {
            name: "to",
            label: "to",
            kind: Kind::Day,
        },
    ],
    sorts: &["seq"],
    default_desc: true,
};

/// The list served at `segments`, if any.
fn spec_of(segments: &[&str]) -> Option<&'static Spec> {
    match segments {
        ["finance", "enterprises"] => Some(&ENTERPRISES),
        ["finance", "providers"] => Some(&PROVIDERS),
        ["finance", "runs"] => Some(&RUNS),
        ["finance", "payments"] => Some(&PAYMENTS),
        ["records"] => Some(&RECORDS),
        ["audit", "log"] => Some(&AUDIT_LOG),
        _ => None,
    }
}

/// Whether a GET of `segments` is a list's.
pub fn serves(segments: &[&str]) -> bool {
    spec_of(segments).is_some()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Export {
    Csv,
    Xlsx,
}

/// A usage record's place in the records list's order: its provider's id in the store and its
/// record id.
type Key = (i64, String);

/// Where a page of usage records starts: right after a row (`after=`, the next page's link) or
/// right before one (`before=`, the previous page's). A page found this way reads only its own
/// rows, however deep in the list; a page found by its number skips the rows before it, so
/// numbers reach only the counted part of the list ([`store_lists::RECORDS_COUNTED_MAX`]).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cursor {
    After(Key),
    Before(Key),
}

impl Cursor {
    /// The parameter's name and value (`after`, `3:r42`).
    fn param(&self) -> (&'static str, String) {
        let (name, (provider, record)) = match self {
            Cursor::After(k) => ("after", k),
            Cursor::Before(k) => ("before", k),
        };
        (name, format!("{provider}:{record}"))
    }
}

/// `text` (`3:r42`) as a key, or why not.
fn key_of(name: &str, text: &str) -> Result<Key, FieldError> {
    text.split_once(':')
        .and_then(|(p, r)| {
            let p = p.parse::<i64>().ok().filter(|p| *p >= 0)?;
            (!r.is_empty() && r.len() <= suanli_domain::usage::ID_BYTES_MAX)
                .then(|| (p, r.to_owned()))
        })
        .ok_or_else(|| {
            bad(
                name,
                Code::CursorInvalid,
                format!("{text:?} is not a place in this list"),
            )
        })
}

/// A list's query, checked.
struct Query {
    /// The filters given, in the spec's order.
    values: Vec<(&'static str, String)>,
    sort: &'static str,
    desc: bool,
    page: u64,
    per: u64,
    /// Usage records only: the row the page starts after or before.
    cursor: Option<Cursor>,
    export: Option<Export>,
}

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    /// The query string of this list's page `page` (filters, sort and size kept).
    fn href(&self, spec: &Spec, page: u64) -> String {
        let mut parts: Vec<String> = self
            .values
            .iter()
            .map(|(n, v)| format!("{n}={}", url_encode(v)))
            .collect();
        if self.sort != spec.sorts[0] || self.desc != spec.default_desc {
            parts.push(format!("sort={}", self.sort));
            parts.push(format!("dir={}", if self.desc { "desc" } else { "asc" }));
        }
        if self.per != PER_DEFAULT {
            parts.push(format!("per={}", self.per));
        }
        if page != 1 {
            parts.push(format!("page={page}"));
        }
        format!("?{}", parts.join("&"))
    }

    /// The query string of page `page`, found from `cursor`.
    fn href_at(&self, spec: &Spec, page: u64, cursor: &Cursor) -> String {
        let (name, value) = cursor.param();
        let base = self.href(spec, page);
        let sep = if base == "?" { "" } else { "&" };
        format!("{base}{sep}{name}={}", url_encode(&value))
    }

    /// The query string of the export in `format` of the whole filtered list.
    fn export_href(&self, spec: &Spec, format: &str) -> String {
        let base = self.href(spec, 1);
        if base == "?" {
            format!("?export={format}")
        } else {
            format!("{base}&export={format}")
        }
    }
}

fn bad(field: &str, code: Code, message: impl Into<String>) -> FieldError {
    FieldError::new(field, code, message)
}

/// `YYYY-MM` as a month.
fn month_of(text: &str) -> Option<(i32, u32)> {
    let (y, m) = text.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m) = (y.parse::<i32>().ok()?, m.parse::<u32>().ok()?);
    ((2000..=2100).contains(&y) && (1..=12).contains(&m)).then_some((y, m))
}

/// Checks `form` against `spec`: every field known, every value of its kind.
fn parse(spec: &Spec, form: &Form) -> Result<Query, FieldError> {
    for name in form.names() {
        let known = spec.filters.iter().any(|f| f.name == name)
            || ["sort", "dir", "page", "per", "export", "lang"].contains(&name)
            || (spec.name == "records" && ["after", "before"].contains(&name));
        if !known {
            return Err(bad(
                name,
                Code::UnknownParameter,
                format!("this list has no parameter {name:?}"),
            ));
        }
    }
    let mut values = Vec::new();
    for f in spec.filters {
        let Some(v) = form.optional(f.name) else {
            continue;
        };
        match f.kind {
            Kind::Text | Kind::Programme | Kind::Action => {}
            Kind::Choice(choices) => {
                if !choices.contains(&v) {
                    return Err(bad(
                        f.name,
                        Code::NotAChoice,
                        format!("{v:?} is not one of {}", choices.join(", ")),
                    ));
                }
            }
            Kind::Month => {
                if month_of(v).is_none() {
                    return Err(bad(
                        f.name,
                        Code::PeriodNotAMonth,
                        format!("{v:?} is not a month YYYY-MM"),
                    ));
                }
            }
            Kind::Day => {
                if chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_err() || v.len() != 10 {
                    return Err(bad(
                        f.name,
                        Code::DayNotADate,
                        format!("{v:?} is not a date YYYY-MM-DD"),
                    ));
                }
            }
            Kind::Year => {
                if !v.parse::<i32>().is_ok_and(|y| (2000..=2100).contains(&y)) {
                    return Err(bad(
                        f.name,
                        Code::YearNotAYear,
                        format!("{v:?} is not a year"),
                    ));
                }
            }
        }
        values.push((f.name, v.to_owned()));
    }
    if let (Some(from), Some(to)) = (
        values.iter().find(|(n, _)| *n == "from"),
        values.iter().find(|(n, _)| *n == "to"),
    ) && from.1 > to.1
    {
        return Err(bad(
            "to",
            Code::RangeReversed,
            format!("{} is before {}", to.1, from.1),
        ));
    }
    let sort = match form.optional("sort") {
        None => spec.sorts[0],
        Some(s) => spec
            .sorts
            .iter()
            .copied()
            .find(|k| *k == s)
            .ok_or_else(|| {
                bad(
                    "sort",
                    Code::NotAChoice,
                    format!("{s:?} is not one of {}", spec.sorts.join(", ")),
                )
            })?,
    };
    let desc = match form.optional("dir") {
        None => spec.default_desc,
        Some("asc") => false,
        Some("desc") => true,
        Some(d) => {
            return Err(bad(
                "dir",
                Code::NotAChoice,
                format!("{d:?} is not one of asc, desc"),
            ));
        }
    };
    let page = match form.optional("page") {
        None => 1,
        Some(p) => p.parse::<u64>().ok().filter(|p| *p >= 1).ok_or_else(|| {
            bad(
                "page",
                Code::PageNotANumber,
                format!("{p:?} is not a page number (1, 2, …)"),
            )
        })?,
    };
    let per = match form.optional("per") {
        None => PER_DEFAULT,
        Some(p) => p
            .parse::<u64>()
            .ok()
            .filter(|p| (1..=PER_MAX).contains(p))
            .ok_or_else(|| {
                bad(
                    "per",
                    Code::PerOutOfRange,
                    format!("{p:?} is not a page size from 1 to {PER_MAX}"),
                )
            })?,
    };
    let cursor = match (form.optional("after"), form.optional("before")) {
        (None, None) => None,
        (Some(a), None) => Some(Cursor::After(key_of("after", a)?)),
        (None, Some(b)) => Some(Cursor::Before(key_of("before", b)?)),
        (Some(_), Some(b)) => {
            return Err(bad(
                "before",
                Code::CursorInvalid,
                format!("{b:?}: a page starts either after a row or before one, not both"),
            ));
        }
    };
    // A page found by its number skips the rows before it: numbers reach the counted part of
    // the records list, and the pages after it are reached by their links, from a row.
    if spec.name == "records"
        && cursor.is_none()
        && (page - 1).saturating_mul(per) >= store_lists::RECORDS_COUNTED_MAX
    {
        return Err(bad(
            "page",
            Code::PageTooDeep,
            format!(
                "page {page} starts past row {}",
                format_count(store_lists::RECORDS_COUNTED_MAX)
            ),
        ));
    }
    let export = match form.optional("export") {
        None => None,
        Some("csv") => Some(Export::Csv),
        Some("xlsx") => Some(Export::Xlsx),
        Some(e) => {
            return Err(bad(
                "export",
                Code::NotAChoice,
                format!("{e:?} is not one of csv, xlsx"),
            ));
        }
    };
    Ok(Query {
        values,
        sort,
        desc,
        page,
        per,
        cursor,
        export,
    })
}

// ---- Rows ------------------------------------------------------------------------------------

/// A cell of a list, shown in the page and exported.
#[derive(Clone, Debug)]
enum Cell {
    Text(String),
    /// A party or a programme: its name first, then its id.
    Named {
        name: String,
        id: String,
    },
    /// A link in the page; its text in an export.
    Link {
        text: String,
        href: String,
    },
    Money(Fen),
    Int(i64),
    /// An RFC 3339 instant, shown in Asia/Shanghai.
    Time(String),
}

/// A column: its header's key and whether its cells name a party (exported as two columns).
struct Column {
    key: &'static str,
    named: bool,
}

const fn col(key: &'static str) -> Column {
    Column { key, named: false }
}

const fn named(key: &'static str) -> Column {
    Column { key, named: true }
}

/// A row: its id (`data-id`), its cells and, for a usage record its provider may void, the
/// record to void.
struct Row {
    id: String,
    cells: Vec<Cell>,
    void: Option<(String, String)>,
}

/// A page of a list: its rows and how many the filters select (`more` when only a lower bound
/// is known).
struct Fetched {
    rows: Vec<Row>,
    total: u64,
    more: bool,
    /// Usage records: the first and the last row's keys, in the page's order.
    ends: Option<(Key, Key)>,
}

fn party(registry: &Registry, id: &str) -> Cell {
    Cell::Named {
        name: super::view::party_name_in(registry, id)
            .unwrap_or("")
            .to_owned(),
        id: id.to_owned(),
    }
}

fn programme(registry: &Registry, id: &str) -> Cell {
    Cell::Named {
        name: registry
            .programme(id)
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        id: id.to_owned(),
    }
}

fn columns(spec: &Spec) -> &'static [Column] {
    const COLUMNS_ENTERPRISES: &[Column] = &[
        named("list.enterprise"),
        col("list.district"),
        col("list.grants"),
        col("entitled"),
        col("settled"),
        col("list.cap_state"),
    ];
    const COLUMNS_PROVIDERS: &[Column] = &[named("list.provider"), col("list.skus")];
    const COLUMNS_RUNS: &[Column] = &[
        col("list.run"),
        named("programme"),
        col("period"),
        col("status"),
        col("lines"),
        col("amount"),
        col("created_by"),
        col("approved_by"),
    ];
    const COLUMNS_PAYMENTS: &[Column] = &[
        col("time"),
        named("payee"),
        named("programme"),
        col("amount"),
        col("reference"),
        col("status"),
        col("list.recorded_by"),
        col("list.confirmed_by"),
    ];
    const COLUMNS_RECORDS: &[Column] = &[
        col("list.record"),
        named("list.provider"),
        named("list.beneficiary"),
        col("list.sku"),
        col("period"),
        col("list.start"),
        col("list.quantity"),
        col("amount"),
        col("list.void"),
    ];
    const COLUMNS_AUDIT: &[Column] = &[
        col("list.seq"),
        col("time"),
        col("list.actor"),
        named("list.action"),
        col("list.subject"),
        col("list.hash"),
    ];
    match spec.name {
        "enterprises" => COLUMNS_ENTERPRISES,
        "providers" => COLUMNS_PROVIDERS,
        "runs" => COLUMNS_RUNS,
        "payments" => COLUMNS_PAYMENTS,
        "records" => COLUMNS_RECORDS,
        _ => COLUMNS_AUDIT,
    }
}

/// Who may read `spec`'s list, and the party a provider's or an enterprise's list is held to.
fn access(
    p: &Principal,
    spec: &Spec,
    query: &Query,
) -> Result<Option<(String, String)>, ConsoleError> {
    if spec.name == "records" {
        let held = match p {
            Principal::Provider(own) => Some(("provider", own)),
            Principal::Beneficiary(own) => Some(("beneficiary", own)),
            _ => None,
        };
        if let Some((field, own)) = held {
            if let Some(asked) = query.get(field)
                && asked != own
            {
                return Err(ConsoleError::Forbidden(
                    Code::OtherParty,
                    format!("{own:?} cannot list {asked:?}'s usage records"),
                ));
            }
            return Ok(Some((field.to_owned(), own.clone())));
        }
    }
    require(p, READERS, "this list")?;
    Ok(None)
}

/// Runs `f` in a read transaction beside the writer, with the current registry.
async fn read<T: Send + 'static>(
    console: &Console,
    f: impl FnOnce(&mut dyn suanli_store::sql::Sql, &Registry) -> suanli_store::Result<T>
    + Send
    + 'static,
) -> Result<T, ConsoleError> {
    console
        .balances(move |r| {
            let registry = r.registry()?;
            in_read(r, move |tx| f(tx, &registry))
        })
        .await?
        .map_err(|e| settle_error(e, "list"))
}

/// Runs `f` in a read transaction beside the writer (no registry needed: a ledger's pages).
pub(super) async fn read_ledger<T: Send + 'static>(
    console: &Console,
    f: impl FnOnce(&mut dyn suanli_store::sql::Sql) -> suanli_store::Result<T> + Send + 'static,
) -> Result<T, ConsoleError> {
    console
        .balances(move |r| in_read(r, f))
        .await?
        .map_err(|e| settle_error(e, "journal"))
}

/// `f` in a read transaction of the balance reader's connection.
fn in_read<T>(
    r: &mut suanli_app::balances::BalanceReader,
    f: impl FnOnce(&mut dyn suanli_store::sql::Sql) -> suanli_store::Result<T>,
) -> Result<T, SettleError> {
    r.read(|t| {
        let mut f = Some(f);
        let mut out = None;
        t.transact(&mut |tx| {
            if let Some(f) = f.take() {
                out = Some(f(tx)?);
            }
            Ok(())
        })?;
        out.ok_or_else(|| {
            SettleError::Store(suanli_store::StoreError::Corrupt(
                "the list's read did not run".into(),
            ))
        })
    })
}

pub(super) fn time_bound(day: &str) -> String {
    // The first instant of the Shanghai day, as the audit log stores instants (UTC, millis).
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_local_timezone(shanghai()).single())
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .unwrap_or_default()
}

pub(super) fn next_day(day: &str) -> String {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.succ_opt())
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn period_text(code: i64) -> String {
    format!("{:04}-{:02}", code / 100, code % 100)
}

fn ns_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .with_timezone(&shanghai())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// The record filter of a query (with a provider's or an enterprise's own party).
fn record_filter(query: &Query, held: &Option<(String, String)>) -> store_lists::RecordFilter {
    let mut f = store_lists::RecordFilter {
        provider: query.owned("provider"),
        beneficiary: query.owned("beneficiary"),
        sku: query.owned("sku"),
        period: query
            .get("period")
            .and_then(month_of)
            .map(|(y, m)| i64::from(y) * 100 + i64::from(m)),
        void: query.get("void").map(|v| v == "yes"),
        record_prefix: query.owned("q"),
    };
    match held {
        Some((field, own)) if field == "provider" => f.provider = Some(own.clone()),
        Some((_, own)) => f.beneficiary = Some(own.clone()),
        None => {}
    }
    f
}

/// What one page (or one export chunk) of a list needs besides the query.
#[derive(Clone)]
struct Asking {
    lang: Lang,
    principal: Principal,
    held: Option<(String, String)>,
}

/// The enterprises or providers of the current registry, filtered and sorted (the registry is
/// in memory already), and how many the filters select; rows are made only for `window` (all of
/// them without one).
async fn registry_rows(
    console: &Console,
    spec: &'static Spec,
    query: &Query,
    lang: Lang,
    window: Option<Window>,
) -> Result<(Vec<Row>, u64), ConsoleError> {
    let (skip, take) = window.map_or((0, usize::MAX), |w| {
        (
            usize::try_from(w.offset).unwrap_or(usize::MAX),
            usize::try_from(w.limit).unwrap_or(usize::MAX),
        )
    });
    let q = query.get("q").map(str::to_lowercase);
    let matches = move |id: &str, name: &str| {
        q.as_ref()
            .is_none_or(|q| id.to_lowercase().contains(q) || name.to_lowercase().contains(q))
    };
    if spec.name == "providers" {
        let desc = query.desc;
        let by_id = query.sort == "id";
        let registry = console
            .balances(|r| r.registry())
            .await?
            .map_err(|e| settle_error(e, "registry"))?;
        let mut skus: HashMap<&str, i64> = HashMap::new();
        for s in &registry.skus {
            *skus.entry(s.provider.as_str()).or_default() += 1;
        }
        let mut providers: Vec<_> = registry
            .providers
            .iter()
            .filter(|p| matches(&p.id, &p.name))
            .collect();
        providers.sort_by(|a, b| {
            let o = if by_id {
                a.id.cmp(&b.id)
            } else {
                a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id))
            };
            if desc { o.reverse() } else { o }
        });
        let total = providers.len() as u64;
        let rows = providers
            .into_iter()
            .skip(skip)
            .take(take)
            .map(|p| Row {
                id: p.id.clone(),
                cells: vec![
                    Cell::Named {
                        name: p.name.clone(),
                        id: p.id.clone(),
                    },
                    Cell::Link {
                        text: skus.get(p.id.as_str()).copied().unwrap_or(0).to_string(),
                        href: format!("/records?provider={}", url_encode(&p.id)),
                    },
                ],
                void: None,
            })
            .collect();
        return Ok((rows, total));
    }
    // Enterprises, with their position against their caps in the year.
    let year = match query.get("year").and_then(|y| y.parse::<i32>().ok()) {
        Some(y) => y,
        None => {
            let years = console
                .balances(|r| r.read(|s| suanli_app::registry::registry_years(s)))
                .await?
                .map_err(|e| settle_error(e, "registry"))?;
            years.first().copied().unwrap_or_else(|| {
                chrono::Datelike::year(&chrono::Utc::now().with_timezone(&shanghai()))
            })
        }
    };
    let (registry, positions) = console
        .balances_whole(move |r| r.cap_positions(year))
        .await?
        .map_err(|e| settle_error(e, "year"))?;
    let programme_filter = query.owned("programme");
    // Per beneficiary: grants, entitled, settled, and the furthest position against a cap.
    let mut by: HashMap<&str, (i64, Fen, Fen, Option<CapState>)> = HashMap::new();
    for p in positions
        .iter()
        .filter(|p| programme_filter.as_ref().is_none_or(|f| *f == p.programme))
    {
        let slot = by.entry(p.beneficiary.as_str()).or_default();
        slot.0 += 1;
        slot.1 = slot.1.plus(p.entitled);
        slot.2 = slot.2.plus(p.settled);
        slot.3 = slot.3.max(p.state);
    }
    let state = query.get("state");
    let mut rows: Vec<_> = registry
        .beneficiaries
        .iter()
        .filter(|b| matches(&b.id, &b.name))
        .filter(|b| programme_filter.is_none() || by.contains_key(b.id.as_str()))
        .map(|b| (b, by.get(b.id.as_str()).copied().unwrap_or_default()))
        .filter(|(_, (_, _, _, s))| match state {
            None => true,
            Some("at_cap") => *s == Some(CapState::At),
            Some("near_cap") => *s == Some(CapState::Near),
            Some("below_cap") => *s == Some(CapState::Below),
            Some(_) => s.is_none(),
        })
        .collect();
    let (sort, desc) = (query.sort, query.desc);
    rows.sort_by(|(a, x), (b, y)| {
        let o = match sort {
            "id" => a.id.cmp(&b.id),
            "settled" => x.2.cmp(&y.2).then_with(|| a.id.cmp(&b.id)),
            "entitled" => x.1.cmp(&y.1).then_with(|| a.id.cmp(&b.id)),
            _ => a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)),
        };
        if desc { o.reverse() } else { o }
    });
    let total = rows.len() as u64;
    let rows = rows
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|(b, (grants, entitled, settled, s))| {
            let s = match s {
                Some(CapState::At) => "at_cap",
                Some(CapState::Near) => "near_cap",
                Some(CapState::Below) => "below_cap",
                None => "no_cap",
            };
            Row {
                id: b.id.clone(),
                cells: vec![
                    Cell::Named {
                        name: b.name.clone(),
                        id: b.id.clone(),
                    },
                    Cell::Text(b.district.clone().unwrap_or_default()),
                    Cell::Int(grants),
                    Cell::Money(entitled),
                    Cell::Money(settled),
                    Cell::Link {
                        text: t(lang, &format!("list.choice.{s}")).to_owned(),
                        href: format!("/enterprise?beneficiary={}&year={year}", url_encode(&b.id)),
                    },
                ],
                void: None,
            }
        })
        .collect();
    Ok((rows, total))
}

/// A page of a SQL-backed list: rows and count. `cursor` starts a page of usage records after
/// or before a row instead of at `window.offset`.
async fn sql_page(
    console: &Console,
    spec: &'static Spec,
    query: &Query,
    asking: &Asking,
    window: Window,
    count: bool,
    cursor: Option<Cursor>,
) -> Result<Fetched, ConsoleError> {
    let lang = asking.lang;
    let desc = query.desc;
    match spec.name {
        "runs" => {
            let f = store_lists::RunFilter {
                programme: query.owned("programme"),
                period: query.owned("period"),
                status: query.owned("state"),
            };
            let order = match query.sort {
                "period" => store_lists::RunOrder::Period,
                "programme" => store_lists::RunOrder::Programme,
                _ => store_lists::RunOrder::Id,
            };
            let (rows, total) = read(console, move |tx, registry| {
                let total = if count {
                    store_lists::runs_count(tx, &f)?
                } else {
                    0
                };
                let rows = store_lists::runs(tx, &f, order, desc, window)?;
                Ok((
                    rows.into_iter()
                        .map(|r| Row {
                            id: r.run_id.to_string(),
                            cells: vec![
                                Cell::Link {
                                    text: r.run_id.to_string(),
                                    href: format!("/finance/runs/{}", r.run_id),
                                },
                                programme(registry, &r.programme),
                                Cell::Text(r.period),
                                Cell::Text(t(lang, &format!("status.{}", r.status)).to_owned()),
                                Cell::Int(r.lines),
                                Cell::Money(Fen(r.amount_fen)),
                                Cell::Text(r.created_by),
                                Cell::Text(r.approved_by.unwrap_or_default()),
                            ],
                            void: None,
                        })
                        .collect::<Vec<_>>(),
                    total,
                ))
            })
            .await?;
            Ok(Fetched {
                rows,
                total,
                more: false,
                ends: None,
            })
        }
        "payments" => {
            let f = store_lists::PaymentFilter {
                payee: query.owned("payee"),
                programme: query.owned("programme"),
                state: query.owned("state"),
            };
            let order = match query.sort {
                "amount" => store_lists::PaymentOrder::Amount,
                "payee" => store_lists::PaymentOrder::Payee,
                _ => store_lists::PaymentOrder::At,
            };
            let (rows, total) = read(console, move |tx, registry| {
                let total = if count {
                    store_lists::payments_count(tx, &f)?
                } else {
                    0
                };
                let rows = store_lists::payments(tx, &f, order, desc, window)?;
                Ok((
                    rows.into_iter()
                        .map(|r| Row {
                            id: r.key.clone(),
                            cells: vec![
                                Cell::Time(r.recorded_at),
                                party(registry, &r.payee),
                                programme(registry, &r.programme),
                                Cell::Money(Fen(r.amount_fen)),
                                Cell::Text(r.reference),
                                Cell::Text(t(lang, &format!("list.choice.{}", r.state)).to_owned()),
                                Cell::Text(r.recorded_by),
                                Cell::Text(r.confirmed_by.unwrap_or_default()),
                            ],
                            void: None,
                        })
                        .collect::<Vec<_>>(),
                    total,
                ))
            })
            .await?;
            Ok(Fetched {
                rows,
                total,
                more: false,
                ends: None,
            })
        }
        "records" => {
            let mut f = record_filter(query, &asking.held);
            let principal = asking.principal.clone();
            let (rows, total, ends) = read(console, move |tx, registry| {
                // A SKU is one provider's: its records lie together in the key's order.
                if f.provider.is_none()
                    && let Some(sku) = f.sku.as_deref().and_then(|s| registry.sku(s))
                {
                    f.provider = Some(sku.provider.clone());
                }
                let total = if count {
                    store_lists::records_count(tx, &f)?
                } else {
                    0
                };
                // The page before a row is the rows before it read backwards, then turned.
                let (backwards, from) = match &cursor {
                    None => (false, None),
                    Some(Cursor::After(k)) => (false, Some(k)),
                    Some(Cursor::Before(k)) => (true, Some(k)),
                };
                let mut rows = store_lists::records(
                    tx,
                    &f,
                    desc != backwards,
                    window,
                    from.map(|(p, r)| (*p, r.as_str())),
                )?;
                if backwards {
                    rows.reverse();
                }
                let key = |r: &store_lists::RecordListRow| (r.provider_id, r.record_id.clone());
                let ends = rows.first().map(key).zip(rows.last().map(key));
                Ok((
                    rows.into_iter()
                        .map(|r| {
                            let void_text = match (&r.voided_at, &r.void_reason) {
                                (Some(at), reason) => format!(
                                    "{} {} {}",
                                    t(lang, "list.voided"),
                                    shanghai_time(at),
                                    reason.as_deref().unwrap_or("")
                                )
                                .trim_end()
                                .to_owned(),
                                (None, _) => String::new(),
                            };
                            let may = r.voided_at.is_none()
                                && super::pages::may_void(&principal, &r.provider);
                            Row {
                                id: r.record_id.clone(),
                                void: may.then(|| (r.provider.clone(), r.record_id.clone())),
                                cells: vec![
                                    Cell::Text(r.record_id),
                                    party(registry, &r.provider),
                                    party(registry, &r.beneficiary),
                                    Cell::Text(r.sku),
                                    Cell::Text(period_text(r.period)),
                                    Cell::Text(ns_time(r.start_ns)),
                                    Cell::Text(r.quantity),
                                    Cell::Money(Fen(r.amount_fen)),
                                    Cell::Text(void_text),
                                ],
                            }
                        })
                        .collect::<Vec<_>>(),
                    total,
                    ends,
                ))
            })
            .await?;
            let more = total > store_lists::RECORDS_COUNTED_MAX;
            Ok(Fetched {
                rows,
                total: total.min(store_lists::RECORDS_COUNTED_MAX),
                more,
                ends,
            })
        }
        _ => {
            let f = store_lists::AuditFilter {
                actor: query.owned("actor"),
                action: query.owned("action"),
                from: query.get("from").map(time_bound),
                to: query.get("to").map(|d| time_bound(&next_day(d))),
            };
            let (rows, total) = read(console, move |tx, _| {
                let total = if count {
                    store_lists::audit_count(tx, &f)?
                } else {
                    0
                };
                let rows = store_lists::audit(tx, &f, desc, window)?;
                Ok((
                    rows.into_iter()
                        .map(|r| Row {
                            id: r.seq.to_string(),
                            cells: vec![
                                Cell::Int(r.seq),
                                Cell::Time(r.at),
                                Cell::Text(r.actor),
                                Cell::Named {
                                    name: action_name(lang, &r.action),
                                    id: r.action,
                                },
                                Cell::Text(r.subject),
                                Cell::Text(r.hash),
                            ],
                            void: None,
                        })
                        .collect::<Vec<_>>(),
                    total,
                ))
            })
            .await?;
            Ok(Fetched {
                rows,
                total,
                more: false,
                ends: None,
            })
        }
    }
}

fn is_registry_list(spec: &Spec) -> bool {
    matches!(spec.name, "enterprises" | "providers")
}

/// One page of `spec`'s list for `query`.
async fn fetch(
    console: &Console,
    spec: &'static Spec,
    query: &Query,
    asking: &Asking,
) -> Result<Fetched, ConsoleError> {
    let window = Window {
        // A page found from a row starts there.
        offset: if query.cursor.is_some() {
            0
        } else {
            (query.page - 1).saturating_mul(query.per)
        },
        limit: query.per,
    };
    if is_registry_list(spec) {
        let (rows, total) = registry_rows(console, spec, query, asking.lang, Some(window)).await?;
        return Ok(Fetched {
            rows,
            total,
            more: false,
            ends: None,
        });
    }
    sql_page(
        console,
        spec,
        query,
        asking,
        window,
        true,
        query.cursor.clone(),
    )
    .await
}

// ---- The page --------------------------------------------------------------------------------

/// The programme picker's choices: the registry's programmes by name, id beside, and `chosen`
/// where the registry no longer holds it.
pub(super) fn programme_options(
    registry: Option<&Registry>,
    chosen: &str,
) -> Vec<(String, String)> {
    let options = registry
        .map(|r| {
            r.programmes
                .iter()
                .map(|p| {
                    let label = if p.name.is_empty() || p.name == p.id {
                        p.id.clone()
                    } else {
                        format!("{} ({})", p.name, p.id)
                    };
                    (p.id.clone(), label)
                })
                .collect()
        })
        .unwrap_or_default();
    with_chosen(options, chosen)
}

/// A picker's `options` (value, label), with `chosen` after them as itself where it is none of
/// them: a value a URL gives still shows as picked.
fn with_chosen(mut options: Vec<(String, String)>, chosen: &str) -> Vec<(String, String)> {
    if !chosen.is_empty() && !options.iter().any(|(value, _)| value == chosen) {
        options.push((chosen.to_owned(), chosen.to_owned()));
    }
    options
}

/// The action picker's choices: each action by its name in `lang`, and `chosen` where it is
/// none of them.
fn action_options(lang: Lang, chosen: &str) -> Vec<(String, String)> {
    let options = AUDIT_ACTIONS
        .iter()
        .map(|a| ((*a).to_owned(), action_name(lang, a)))
        .collect();
    with_chosen(options, chosen)
}

/// An audit log action's name in `lang`; the action itself where the table has none.
fn action_name(lang: Lang, action: &str) -> String {
    lookup(lang, &format!("audit_action.{action}")).map_or_else(|| action.to_owned(), str::to_owned)
}

/// A filter as the form shows it.
struct FilterView {
    name: &'static str,
    label: &'static str,
    /// `text`, `month`, `date`, `number` or `select`.
    input: &'static str,
    value: String,
    /// A select's choices: (value, label).
    options: Vec<(String, String)>,
}

/// A cell as the table shows it.
struct CellView {
    text: String,
    /// The id after a name.
    sub: String,
    href: Option<String>,
    num: bool,
}

struct RowView {
    id: String,
    cells: Vec<CellView>,
    void: Option<(String, String)>,
}

/// The chain's state, shown above the audit log.
struct ChainView {
    intact: bool,
    entries: usize,
    head_hash: String,
    /// Why it is not intact.
    broken: String,
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage<'a> {
    ctx: &'a Ctx,
    title: &'static str,
    name: &'static str,
    filters: Vec<FilterView>,
    sorts: Vec<(&'static str, &'static str)>,
    sort: &'static str,
    desc: bool,
    per: u64,
    headers: Vec<&'static str>,
    rows: Vec<RowView>,
    total: u64,
    more: bool,
    page: u64,
    pages: u64,
    prev: Option<String>,
    next: Option<String>,
    first: String,
    last: Option<String>,
    csv: String,
    xlsx: String,
    error: Option<FieldError>,
    chain: Option<ChainView>,
    /// A void column: the provider may void its records from the list.
    voids: bool,
    /// The other lists this role reads.
    lists: Vec<(&'static str, &'static str, bool)>,
}

view!(ListPage);

impl ListPage<'_> {
    fn error_at(&self, field: &str) -> Option<&FieldError> {
        self.error.as_ref().filter(|e| e.field == field)
    }

    /// A refusal naming no filter of the form (page, per, sort, export, an unknown field).
    fn error_elsewhere(&self) -> Option<&FieldError> {
        self.error
            .as_ref()
            .filter(|e| !self.filters.iter().any(|f| f.name == e.field))
    }

    /// The page sizes offered, the current one marked.
    fn per_options(&self) -> Vec<(u64, bool)> {
        let mut sizes = vec![20, 50, 100, 200];
        if !sizes.contains(&self.per) {
            sizes.push(self.per);
            sizes.sort_unstable();
        }
        sizes.into_iter().map(|n| (n, n == self.per)).collect()
    }

    fn count_text(&self) -> String {
        let n = format_count(self.total);
        if self.more {
            t(self.ctx.lang, "list.more_than").replace("{n}", &n)
        } else {
            t(self.ctx.lang, "list.count").replace("{n}", &n)
        }
    }

    fn page_text(&self) -> String {
        let text = if self.more {
            t(self.ctx.lang, "list.page_of_more")
        } else {
            t(self.ctx.lang, "list.page_of")
        };
        text.replace("{page}", &self.page.to_string())
            .replace("{pages}", &self.pages.to_string())
    }
}

pub(super) fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cell_view(c: &Cell) -> CellView {
    let plain = |text: String| CellView {
        text,
        sub: String::new(),
        href: None,
        num: false,
    };
    match c {
        Cell::Text(s) => plain(s.clone()),
        Cell::Named { name, id } if name.is_empty() || name == id => plain(id.clone()),
        Cell::Named { name, id } => CellView {
            text: name.clone(),
            sub: id.clone(),
            href: None,
            num: false,
        },
        Cell::Link { text, href } => CellView {
            text: text.clone(),
            sub: String::new(),
            href: Some(href.clone()),
            num: false,
        },
        Cell::Money(f) => CellView {
            num: true,
            ..plain(cny(*f))
        },
        Cell::Int(i) => CellView {
            num: true,
            ..plain(i.to_string())
        },
        Cell::Time(s) => plain(shanghai_time(s)),
    }
}

/// The lists a role reads, for the links above each.
fn lists_of(p: &Principal) -> Vec<(&'static str, &'static str)> {
    match p {
        Principal::Provider(_) | Principal::Beneficiary(_) => vec![("/records", "list.records")],
        _ => vec![
            ("/finance/enterprises", "list.enterprises"),
            ("/finance/providers", "list.providers"),
            ("/finance/runs", "list.runs"),
            ("/finance/payments", "list.payments"),
            ("/records", "list.records"),
            ("/audit/log", "list.audit"),
        ],
    }
}

fn path_of(spec: &Spec) -> &'static str {
    match spec.name {
        "enterprises" => "/finance/enterprises",
        "providers" => "/finance/providers",
        "runs" => "/finance/runs",
        "payments" => "/finance/payments",
        "records" => "/records",
        _ => "/audit/log",
    }
}

/// The audit chain verified as `suanli audit verify` verifies it first: every entry's hash,
/// every link to the entry before, no gap in the seqs. (Checking posted money against its
/// sealed digests, the command's second step, re-reads every posted run's lines: too much for
/// a page that is opened often; the command does it.)
async fn chain(console: &Console) -> Result<ChainView, ConsoleError> {
    read(console, |tx, _| {
        let entries = suanli_store::audit::entries(tx)?;
        Ok(match suanli_domain::audit::verify(&entries) {
            Err(broken) => ChainView {
                intact: false,
                entries: entries.len(),
                head_hash: entries.last().map(|e| e.hash.clone()).unwrap_or_default(),
                broken: broken.to_string(),
            },
            Ok(v) => ChainView {
                intact: true,
                entries: v.entries,
                head_hash: v.head_hash,
                broken: String::new(),
            },
        })
    })
    .await
}

/// Serves a list's GET: the page, or its export.
pub async fn route(
    console: &Arc<Console>,
    ctx: &Ctx,
    segments: &[&str],
    form: &Form,
) -> Result<Response, ConsoleError> {
    let spec = spec_of(segments).ok_or_else(|| ConsoleError::NotFound("no list".into()))?;
    let p = super::signed_in(ctx)?.clone();
    let parsed = parse(spec, form);
    // Access first, on what the query asks for (a refused query is checked with no filters).
    let held = match &parsed {
        Ok(q) => access(&p, spec, q)?,
        Err(_) => access(
            &p,
            spec,
            &parse(spec, &Form::default()).expect("no filters"),
        )?,
    };
    let asking = Asking {
        lang: ctx.lang,
        principal: p.clone(),
        held: held.clone(),
    };
    let (query, error) = match parsed {
        Ok(q) => (q, None),
        Err(e) => (parse(spec, &Form::default()).expect("no filters"), Some(e)),
    };
    if error.is_none()
        && let Some(format) = query.export
    {
        return export(console, ctx, spec, query, asking, format).await;
    }
    let (fetched, error) = match error {
        Some(e) => (
            Fetched {
                rows: Vec::new(),
                total: 0,
                more: false,
                ends: None,
            },
            Some(e),
        ),
        None => {
            let fetched = fetch(console, spec, &query, &asking).await?;
            let pages = fetched.total.div_ceil(query.per).max(1);
            // Beyond a count that stopped early, or from a row, a page is past the end only when
            // empty.
            let beyond = if query.cursor.is_some() {
                fetched.rows.is_empty()
            } else if fetched.more {
                fetched.rows.is_empty() && query.page > 1
            } else {
                query.page > pages
            };
            if beyond {
                (
                    Fetched {
                        rows: Vec::new(),
                        total: fetched.total,
                        more: fetched.more,
                        ends: None,
                    },
                    Some(bad(
                        "page",
                        Code::PageBeyondEnd,
                        format!("page {} is past the last page", query.page),
                    )),
                )
            } else {
                (fetched, None)
            }
        }
    };
    let chain = if spec.name == "audit" && error.is_none() {
        Some(chain(console).await?)
    } else {
        None
    };
    let pages = fetched.total.div_ceil(query.per).max(1);
    let shown_value = |name: &str| {
        // A refused value is shown as typed, next to its error.
        form.optional(name).unwrap_or("").to_owned()
    };
    let registry = if spec
        .filters
        .iter()
        .any(|f| matches!(f.kind, Kind::Programme))
    {
        console.balances(|r| r.registry()).await?.ok()
    } else {
        None
    };
    let filters = spec
        .filters
        .iter()
        .filter(|f| {
            // A provider's or an enterprise's own party is not a filter it can change.
            held.as_ref().is_none_or(|(field, _)| field != f.name)
        })
        .map(|f| FilterView {
            name: f.name,
            label: f.label,
            input: match f.kind {
                Kind::Text => "text",
                Kind::Choice(_) | Kind::Programme | Kind::Action => "select",
                Kind::Month => "month",
                Kind::Day => "date",
                Kind::Year => "number",
            },
            value: shown_value(f.name),
            options: match f.kind {
                Kind::Choice(choices) => choices
                    .iter()
                    .map(|c| {
                        (
                            (*c).to_owned(),
                            t(ctx.lang, &format!("list.choice.{c}")).to_owned(),
                        )
                    })
                    .collect(),
                Kind::Programme => programme_options(registry.as_deref(), &shown_value(f.name)),
                Kind::Action => action_options(ctx.lang, &shown_value(f.name)),
                _ => Vec::new(),
            },
        })
        .collect();
    let status = if let Some(e) = &error {
        if e.code == Code::PageBeyondEnd {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        }
    } else {
        StatusCode::OK
    };
    let voids = fetched.rows.iter().any(|r| r.void.is_some());
    let mut headers: Vec<&'static str> = columns(spec).iter().map(|c| c.key).collect();
    if voids {
        headers.push("list.void_action");
    }
    let path = path_of(spec);
    let body = super::view::Markup::render(&ListPage {
        ctx,
        title: t(ctx.lang, spec.title),
        name: spec.name,
        filters,
        sorts: spec
            .sorts
            .iter()
            .map(|s| (*s, t(ctx.lang, &format!("list.sort.{s}"))))
            .collect(),
        sort: query.sort,
        desc: query.desc,
        per: query.per,
        headers,
        rows: fetched
            .rows
            .iter()
            .map(|r| RowView {
                id: r.id.clone(),
                cells: r.cells.iter().map(cell_view).collect(),
                void: r.void.clone(),
            })
            .collect(),
        total: fetched.total,
        more: fetched.more,
        page: if fetched.more {
            query.page
        } else {
            query.page.min(pages)
        },
        pages,
        // Usage records page from the rows shown (the next page after the last, the previous
        // before the first), so a page costs its own rows however deep it is.
        prev: (query.page > 1 && (fetched.more || query.page <= pages)).then(|| {
            match &fetched.ends {
                Some((first, _)) if query.page > 2 => {
                    query.href_at(spec, query.page - 1, &Cursor::Before(first.clone()))
                }
                _ => query.href(spec, query.page - 1),
            }
        }),
        next: (if fetched.more {
            fetched.rows.len() as u64 == query.per
        } else {
            query.page < pages
        })
        .then(|| match &fetched.ends {
            Some((_, last)) => query.href_at(spec, query.page + 1, &Cursor::After(last.clone())),
            None => query.href(spec, query.page + 1),
        }),
        first: query.href(spec, 1),
        last: (!fetched.more && pages > 1).then(|| query.href(spec, pages)),
        csv: query.export_href(spec, "csv"),
        xlsx: query.export_href(spec, "xlsx"),
        error,
        chain,
        voids,
        lists: lists_of(&p)
            .into_iter()
            .map(|(href, key)| (href, t(ctx.lang, key), href == path))
            .collect(),
    })
    .into_string();
    Ok(html(ctx, status, body))
}

// ---- Exports ---------------------------------------------------------------------------------

/// A cell as CSV text: a cell that a spreadsheet would read as a formula starts with `'`.
fn csv_safe(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// Exact yuan from fen, for a spreadsheet's number: the decimal is exact, and only its final
/// conversion to the spreadsheet's double rounds (to the nearest double of the exact amount).
/// `None` if it had no double (never for 64-bit fen): the caller writes the exact text then,
/// never a made-up number.
fn yuan(f: Fen) -> Option<f64> {
    Decimal::new(f.0, 2).to_f64()
}

/// Amounts as plain decimals in CSV (`1234.50`), exact.
fn yuan_text(f: Fen) -> String {
    Decimal::new(f.0, 2).to_string()
}

/// The export's header row in the page's language: a named column is two (name, id).
fn export_header(spec: &Spec, lang: Lang) -> Vec<String> {
    let mut out = Vec::new();
    for c in columns(spec) {
        out.push(t(lang, c.key).to_owned());
        if c.named {
            out.push(format!("{} {}", t(lang, c.key), t(lang, "list.id")));
        }
    }
    out
}

/// One exported cell: text, or an amount (yuan, two decimals), or a whole number.
enum Out {
    Text(String),
    Money(Fen),
    Int(i64),
}

fn export_cells(row: &Row) -> Vec<Out> {
    let mut out = Vec::new();
    for c in &row.cells {
        match c {
            Cell::Text(s) => out.push(Out::Text(s.clone())),
            Cell::Named { name, id } => {
                out.push(Out::Text(name.clone()));
                out.push(Out::Text(id.clone()));
            }
            Cell::Link { text, .. } => out.push(Out::Text(text.clone())),
            Cell::Money(f) => out.push(Out::Money(*f)),
            Cell::Int(i) => out.push(Out::Int(*i)),
            Cell::Time(s) => out.push(Out::Text(shanghai_time(s))),
        }
    }
    out
}

/// The whole filtered list, a chunk at a time: usage records continue after the last key
/// read, the other SQL lists by offset (they are small), the registry's lists from memory.
struct Chunks<'a> {
    console: &'a Console,
    spec: &'static Spec,
    query: &'a Query,
    asking: &'a Asking,
    offset: u64,
    after: Option<Key>,
    /// The registry's rows, read at the first chunk.
    held: Option<std::vec::IntoIter<Row>>,
    done: bool,
}

impl<'a> Chunks<'a> {
    fn new(
        console: &'a Console,
        spec: &'static Spec,
        query: &'a Query,
        asking: &'a Asking,
    ) -> Self {
        Chunks {
            console,
            spec,
            query,
            asking,
            offset: 0,
            after: None,
            held: None,
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<Row>>, ConsoleError> {
        if self.done {
            return Ok(None);
        }
        let chunk = EXPORT_CHUNK as usize;
        if is_registry_list(self.spec) {
            if self.held.is_none() {
                let (all, _) =
                    registry_rows(self.console, self.spec, self.query, self.asking.lang, None)
                        .await?;
                self.held = Some(all.into_iter());
            }
            let rows: Vec<Row> = self
                .held
                .as_mut()
                .map_or_else(Vec::new, |it| it.by_ref().take(chunk).collect());
            self.done = rows.len() < chunk;
            return Ok((!rows.is_empty()).then_some(rows));
        }
        let window = Window {
            offset: if self.spec.name == "records" {
                0
            } else {
                self.offset
            },
            limit: EXPORT_CHUNK,
        };
        let fetched = sql_page(
            self.console,
            self.spec,
            self.query,
            self.asking,
            window,
            false,
            self.after.take().map(Cursor::After),
        )
        .await?;
        let n = fetched.rows.len();
        self.offset += n as u64;
        self.after = fetched.ends.map(|(_, last)| last);
        self.done = n < chunk;
        Ok((n > 0).then_some(fetched.rows))
    }
}

fn attachment(mut r: Response, file: &str, content_type: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    security_headers(h);
    r
}

async fn export(
    console: &Arc<Console>,
    ctx: &Ctx,
    spec: &'static Spec,
    query: Query,
    asking: Asking,
    format: Export,
) -> Result<Response, ConsoleError> {
    let lang = ctx.lang;
    let header = export_header(spec, lang);
    match format {
        Export::Csv => {
            // Streamed: each chunk is written and sent as it is read.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
            let console = console.clone();
            let mut first = Vec::from("\u{feff}".as_bytes());
            first.extend(csv_line(&header));
            tokio::spawn(async move {
                if tx.send(Ok(Bytes::from(first))).await.is_err() {
                    return;
                }
                let mut chunks = Chunks::new(&console, spec, &query, &asking);
                loop {
                    match chunks.next().await {
                        Ok(Some(rows)) => {
                            let mut bytes = Vec::new();
                            for row in &rows {
                                let cells: Vec<String> = export_cells(row)
                                    .into_iter()
                                    .map(|c| match c {
                                        Out::Text(s) => csv_safe(&s),
                                        Out::Money(f) => yuan_text(f),
                                        Out::Int(i) => i.to_string(),
                                    })
                                    .collect();
                                bytes.extend(csv_line(&cells));
                            }
                            // Waits while the client reads: memory stays a few chunks.
                            if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            tracing::error!(error = ?e, "console export failed");
                            let _ = tx
                                .send(Err(std::io::Error::other("the export could not be read")))
                                .await;
                            return;
                        }
                    }
                }
            });
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            Ok(attachment(
                Response::new(Body::from_stream(stream)),
                &format!("{}.csv", spec.name),
                "text/csv; charset=utf-8",
            ))
        }
        Export::Xlsx => {
            if spec.name == "records" {
                let f = record_filter(&query, &asking.held);
                let n = read(console, move |tx, _| store_lists::records_count(tx, &f)).await?;
                if n > XLSX_ROWS_MAX {
                    return Err(ConsoleError::field(
                        "export",
                        Code::ExportTooLarge,
                        format!(
                            "more than {XLSX_ROWS_MAX} records: narrow the filters, or export CSV"
                        ),
                    ));
                }
            }
            let mut book = rust_xlsxwriter::Workbook::new();
            let money = rust_xlsxwriter::Format::new().set_num_format("0.00");
            let bold = rust_xlsxwriter::Format::new().set_bold();
            let sheet = book
                .add_worksheet_with_constant_memory()
                .map_err(|e| ConsoleError::Unavailable(format!("xlsx: {e}")))?;
            let _ = sheet.set_name(t(lang, spec.title));
            let mut failed: Option<String> = None;
            for (c, h) in header.iter().enumerate() {
                if let Err(e) = sheet.write_string_with_format(0, c as u16, h, &bold) {
                    failed.get_or_insert(e.to_string());
                }
            }
            let mut r: u32 = 1;
            let mut chunks = Chunks::new(console, spec, &query, &asking);
            while failed.is_none()
                && let Some(rows) = chunks.next().await?
            {
                for row in &rows {
                    for (c, cell) in export_cells(row).into_iter().enumerate() {
                        let c = u16::try_from(c).unwrap_or(u16::MAX);
                        let written = match cell {
                            Out::Text(s) => sheet.write_string(r, c, s).map(|_| ()),
                            Out::Money(f) => match yuan(f) {
                                Some(y) => sheet.write_number_with_format(r, c, y, &money),
                                None => sheet.write_string(r, c, Decimal::new(f.0, 2).to_string()),
                            }
                            .map(|_| ()),
                            Out::Int(i) => sheet.write_number(r, c, i as f64).map(|_| ()),
                        };
                        if let Err(e) = written {
                            failed.get_or_insert(e.to_string());
                        }
                    }
                    r += 1;
                }
            }
            if let Some(e) = failed {
                return Err(ConsoleError::Unavailable(format!("xlsx: {e}")));
            }
            let bytes = book
                .save_to_buffer()
                .map_err(|e| ConsoleError::Unavailable(format!("xlsx: {e}")))?;
            Ok(attachment(
                Response::new(Body::from(bytes)),
                &format!("{}.xlsx", spec.name),
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ))
        }
    }
}

/// One CSV line (RFC 4180 quoting).
fn csv_line(cells: &[String]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let _ = w.write_record(cells);
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(q: &str) -> Form {
        Form::parse(q.as_bytes()).unwrap()
    }

    // Each bad parameter is refused naming its field and a stable code.
    #[test]
    fn bad_parameters_name_their_field() {
        let cases = [
            ("page=0", "page", Code::PageNotANumber),
            ("page=x", "page", Code::PageNotANumber),
            ("per=201", "per", Code::PerOutOfRange),
            ("per=0", "per", Code::PerOutOfRange),
            ("sort=amount", "sort", Code::NotAChoice),
            ("dir=up", "dir", Code::NotAChoice),
            ("state=lost", "state", Code::NotAChoice),
            ("period=2025-13", "period", Code::PeriodNotAMonth),
            ("export=pdf", "export", Code::NotAChoice),
            ("colour=red", "colour", Code::UnknownParameter),
        ];
        for (q, field, code) in cases {
            let e = parse(&RUNS, &form(q))
                .err()
                .unwrap_or_else(|| panic!("{q} accepted"));
            assert_eq!((e.field.as_str(), e.code), (field, code), "{q}");
        }
        let e = parse(&AUDIT_LOG, &form("from=2025-04-02&to=2025-04-01"))
            .err()
            .unwrap();
        assert_eq!((e.field.as_str(), e.code), ("to", Code::RangeReversed));
        let e = parse(&AUDIT_LOG, &form("from=2025-4-2")).err().unwrap();
        assert_eq!((e.field.as_str(), e.code), ("from", Code::DayNotADate));
        let q = parse(
            &RUNS,
            &form("state=posted&period=2025-03&page=2&per=10&lang=en"),
        )
        .unwrap();
        assert_eq!(q.get("state"), Some("posted"));
        assert_eq!((q.page, q.per, q.sort, q.desc), (2, 10, "id", true));
        // Page links keep the filters and the size.
        assert_eq!(
            q.href(&RUNS, 3),
            "?period=2025-03&state=posted&per=10&page=3"
        );
        assert_eq!(
            q.export_href(&RUNS, "csv"),
            "?period=2025-03&state=posted&per=10&export=csv"
        );
    }

    #[test]
    fn exports_are_safe_and_exact() {
        assert_eq!(csv_safe("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_safe("+1"), "'+1");
        assert_eq!(csv_safe("-1"), "'-1");
        assert_eq!(csv_safe("@x"), "'@x");
        assert_eq!(csv_safe("杭宇"), "杭宇");
        assert_eq!(yuan_text(Fen(123_456_789)), "1234567.89");
        assert_eq!(yuan_text(Fen(-5)), "-0.05");
        assert_eq!(yuan(Fen(123_456_789)), Some(1_234_567.89));
        assert_eq!(yuan(Fen(10)), Some(0.1));
        assert_eq!(format_count(1_234_567), "1,234,567");
        assert_eq!(time_bound("2025-04-01"), "2025-03-31T16:00:00.000Z");
        assert_eq!(next_day("2025-12-31"), "2026-01-01");
    }
}
