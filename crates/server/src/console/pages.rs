//! The console's pages: the layout, sign-in, and the enterprise, provider, finance and auditor
//! views. Each page reads through the settlement use cases (`settle.rs`) on the writer thread;
//! actions call the same use cases as the gRPC services.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use suanli_domain::money::Fen;
use suanli_store::Principal;
use suanli_store::ingest_stats;
use suanli_store::ledger::{RunLineRow, RunRow};

use super::charts::{Column, Segment, Unit, columns, legend, progress};
use super::format::{cny, esc, shanghai, shanghai_day, shanghai_time, url_encode};
use super::i18n::{Lang, t};
use super::{
    Console, ConsoleError, Ctx, FINANCE, FieldError, Form, READERS, require, settle_error,
};
use suanli_app::balances::{Balance, ProgrammeOverview};
use suanli_app::settlement::{self as settle};

/// Most journals listed on one audit page (newest first); filters narrow the rest.
pub const JOURNALS_SHOWN_MAX: usize = 500;
/// Days of ingest statistics shown to a provider.
pub const INGEST_DAYS_SHOWN: i64 = 14;

pub(super) fn tr(ctx: &Ctx, key: &str) -> &'static str {
    t(ctx.lang, key)
}

/// The page frame: header with the role's navigation, language switch and sign-out.
pub(super) fn layout(ctx: &Ctx, title: &str, main: &str) -> String {
    let lang = ctx.lang;
    let mut nav = String::new();
    if let Some(p) = &ctx.principal {
        let links: &[(&str, &str)] = match p {
            Principal::Beneficiary(_) => &[("/enterprise", "nav.enterprise")],
            Principal::Provider(_) => &[("/provider", "nav.provider")],
            Principal::Finance | Principal::Auditor | Principal::Admin => &[
                ("/finance", "nav.finance"),
                ("/audit", "nav.audit"),
                ("/enterprise", "nav.enterprise"),
                ("/provider", "nav.provider"),
            ],
        };
        nav.push_str("<nav>");
        for (href, key) in links {
            let current = if ctx.path.starts_with(href) {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(nav, "<a href=\"{href}\"{current}>{}</a>", t(lang, key));
        }
        nav.push_str("</nav>");
    }
    // People are named: the user's name and login first, the role after it.
    let person = ctx
        .actor
        .as_ref()
        .filter(|a| a.user.is_some())
        .map_or(String::new(), |a| format!("{} · ", esc(&a.actor)));
    let who = match &ctx.principal {
        Some(p) => format!(
            "<a class=\"who\" href=\"/account\">{person}{} {}</a><form method=\"post\" action=\"/signout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"link\">{}</button></form>",
            esc(t(lang, &format!("role.{}", p.role()))),
            esc(p.subject()),
            esc(&ctx.csrf),
            t(lang, "signout")
        ),
        None => String::new(),
    };
    // The switch keeps the page's own query (a chosen beneficiary, journal filters).
    let keep = if ctx.query_without_lang.is_empty() {
        String::new()
    } else {
        format!("{}&", esc(&ctx.query_without_lang))
    };
    let other = match lang {
        Lang::Zh => format!("<a href=\"?{keep}lang=en\" lang=\"en\">English</a>"),
        Lang::En => format!("<a href=\"?{keep}lang=zh\" lang=\"zh-CN\">中文</a>"),
    };
    format!(
        "<!doctype html><html lang=\"{html_lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · {app}</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><header><a class=\"brand\" href=\"/\">{app}</a>{nav}<div class=\"tools\">{who}{other}</div></header><main>{main}</main><footer>{footer}</footer></body></html>",
        html_lang = lang.html(),
        title = esc(title),
        app = t(lang, "app"),
        footer = t(lang, "footer"),
    )
}

pub fn error_page(ctx: &Ctx, status: StatusCode, field: &str, message: &str) -> String {
    let title = match status {
        StatusCode::FORBIDDEN => tr(ctx, "error.forbidden"),
        StatusCode::NOT_FOUND => tr(ctx, "error.not_found"),
        StatusCode::UNAUTHORIZED => tr(ctx, "error.signin"),
        StatusCode::CONFLICT => tr(ctx, "error.conflict"),
        StatusCode::SERVICE_UNAVAILABLE => tr(ctx, "error.unavailable"),
        _ => tr(ctx, "error.invalid"),
    };
    let main = format!(
        "<section class=\"card\"><h1>{title} <small>HTTP {code}</small></h1><p class=\"error\" id=\"error\" data-field=\"{f}\"><b>{f}</b>: {m}</p><p><a href=\"/\">{home}</a></p></section>",
        code = status.as_u16(),
        f = esc(field),
        m = esc(message),
        home = tr(ctx, "error.home"),
    );
    layout(ctx, title, &main)
}

/// The sign-in page: single sign-on first when configured, login and password for people, and
/// below it an API token for service accounts and scripts. `refused` is the field at fault and
/// the message; `login` is kept.
pub fn signin_page(ctx: &Ctx, refused: Option<(&str, &str)>, login: &str) -> String {
    let error = refused.map_or(String::new(), |(field, message)| {
        format!(
            "<p class=\"error\" id=\"error\" data-field=\"{f}\"><b>{f}</b>: {m}</p>",
            f = esc(field),
            m = esc(message)
        )
    });
    let sso = if ctx.sso {
        format!(
            "<p><a class=\"button\" id=\"sso-signin\" href=\"/signin/sso\">{}</a></p><p><small>{}</small></p>",
            tr(ctx, "signin.sso"),
            tr(ctx, "signin.sso_or_password"),
        )
    } else {
        String::new()
    };
    let main = format!(
        "<section class=\"card narrow\"><h1>{h}</h1>{error}{sso}<p>{intro}</p>\
<form method=\"post\" action=\"/signin\" id=\"password-signin\">\
<label for=\"login\">{login_label}</label><input id=\"login\" name=\"login\" autocomplete=\"username\" required maxlength=\"64\" value=\"{login}\">\
<label for=\"password\">{password_label}</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"128\">\
<label for=\"code\">{code_label} <small>{code_hint}</small></label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"6\">\
<button type=\"submit\">{submit}</button></form>\
<details><summary>{token_intro}</summary>\
<form method=\"post\" action=\"/signin\" id=\"token-signin\"><label for=\"token\">{label}</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required maxlength=\"200\" placeholder=\"sl_…\"><button type=\"submit\">{submit}</button></form></details></section>",
        h = tr(ctx, "signin.title"),
        intro = tr(ctx, "signin.intro"),
        login_label = tr(ctx, "signin.login"),
        password_label = tr(ctx, "signin.password"),
        code_label = tr(ctx, "signin.code"),
        code_hint = tr(ctx, "signin.code_hint"),
        token_intro = tr(ctx, "signin.token_intro"),
        label = tr(ctx, "signin.token"),
        submit = tr(ctx, "signin.submit"),
        login = esc(login),
    );
    layout(ctx, tr(ctx, "signin.title"), &main)
}

/// The answer to a single sign-on that succeeded: a page that moves on to the start page by
/// itself (a `refresh`, which needs no script), with a link for a browser that does not.
pub fn sso_done_page(ctx: &Ctx) -> String {
    format!(
        "<!doctype html><html lang=\"{html_lang}\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=/\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><main><section class=\"card narrow\"><p id=\"sso-done\">{done} <a href=\"/\">{next}</a></p></section></main></body></html>",
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
            .ok_or_else(|| ConsoleError::field("year", format!("{y:?} is not a year"))),
    }
}

/// The years of the registry's programmes (newest first) and the one chosen.
async fn years(console: &Console, query: &Form) -> Result<(Vec<i32>, i32), ConsoleError> {
    let years = console
        .store(suanli_app::registry::registry_years)
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

fn year_picker(ctx: &Ctx, years: &[i32], year: i32, extra: &str) -> String {
    let mut html = format!("<div class=\"years\"><span>{}</span>", tr(ctx, "year"));
    for y in years {
        if *y == year {
            let _ = write!(html, "<b>{y}</b>");
        } else {
            let _ = write!(html, "<a href=\"?year={y}{extra}\">{y}</a>");
        }
    }
    html.push_str("</div>");
    html
}

fn money_cell(f: Fen) -> String {
    format!("<td class=\"num\">{}</td>", esc(&cny(f)))
}

fn picker(ctx: &Ctx, action: &str, name: &str, ids: &[String]) -> String {
    let mut html = format!(
        "<section class=\"card\"><h2>{}</h2><form method=\"get\" action=\"{action}\" class=\"row\"><select name=\"{name}\">",
        tr(ctx, &format!("pick.{name}"))
    );
    for id in ids {
        let _ = write!(html, "<option>{}</option>", esc(id));
    }
    let _ = write!(
        html,
        "</select><button type=\"submit\">{}</button></form></section>",
        tr(ctx, "pick.open")
    );
    html
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
            .store(suanli_app::registry::registry_parties)
            .await?
            .map_err(|e| settle_error(e, "registry"))?;
        let main = format!(
            "<h1>{}</h1>{}",
            tr(ctx, "enterprise.title"),
            picker(ctx, "/enterprise", "beneficiary", &ids)
        );
        return Ok(layout(ctx, tr(ctx, "enterprise.title"), &main));
    };
    let (years, year) = years(console, query).await?;
    let b = beneficiary.clone();
    let console2 = console.clone();
    let (balances, monthly) = console
        .store(move |s| {
            let mut cache = console2.pending.lock().expect("pending cache lock");
            let balances = suanli_app::balances::balance(s, &mut cache, &b, year)?;
            let monthly = suanli_app::balances::monthly_posted(s, &mut cache, &b, year)?;
            Ok::<_, settle::SettleError>((balances, monthly))
        })
        .await?
        .map_err(|e| settle_error(e, "beneficiary"))?;
    let extra = if matches!(ctx.principal(), Principal::Beneficiary(_)) {
        String::new()
    } else {
        format!("&beneficiary={}", url_encode(&beneficiary))
    };
    let mut main = format!(
        "<h1>{} <small>{}</small></h1>{}",
        tr(ctx, "enterprise.title"),
        esc(&beneficiary),
        year_picker(ctx, &years, year, &extra)
    );
    main.push_str("<div class=\"cards\">");
    if balances.is_empty() {
        let _ = write!(main, "<p>{}</p>", tr(ctx, "enterprise.no_grants"));
    }
    for b in &balances {
        main.push_str(&balance_card(ctx, b));
    }
    main.push_str("</div>");
    // Monthly chart: one segment per programme.
    let programmes: Vec<&String> = monthly.keys().collect();
    let cols: Vec<Column> = (0..12)
        .map(|m| Column {
            label: month_label(ctx, m),
            segments: programmes
                .iter()
                .enumerate()
                .map(|(i, p)| Segment {
                    value: monthly[*p][m].0,
                    class: PROGRAMME_CLASSES[i % PROGRAMME_CLASSES.len()],
                    label: (*p).clone(),
                })
                .collect(),
        })
        .collect();
    let legend_items: Vec<(&'static str, &str)> = programmes
        .iter()
        .enumerate()
        .map(|(i, p)| (PROGRAMME_CLASSES[i % PROGRAMME_CLASSES.len()], p.as_str()))
        .collect();
    let total: Fen = monthly.values().flat_map(|m| m.iter().copied()).sum();
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{}</h2><p class=\"total\">{} <b id=\"received-total\">{}</b></p>{}{}</section>",
        tr(ctx, "enterprise.monthly"),
        tr(ctx, "enterprise.received_total"),
        esc(&cny(total)),
        columns(tr(ctx, "enterprise.monthly"), Unit::Fen, &cols),
        legend(&legend_items)
    );
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{}</h2><p>{}</p><p><a class=\"button\" href=\"/enterprise/statement.csv?year={year}{extra}\" download>{}</a></p></section>",
        tr(ctx, "statement.title"),
        tr(ctx, "statement.enterprise_intro"),
        tr(ctx, "statement.download")
    );
    Ok(layout(ctx, tr(ctx, "enterprise.title"), &main))
}

fn balance_card(ctx: &Ctx, b: &Balance) -> String {
    // Without a cap there is nothing to fill: the figures say it all.
    let bar = match b.cap {
        Some(cap) => {
            progress(
                cap,
                &[
                    (b.paid, "paid", tr(ctx, "paid").to_owned()),
                    (b.pending, "pending", tr(ctx, "pending").to_owned()),
                ],
            ) + &legend(&[
                ("paid", tr(ctx, "paid")),
                ("pending", tr(ctx, "pending")),
                ("left", tr(ctx, "remaining")),
            ])
        }
        None => String::new(),
    };
    format!(
        "<section class=\"card balance\" data-programme=\"{p}\"><h2>{p} <small>{y}</small></h2><dl class=\"figures\"><div><dt>{l_cap}</dt><dd>{cap}</dd></div><div><dt>{l_paid}</dt><dd class=\"paid-text\">{paid}</dd></div><div><dt>{l_pending}</dt><dd>{pending}</dd></div><div><dt>{l_rem}</dt><dd class=\"remaining\">{rem}</dd></div></dl>{bar}</section>",
        p = esc(&b.programme),
        y = b.year,
        l_cap = tr(ctx, "cap"),
        cap = b
            .cap
            .map_or_else(|| tr(ctx, "no_cap").to_owned(), |c| esc(&cny(c))),
        l_paid = tr(ctx, "paid"),
        paid = esc(&cny(b.paid)),
        l_pending = tr(ctx, "pending"),
        pending = esc(&cny(b.pending)),
        l_rem = tr(ctx, "remaining"),
        rem = if b.cap.is_some() {
            esc(&cny(b.remaining))
        } else {
            "—".to_owned()
        },
    )
}

/// The provider view: records per day by outcome, rejects by reason with examples, payables
/// owed and paid, statements.
pub async fn provider(
    console: &Arc<Console>,
    ctx: &Ctx,
    provider: Option<String>,
) -> Result<String, ConsoleError> {
    let Some(provider) = provider else {
        let (_, ids) = console
            .store(suanli_app::registry::registry_parties)
            .await?
            .map_err(|e| settle_error(e, "registry"))?;
        let main = format!(
            "<h1>{}</h1>{}",
            tr(ctx, "provider.title"),
            picker(ctx, "/provider", "provider", &ids)
        );
        return Ok(layout(ctx, tr(ctx, "provider.title"), &main));
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
    let mut main = format!(
        "<h1>{} <small>{}</small></h1>",
        tr(ctx, "provider.title"),
        esc(&provider)
    );
    // Payables: one block of figures per programme (stacks on phones).
    let _ = write!(
        main,
        "<section class=\"card\" id=\"payables\"><h2>{}</h2>",
        tr(ctx, "provider.payables")
    );
    if positions.is_empty() {
        let _ = write!(main, "<p class=\"muted\">{}</p>", tr(ctx, "none"));
    }
    for pos in &positions {
        let _ = write!(
            main,
            "<h3>{}</h3><dl class=\"figures\"><div><dt>{}</dt><dd>{}</dd></div><div><dt>{}</dt><dd>{}</dd></div><div><dt>{}</dt><dd>{}</dd></div></dl>",
            esc(&pos.programme),
            tr(ctx, "posted"),
            esc(&cny(pos.posted)),
            tr(ctx, "paid"),
            esc(&cny(pos.paid)),
            tr(ctx, "outstanding"),
            esc(&cny(pos.outstanding)),
        );
    }
    main.push_str("</section>");
    // Records per day by outcome.
    const OUTCOMES: [&str; 4] = ["accepted", "duplicate", "conflict", "rejected"];
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
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{}</h2>{}{}<div class=\"scroll\"><table id=\"daily\"><thead><tr><th>{}</th>",
        tr(ctx, "provider.daily"),
        columns(tr(ctx, "provider.daily"), Unit::Records, &cols),
        legend(&OUTCOMES.map(|o| (o, tr(ctx, &format!("outcome.{o}"))))),
        tr(ctx, "day")
    );
    for o in OUTCOMES {
        let _ = write!(
            main,
            "<th class=\"num\">{}</th>",
            tr(ctx, &format!("outcome.{o}"))
        );
    }
    main.push_str("</tr></thead><tbody>");
    if by_day.is_empty() {
        let _ = write!(
            main,
            "<tr><td colspan=\"5\" class=\"muted\">{}</td></tr>",
            tr(ctx, "none")
        );
    }
    for (day, counts) in by_day.iter().rev() {
        let _ = write!(main, "<tr><td>{}</td>", esc(day));
        for n in counts {
            let _ = write!(main, "<td class=\"num\">{n}</td>");
        }
        main.push_str("</tr>");
    }
    main.push_str("</tbody></table></div></section>");
    // Rejects by reason, each with its examples (a list, so it reads on phones too).
    let _ = write!(
        main,
        "<section class=\"card\" id=\"rejects\"><h2>{}</h2>",
        tr(ctx, "provider.rejects")
    );
    if reasons.is_empty() {
        let _ = write!(main, "<p class=\"muted\">{}</p>", tr(ctx, "none"));
    }
    for r in &reasons {
        let _ = write!(
            main,
            "<div class=\"reason\"><div class=\"reason-head\"><code>{}</code> <span>{}</span> <b>{} {}</b> <small class=\"muted\">{} {}</small></div><ul class=\"examples\">",
            esc(&r.reason),
            esc(t(ctx.lang, &format!("reject.{}", r.reason))),
            r.records,
            tr(ctx, "records"),
            tr(ctx, "last_at"),
            esc(&shanghai_time(&r.last_at))
        );
        for (id, message) in &r.examples {
            let _ = write!(main, "<li><code>{}</code> {}</li>", esc(id), esc(message));
        }
        main.push_str("</ul></div>");
    }
    main.push_str("</section>");
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{}</h2><p>{}</p><p><a class=\"button\" href=\"/provider/statement.csv{extra}\" download>{}</a></p></section>",
        tr(ctx, "statement.title"),
        tr(ctx, "statement.provider_intro"),
        tr(ctx, "statement.download")
    );
    Ok(layout(ctx, tr(ctx, "provider.title"), &main))
}

fn status_badge(ctx: &Ctx, status: &str) -> String {
    format!(
        "<span class=\"status {s}\" data-status=\"{s}\">{}</span>",
        tr(ctx, &format!("status.{status}")),
        s = esc(status)
    )
}

/// The finance view: pools per programme, cap positions, runs, create and payment forms.
pub async fn finance(
    console: &Arc<Console>,
    ctx: &Ctx,
    query: &Form,
) -> Result<String, ConsoleError> {
    let (years, year) = years(console, query).await?;
    let console2 = console.clone();
    let (overview, runs) = console
        .store(move |s| {
            let mut cache = console2.pending.lock().expect("pending cache lock");
            let overview = suanli_app::balances::programme_overview(s, &mut cache, year)?;
            let mut runs = Vec::new();
            for r in settle::list_runs(s, None)? {
                let view = settle::show_run(s, r.run_id)?;
                let total: Fen = view.lines.iter().map(|l| Fen(l.amount_fen)).sum();
                runs.push((view.run, view.lines.len(), total));
            }
            Ok::<_, settle::SettleError>((overview, runs))
        })
        .await?
        .map_err(|e| settle_error(e, "year"))?;
    let is_finance = FINANCE.contains(&ctx.principal().role());
    let mut main = format!(
        "<h1>{}</h1>{}",
        tr(ctx, "finance.title"),
        year_picker(ctx, &years, year, "")
    );
    main.push_str("<div class=\"cards\">");
    for o in &overview {
        main.push_str(&pool_card(ctx, o));
    }
    main.push_str("</div>");
    // Runs.
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{}</h2><div class=\"scroll\"><table id=\"runs\"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        tr(ctx, "finance.runs"),
        tr(ctx, "programme"),
        tr(ctx, "period"),
        tr(ctx, "status"),
        tr(ctx, "lines"),
        tr(ctx, "amount"),
        tr(ctx, "created_by"),
        tr(ctx, "approved_by")
    );
    if runs.is_empty() {
        let _ = write!(
            main,
            "<tr><td colspan=\"8\" class=\"muted\">{}</td></tr>",
            tr(ctx, "none")
        );
    }
    for (run, lines, total) in runs.iter().rev() {
        let _ = write!(
            main,
            "<tr data-run=\"{id}\"><td><a href=\"/finance/runs/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{lines}</td>{}<td>{}</td><td>{}</td></tr>",
            esc(&run.programme),
            esc(&run.period),
            status_badge(ctx, &run.status),
            money_cell(*total),
            esc(&run.created_by),
            esc(run.approved_by.as_deref().unwrap_or("")),
            id = run.run_id
        );
    }
    main.push_str("</tbody></table></div></section>");
    if is_finance {
        let mut options = String::new();
        for o in &overview {
            let _ = write!(options, "<option>{}</option>", esc(&o.programme));
        }
        let _ = write!(
            main,
            "<div class=\"cards\"><section class=\"card\"><h2>{h}</h2><form method=\"post\" action=\"/finance/runs\" id=\"create-run\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label for=\"programme\">{l_prog}</label><select id=\"programme\" name=\"programme\">{options}</select><label for=\"period\">{l_period}</label><input id=\"period\" name=\"period\" required pattern=\"\\d{{4}}-\\d{{2}}\" placeholder=\"{year}-03\" maxlength=\"7\"><button type=\"submit\">{submit}</button></form><p class=\"muted\">{hint}</p></section>",
            h = tr(ctx, "finance.create"),
            csrf = esc(&ctx.csrf),
            l_prog = tr(ctx, "programme"),
            l_period = tr(ctx, "period_hint"),
            submit = tr(ctx, "finance.create_submit"),
            hint = tr(ctx, "finance.four_eyes"),
        );
        let _ = write!(
            main,
            "<section class=\"card\"><h2>{h}</h2><form method=\"post\" action=\"/finance/payments\" id=\"payment\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label for=\"payee\">{l_payee}</label><input id=\"payee\" name=\"payee\" required maxlength=\"200\"><label for=\"pay-programme\">{l_prog}</label><input id=\"pay-programme\" name=\"programme\" maxlength=\"200\" placeholder=\"{optional}\"><label for=\"amount\">{l_amount}</label><input id=\"amount\" name=\"amount\" required inputmode=\"decimal\" placeholder=\"1000.00\" maxlength=\"30\"><label for=\"reference\">{l_ref}</label><input id=\"reference\" name=\"reference\" required maxlength=\"200\" placeholder=\"BANK-0001\"><button type=\"submit\">{submit}</button></form></section></div>",
            h = tr(ctx, "finance.payment"),
            csrf = esc(&ctx.csrf),
            l_payee = tr(ctx, "payee"),
            l_prog = tr(ctx, "programme"),
            optional = tr(ctx, "optional"),
            l_amount = tr(ctx, "amount_cny"),
            l_ref = tr(ctx, "reference"),
            submit = tr(ctx, "finance.payment_submit"),
        );
    }
    Ok(layout(ctx, tr(ctx, "finance.title"), &main))
}

fn pool_card(ctx: &Ctx, o: &ProgrammeOverview) -> String {
    let bar = match o.pool {
        Some(pool) => {
            progress(
                pool,
                &[
                    (o.paid, "paid", tr(ctx, "paid").to_owned()),
                    (o.pending, "pending", tr(ctx, "pending").to_owned()),
                ],
            ) + &legend(&[
                ("paid", tr(ctx, "paid")),
                ("pending", tr(ctx, "pending")),
                ("left", tr(ctx, "left")),
            ])
        }
        None => String::new(),
    };
    let cols: Vec<Column> = (0..12)
        .map(|m| Column {
            label: month_label(ctx, m),
            segments: vec![Segment {
                value: o.monthly_paid[m].0,
                class: "paid",
                label: tr(ctx, "paid").to_owned(),
            }],
        })
        .collect();
    format!(
        "<section class=\"card pool\" data-programme=\"{p}\"><h2>{p} <small>{name}</small></h2><dl class=\"figures\"><div><dt>{l_pool}</dt><dd>{pool}</dd></div><div><dt>{l_paid}</dt><dd>{paid}</dd></div><div><dt>{l_pending}</dt><dd>{pending}</dd></div><div><dt>{l_left}</dt><dd>{left}</dd></div></dl>{bar}<p class=\"caps\">{l_caps}: <b class=\"near-cap\">{near}</b> {l_near} · <b class=\"at-cap\">{at}</b> {l_at} · {capped} {l_capped}</p><h3>{l_monthly}</h3>{chart}</section>",
        p = esc(&o.programme),
        name = esc(&o.name),
        l_pool = tr(ctx, "pool"),
        pool = o
            .pool
            .map_or_else(|| tr(ctx, "no_pool").to_owned(), |p| esc(&cny(p))),
        l_paid = tr(ctx, "paid"),
        paid = esc(&cny(o.paid)),
        l_pending = tr(ctx, "pending"),
        pending = esc(&cny(o.pending)),
        l_left = tr(ctx, "left"),
        left = if o.pool.is_some() {
            esc(&cny(o.left))
        } else {
            "—".to_owned()
        },
        l_caps = tr(ctx, "finance.caps"),
        near = o.near_cap,
        l_near = tr(ctx, "finance.near_cap"),
        at = o.at_cap,
        l_at = tr(ctx, "finance.at_cap"),
        capped = o.capped,
        l_capped = tr(ctx, "finance.capped"),
        l_monthly = tr(ctx, "finance.monthly_paid"),
        chart = columns(tr(ctx, "finance.monthly_paid"), Unit::Fen, &cols),
    )
}

fn lines_table(ctx: &Ctx, run: &RunRow, lines: &[RunLineRow]) -> String {
    let mut html = format!(
        "<div class=\"scroll\"><table id=\"lines\"><thead><tr><th>{}</th><th>{}</th><th class=\"num\">{}</th><th>{}</th><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        tr(ctx, "period"),
        tr(ctx, "beneficiary"),
        tr(ctx, "amount"),
        tr(ctx, "provider"),
        tr(ctx, "class"),
        tr(ctx, "base"),
        tr(ctx, "ratio"),
        tr(ctx, "entitlement"),
        tr(ctx, "posted_before"),
        tr(ctx, "cut_by"),
        tr(ctx, "payee"),
    );
    if lines.is_empty() {
        let _ = write!(
            html,
            "<tr><td colspan=\"11\" class=\"muted\">{}</td></tr>",
            tr(ctx, "none")
        );
    }
    for l in lines {
        let class = [
            l.key.category.as_str(),
            l.key.chip_origin.as_str(),
            if l.key.registered_model == "true" {
                "registered"
            } else {
                ""
            },
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" / ");
        let adjustment = if l.original_period != run.period {
            format!(" <small class=\"adj\">{}</small>", tr(ctx, "adjustment"))
        } else {
            String::new()
        };
        let _ = write!(
            html,
            "<tr><td>{}{adjustment}</td><td>{}</td>{}<td>{}</td><td>{}</td>{}<td class=\"num\">{}</td>{}{}<td>{}</td><td>{}</td></tr>",
            esc(&l.original_period),
            esc(&l.key.beneficiary),
            money_cell(Fen(l.amount_fen)),
            esc(&l.key.provider),
            esc(&class),
            money_cell(Fen(l.base_fen)),
            esc(&l.ratio),
            money_cell(Fen(l.entitlement_fen)),
            money_cell(Fen(l.posted_before_fen)),
            esc(&l.cut_by),
            esc(&l.payee),
        );
    }
    html.push_str("</tbody></table></div>");
    html
}

fn action_button(ctx: &Ctx, run_id: i64, action: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/finance/runs/{run_id}/{action}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" id=\"{action}\" class=\"{class}\">{}</button></form>",
        esc(&ctx.csrf),
        tr(ctx, &format!("action.{action}"))
    )
}

/// A run: its state, its (preview) lines, and the actions its state and the role allow.
pub async fn run_page(
    console: &Arc<Console>,
    ctx: &Ctx,
    run_id: i64,
    rederived: Option<Option<String>>,
) -> Result<String, ConsoleError> {
    let view = console
        .store(move |s| settle::show_run(s, run_id))
        .await?
        .map_err(|e| settle_error(e, "run"))?;
    let run = &view.run;
    let total: Fen = view.lines.iter().map(|l| Fen(l.amount_fen)).sum();
    let role = ctx.principal().role();
    let mut actions = String::new();
    if FINANCE.contains(&role) {
        match run.status.as_str() {
            "open" => {
                actions += &action_button(ctx, run_id, "approve", "");
                actions += &action_button(ctx, run_id, "cancel", "secondary");
            }
            "approved" => {
                actions += &action_button(ctx, run_id, "post", "");
                actions += &action_button(ctx, run_id, "cancel", "secondary");
            }
            _ => {}
        }
    }
    if READERS.contains(&role) && run.status == "posted" {
        actions += &format!(
            "<form method=\"post\" action=\"/audit/runs/{run_id}/rederive\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" id=\"rederive\" class=\"secondary\">{}</button></form>",
            esc(&ctx.csrf),
            tr(ctx, "action.rederive")
        );
    }
    let rederive_result = match rederived {
        None => String::new(),
        Some(None) => format!(
            "<p class=\"ok\" id=\"rederive-result\" data-matches=\"true\">{}</p>",
            tr(ctx, "rederive.match")
        ),
        Some(Some(diff)) => format!(
            "<p class=\"error\" id=\"rederive-result\" data-matches=\"false\">{}: <code>{}</code></p>",
            tr(ctx, "rederive.mismatch"),
            esc(&diff)
        ),
    };
    let note = if run.status == "open" {
        format!("<p class=\"muted\">{}</p>", tr(ctx, "finance.four_eyes"))
    } else {
        String::new()
    };
    let main = format!(
        "<p><a href=\"/finance\">← {back}</a></p><section class=\"card\"><h1>{l_run} {id} <small>{prog} {period}</small> {badge}</h1>{rederive_result}<dl class=\"figures\"><div><dt>{l_total}</dt><dd id=\"run-total\">{total}</dd></div><div><dt>{l_lines}</dt><dd>{n}</dd></div><div><dt>{l_created}</dt><dd class=\"person\">{created_by}<small>{created_at}</small></dd></div><div><dt>{l_approved}</dt><dd class=\"person\">{approved_by}<small>{approved_at}</small></dd></div><div><dt>{l_posted}</dt><dd class=\"person\">{posted_at}</dd></div><div><dt>{l_registry}</dt><dd>v{version} <small><code>{hash}</code></small></dd></div></dl>{note}<div class=\"actions\">{actions}</div></section><section class=\"card\"><h2>{l_preview}</h2>{lines}</section>",
        back = tr(ctx, "nav.finance"),
        l_run = tr(ctx, "run"),
        id = run.run_id,
        prog = esc(&run.programme),
        period = esc(&run.period),
        badge = status_badge(ctx, &run.status),
        l_total = tr(ctx, "amount"),
        total = esc(&cny(total)),
        l_lines = tr(ctx, "lines"),
        n = view.lines.len(),
        l_created = tr(ctx, "created_by"),
        created_by = esc(&run.created_by),
        created_at = esc(&shanghai_time(&run.created_at)),
        l_approved = tr(ctx, "approved_by"),
        approved_by = esc(run.approved_by.as_deref().unwrap_or("—")),
        approved_at = esc(&run
            .approved_at
            .as_deref()
            .map(shanghai_time)
            .unwrap_or_default()),
        l_posted = tr(ctx, "posted_at"),
        posted_at = esc(&run
            .posted_at
            .as_deref()
            .map_or_else(|| "—".to_owned(), shanghai_time)),
        l_registry = tr(ctx, "registry"),
        version = run.registry_version,
        hash = esc(&run.content_hash[..run.content_hash.len().min(12)]),
        l_preview = if run.status == "posted" {
            tr(ctx, "run.lines_posted")
        } else {
            tr(ctx, "run.lines_preview")
        },
        lines = lines_table(ctx, run, &view.lines),
    );
    Ok(layout(
        ctx,
        &format!("{} {}", tr(ctx, "run"), run.run_id),
        &main,
    ))
}

/// `YYYY-MM` with a month 1-12, else an error naming `period`.
fn period_field(text: &str) -> Result<&str, ConsoleError> {
    suanli_domain::usage::Period::parse(text)
        .map(|_| text)
        .ok_or_else(|| ConsoleError::field("period", format!("{text:?} is not a month YYYY-MM")))
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
            settle::SettleError::NotFound(m) => {
                ConsoleError::Field(FieldError::new("programme", m), StatusCode::NOT_FOUND)
            }
            settle::SettleError::InvalidArgument(m) => ConsoleError::field("period", m),
            other => settle_error(other, "run"),
        })?;
    Ok(view.run.run_id)
}

pub async fn run_action(
    console: &Arc<Console>,
    ctx: &Ctx,
    run_id: i64,
    action: &str,
) -> Result<(), ConsoleError> {
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
    Ok(())
}

pub async fn record_payment(
    console: &Arc<Console>,
    ctx: &Ctx,
    form: &Form,
) -> Result<String, ConsoleError> {
    let payee = form.required("payee")?.to_owned();
    let amount_text = form.required("amount")?;
    let amount =
        Fen::parse_cny(amount_text).map_err(|e| ConsoleError::field("amount", e.to_string()))?;
    if amount.0 <= 0 {
        return Err(ConsoleError::field(
            "amount",
            format!("{amount_text:?} must be more than zero"),
        ));
    }
    let reference = form.required("reference")?.to_owned();
    let programme = form.optional("programme").map(str::to_owned);
    let actor = ctx.actor.clone().expect("signed in");
    let (who, reference2) = (payee.clone(), reference.clone());
    let (journal_id, duplicate, outstanding) = console
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
            )
        })
        .await?
        .map_err(|e| match e {
            settle::SettleError::InvalidArgument(m) if m.contains("owes payee") => {
                ConsoleError::Field(FieldError::new("programme", m), StatusCode::CONFLICT)
            }
            settle::SettleError::AlreadyExists(m) => {
                ConsoleError::Field(FieldError::new("reference", m), StatusCode::CONFLICT)
            }
            settle::SettleError::FailedPrecondition(m) if m.contains("exceeds") => {
                ConsoleError::Field(FieldError::new("amount", m), StatusCode::CONFLICT)
            }
            settle::SettleError::InvalidArgument(m) if m.contains("several programmes") => {
                ConsoleError::field("programme", m)
            }
            other => settle_error(other, "payee"),
        })?;
    let message = if duplicate {
        tr(ctx, "payment.duplicate")
    } else {
        tr(ctx, "payment.recorded")
    };
    let main = format!(
        "<p><a href=\"/finance\">← {back}</a></p><section class=\"card\"><h1>{h}</h1><p class=\"ok\" id=\"payment-result\" data-journal=\"{journal_id}\">{message}</p><dl class=\"figures\"><div><dt>{l_payee}</dt><dd>{payee}</dd></div><div><dt>{l_amount}</dt><dd>{amount}</dd></div><div><dt>{l_ref}</dt><dd>{reference}</dd></div><div><dt>{l_out}</dt><dd>{outstanding}</dd></div></dl></section>",
        back = tr(ctx, "nav.finance"),
        h = tr(ctx, "finance.payment"),
        l_payee = tr(ctx, "payee"),
        payee = esc(&payee),
        l_amount = tr(ctx, "amount"),
        amount = esc(&cny(amount)),
        l_ref = tr(ctx, "reference"),
        reference = esc(&reference),
        l_out = tr(ctx, "outstanding"),
        outstanding = esc(&cny(outstanding)),
    );
    Ok(layout(ctx, tr(ctx, "finance.payment"), &main))
}

/// A `YYYY-MM-DD` filter field.
fn day_field<'a>(query: &'a Form, name: &str) -> Result<Option<&'a str>, ConsoleError> {
    match query.optional(name) {
        None => Ok(None),
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(|_| Some(d))
            .map_err(|_| ConsoleError::field(name, format!("{d:?} is not a date YYYY-MM-DD"))),
    }
}

/// The auditor view: the journal with filters, the trial balance, and re-derive on posted runs.
pub async fn audit(
    console: &Arc<Console>,
    ctx: &Ctx,
    query: &Form,
) -> Result<String, ConsoleError> {
    let account = query.optional("account").unwrap_or("").to_owned();
    let from = day_field(query, "from")?.map(str::to_owned);
    let to = day_field(query, "to")?.map(str::to_owned);
    let run = match query.optional("run") {
        None => None,
        Some(r) => Some(
            r.parse::<i64>()
                .ok()
                .filter(|r| *r > 0)
                .ok_or_else(|| ConsoleError::field("run", format!("{r:?} is not a run number")))?,
        ),
    };
    let (journals, totals, runs) = console
        .store(|s| {
            Ok::<_, settle::SettleError>((
                suanli_app::ledger::journals(s)?,
                suanli_app::ledger::trial_balance(s)?,
                settle::list_runs(s, None)?,
            ))
        })
        .await?
        .map_err(|e| settle_error(e, "journal"))?;
    let run_reference = run.map(|r| format!("run:{r}"));
    let selected: Vec<_> = journals
        .iter()
        .rev()
        .filter(|j| account.is_empty() || j.entries.iter().any(|e| e.account.starts_with(&account)))
        .filter(|j| {
            let day = shanghai_day(&j.created_at).unwrap_or_default();
            from.as_ref().is_none_or(|f| day >= *f) && to.as_ref().is_none_or(|t| day <= *t)
        })
        .filter(|j| {
            run_reference
                .as_ref()
                .is_none_or(|r| j.kind == "run" && j.reference == *r)
        })
        .collect();
    let mut main = format!("<h1>{}</h1>", tr(ctx, "audit.title"));
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{h}</h2><form method=\"get\" action=\"/audit\" class=\"filters\"><label>{l_acc}<input name=\"account\" value=\"{acc}\" maxlength=\"200\" placeholder=\"payable:\"></label><label>{l_from}<input name=\"from\" type=\"date\" value=\"{from}\"></label><label>{l_to}<input name=\"to\" type=\"date\" value=\"{to}\"></label><label>{l_run}<input name=\"run\" inputmode=\"numeric\" value=\"{run}\" maxlength=\"12\"></label><button type=\"submit\">{filter}</button></form>",
        h = tr(ctx, "audit.journal"),
        l_acc = tr(ctx, "account"),
        acc = esc(&account),
        l_from = tr(ctx, "from"),
        from = esc(from.as_deref().unwrap_or("")),
        l_to = tr(ctx, "to"),
        to = esc(to.as_deref().unwrap_or("")),
        l_run = tr(ctx, "run"),
        run = run.map_or(String::new(), |r| r.to_string()),
        filter = tr(ctx, "filter"),
    );
    let _ = write!(
        main,
        "<p class=\"muted\">{} {} / {}</p><div class=\"scroll\"><table id=\"journal\"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th></tr></thead><tbody>",
        tr(ctx, "audit.shown"),
        selected.len().min(JOURNALS_SHOWN_MAX),
        selected.len(),
        tr(ctx, "time"),
        tr(ctx, "kind"),
        tr(ctx, "reference"),
        tr(ctx, "account"),
        tr(ctx, "debit"),
        tr(ctx, "credit"),
    );
    if selected.is_empty() {
        let _ = write!(
            main,
            "<tr><td colspan=\"7\" class=\"muted\">{}</td></tr>",
            tr(ctx, "none")
        );
    }
    for j in selected.iter().take(JOURNALS_SHOWN_MAX) {
        let rows = j.entries.len().max(1);
        for (i, e) in j.entries.iter().enumerate() {
            main.push_str("<tr>");
            if i == 0 {
                let _ = write!(
                    main,
                    "<td rowspan=\"{rows}\">{}</td><td rowspan=\"{rows}\">{}<br><small>{}</small></td><td rowspan=\"{rows}\">{}</td><td rowspan=\"{rows}\">{}</td>",
                    j.journal_id,
                    esc(&shanghai_time(&j.created_at)),
                    esc(&j.created_by),
                    esc(&j.kind),
                    esc(&j.reference),
                );
            }
            let _ = write!(
                main,
                "<td><code>{}</code></td>{}{}</tr>",
                esc(&e.account),
                money_cell(Fen(e.debit_fen)),
                money_cell(Fen(e.credit_fen)),
            );
        }
    }
    main.push_str("</tbody></table></div></section>");
    // Trial balance.
    let debit: i128 = totals.iter().map(|t| i128::from(t.1)).sum();
    let credit: i128 = totals.iter().map(|t| i128::from(t.2)).sum();
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{}</h2><div class=\"scroll\"><table id=\"trial-balance\"><thead><tr><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th></tr></thead><tbody>",
        tr(ctx, "audit.trial_balance"),
        tr(ctx, "account"),
        tr(ctx, "debit"),
        tr(ctx, "credit"),
        tr(ctx, "balance"),
    );
    for (account, d, c) in &totals {
        let _ = write!(
            main,
            "<tr><td><code>{}</code></td>{}{}{}</tr>",
            esc(account),
            money_cell(Fen(*d)),
            money_cell(Fen(*c)),
            money_cell(Fen(d.saturating_sub(*c)))
        );
    }
    let sum = |v: i128| cny(Fen(i64::try_from(v).unwrap_or(i64::MAX)));
    let _ = write!(
        main,
        "</tbody><tfoot><tr><th>{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\" id=\"balanced\" data-balanced=\"{}\">{}</td></tr></tfoot></table></div></section>",
        tr(ctx, "total"),
        esc(&sum(debit)),
        esc(&sum(credit)),
        debit == credit,
        if debit == credit {
            tr(ctx, "audit.balanced")
        } else {
            tr(ctx, "audit.unbalanced")
        }
    );
    // Posted runs, each with re-derive.
    let _ = write!(
        main,
        "<section class=\"card\"><h2>{}</h2><div class=\"scroll\"><table id=\"posted-runs\"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
        tr(ctx, "audit.posted_runs"),
        tr(ctx, "programme"),
        tr(ctx, "period"),
        tr(ctx, "posted_at"),
    );
    let posted: Vec<&RunRow> = runs.iter().filter(|r| r.status == "posted").collect();
    if posted.is_empty() {
        let _ = write!(
            main,
            "<tr><td colspan=\"5\" class=\"muted\">{}</td></tr>",
            tr(ctx, "none")
        );
    }
    for r in posted.iter().rev() {
        let _ = write!(
            main,
            "<tr><td><a href=\"/finance/runs/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/audit/runs/{id}/rederive\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"secondary\">{}</button></form></td></tr>",
            esc(&r.programme),
            esc(&r.period),
            esc(&r
                .posted_at
                .as_deref()
                .map(shanghai_time)
                .unwrap_or_default()),
            esc(&ctx.csrf),
            tr(ctx, "action.rederive"),
            id = r.run_id,
        );
    }
    main.push_str("</tbody></table></div></section>");
    Ok(layout(ctx, tr(ctx, "audit.title"), &main))
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
                format!(
                    "run {run_id} is {}; only posted runs are re-derived here",
                    run.status
                ),
            ),
            StatusCode::CONFLICT,
        ));
    }
    require(ctx.principal(), READERS, "re-deriving a settlement run")?;
    run_page(console, ctx, run_id, Some(difference)).await
}
