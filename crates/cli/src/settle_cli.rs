//! CLI clients for settlement runs, the ledger and balances (`suanli settle|ledger|balance`).
//! Thin: each command makes one gRPC call (a stream of pages for what can be of any size) and
//! prints or writes what comes back.

use std::path::{Path, PathBuf};

use anyhow::Context;
use suanli_app::settlement::{RUN_STATEMENT_HEADER, run_statement_record};
use suanli_domain::money::Fen;
use suanli_proto::v1 as pb;
use suanli_proto::v1::balance_service_client::BalanceServiceClient;
use suanli_proto::v1::ledger_service_client::LedgerServiceClient;
use suanli_proto::v1::settlement_service_client::SettlementServiceClient;
use suanli_store::ledger::{LineKeyRow, RunLineRow, RunRow};

use crate::client::{Target, authorize, channel, grpc_error};

fn status_name(code: i32) -> &'static str {
    match pb::RunStatus::try_from(code).unwrap_or(pb::RunStatus::Unspecified) {
        pb::RunStatus::Open => "open",
        pb::RunStatus::Approved => "approved",
        pb::RunStatus::Posted => "posted",
        pb::RunStatus::Cancelled => "cancelled",
        pb::RunStatus::Unspecified => "unknown",
    }
}

fn print_run(run: &pb::Run) {
    outln!(
        "run {} {} {} {}: {} line(s), {} adjustment(s), total {} CNY; registry v{} sha256 {}",
        run.run_id,
        run.programme,
        run.period,
        status_name(run.status),
        run.lines,
        run.adjustment_lines,
        Fen(run.total_fen),
        run.registry_version,
        run.content_hash
    );
    outln!(
        "  created by {} at {}",
        run.created_by,
        shanghai(&run.created_at)
    );
    if !run.approved_by.is_empty() {
        outln!(
            "  approved by {} at {}",
            run.approved_by,
            shanghai(&run.approved_at)
        );
    }
    if !run.posted_at.is_empty() {
        outln!(
            "  posted at {} (journal {})",
            shanghai(&run.posted_at),
            run.journal_id
        );
    }
    if !run.cancelled_at.is_empty() {
        if run.cancelled_by.is_empty() {
            outln!("  cancelled at {}", shanghai(&run.cancelled_at));
        } else {
            outln!(
                "  cancelled by {} at {}",
                run.cancelled_by,
                shanghai(&run.cancelled_at)
            );
        }
    }
}

pub enum SettleAction {
    Create {
        programme: String,
        period: String,
    },
    Show {
        run_id: u64,
    },
    Export {
        run_id: u64,
        out: std::path::PathBuf,
    },
    Approve {
        run_id: u64,
    },
    Post {
        run_id: u64,
    },
    Cancel {
        run_id: u64,
    },
    List {
        programme: Option<String>,
    },
    Rederive {
        run_id: u64,
    },
    Explain {
        run_id: u64,
        beneficiary: String,
        provider: Option<String>,
        format: ExplainFormat,
        records: u32,
        records_page: Option<String>,
    },
}

/// How `settle explain` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainFormat {
    /// Sentences for people, one line each.
    Text,
    /// Every figure as JSON, for programs.
    Json,
}

pub async fn settle(server: &Target, token: &str, action: SettleAction) -> anyhow::Result<()> {
    let mut client = SettlementServiceClient::new(channel(server).await?);
    let response = match action {
        SettleAction::Create { programme, period } => {
            client
                .create_run(authorize(
                    pb::CreateRunRequest { programme, period },
                    token,
                )?)
                .await
        }
        SettleAction::Show { run_id } => {
            client
                .get_run(authorize(pb::GetRunRequest { run_id }, token)?)
                .await
        }
        SettleAction::Export { run_id, out } => {
            let response = client
                .get_run(authorize(pb::GetRunRequest { run_id }, token)?)
                .await
                .map_err(grpc_error)?;
            return export(&mut client, token, &response.into_inner(), &out).await;
        }
        SettleAction::Approve { run_id } => {
            client
                .approve_run(authorize(pb::RunActionRequest { run_id }, token)?)
                .await
        }
        SettleAction::Post { run_id } => {
            client
                .post_run(authorize(pb::RunActionRequest { run_id }, token)?)
                .await
        }
        SettleAction::Cancel { run_id } => {
            client
                .cancel_run(authorize(pb::RunActionRequest { run_id }, token)?)
                .await
        }
        SettleAction::List { programme } => {
            let runs = client
                .list_runs(authorize(
                    pb::ListRunsRequest {
                        programme: programme.unwrap_or_default(),
                    },
                    token,
                )?)
                .await
                .map_err(grpc_error)?
                .into_inner()
                .runs;
            for run in &runs {
                print_run(run);
            }
            if runs.is_empty() {
                outln!("no settlement runs");
            }
            return Ok(());
        }
        SettleAction::Explain {
            run_id,
            beneficiary,
            provider,
            format,
            records,
            records_page,
        } => {
            let r = client
                .explain_run(authorize(
                    pb::ExplainRunRequest {
                        run_id,
                        beneficiary,
                        provider: provider.unwrap_or_default(),
                        records_page_size: records,
                        records_page_token: records_page.unwrap_or_default(),
                    },
                    token,
                )?)
                .await
                .map_err(grpc_error)?
                .into_inner();
            match format {
                ExplainFormat::Text => print_explanation(&r),
                ExplainFormat::Json => {
                    outln!("{}", serde_json::to_string_pretty(&explanation_json(&r))?);
                }
            }
            return Ok(());
        }
        SettleAction::Rederive { run_id } => {
            let r = client
                .rederive_run(authorize(pb::RunActionRequest { run_id }, token)?)
                .await
                .map_err(grpc_error)?
                .into_inner();
            if r.matches {
                outln!("run {run_id}: re-derived from its frozen inputs; every line matches");
                return Ok(());
            }
            anyhow::bail!(
                "run {run_id} does not match its re-derivation: {}",
                r.difference
            );
        }
    };
    let response = response.map_err(grpc_error)?.into_inner();
    let run = response.run.clone().context("server returned no run")?;
    if response.unchanged {
        outln!(
            "unchanged: run {} was already {}",
            run.run_id,
            status_name(run.status)
        );
    }
    print_run(&run);
    each_line(&mut client, token, &response, |line| {
        print_line(&run, line);
        Ok(())
    })
    .await?;
    Ok(())
}

fn print_line(run: &pb::Run, line: &pb::RunLine) {
    let adjustment = if line.original_period != run.period {
        format!(" (adjusts {})", line.original_period)
    } else {
        String::new()
    };
    outln!(
        "  {} {} {}{}{} base {} ratio {} → {}{}{}",
        line.beneficiary,
        line.provider,
        line.category,
        if line.chip_origin.is_empty() {
            String::new()
        } else {
            format!("/{}", line.chip_origin)
        },
        if line.registered_model.is_empty() {
            String::new()
        } else {
            format!("/registered={}", line.registered_model)
        },
        Fen(line.base_fen),
        line.ratio,
        Fen(line.amount_fen),
        if line.cut_by.is_empty() {
            String::new()
        } else {
            format!(" cut by {}", line.cut_by)
        },
        adjustment
    );
}

/// Hands every line of the run of `response` to `each`, in order: the lines the response
/// carries, or, when the run was too large for one message (`lines_omitted`), the lines read
/// page by page with ListRunLines, so a run of any size is never held whole. Checks that the
/// lines are the run's number of lines and add up to its total; returns how many there were.
async fn each_line(
    client: &mut SettlementServiceClient<tonic::transport::Channel>,
    token: &str,
    response: &pb::RunResponse,
    mut each: impl FnMut(&pb::RunLine) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let run = response.run.as_ref().context("server returned no run")?;
    let mut count: u64 = 0;
    let mut total = Fen(0);
    let mut take = |line: &pb::RunLine| -> anyhow::Result<()> {
        count += 1;
        total = total
            .checked_add(Fen(line.amount_fen))
            .with_context(|| format!("run {}: the lines' total overflows", run.run_id))?;
        each(line)
    };
    if response.lines_omitted {
        let mut pages = client
            .list_run_lines(authorize(
                pb::ListRunLinesRequest {
                    run_id: run.run_id,
                    page_lines: 0,
                    from_line: 0,
                },
                token,
            )?)
            .await
            .map_err(grpc_error)?
            .into_inner();
        let mut next: u64 = 0;
        while let Some(page) = pages.message().await.map_err(grpc_error)? {
            anyhow::ensure!(
                page.first_line == next,
                "run {}: the server sent lines from position {} where {next} was expected",
                run.run_id,
                page.first_line
            );
            next += page.lines.len() as u64;
            for line in &page.lines {
                take(line)?;
            }
        }
    } else {
        for line in &response.lines {
            take(line)?;
        }
    }
    anyhow::ensure!(
        count == u64::from(run.lines) && total == Fen(run.total_fen),
        "run {}: received {count} line(s) totalling {total} CNY, but the run has {} line(s) totalling {} CNY; run the command again",
        run.run_id,
        run.lines,
        Fen(run.total_fen)
    );
    Ok(count)
}

/// A run line's key as people read it: `ent-a dc-a compute/domestic`.
fn line_label(line: &pb::RunLine) -> String {
    format!(
        "{} {} {}{}{}",
        line.beneficiary,
        line.provider,
        line.category,
        if line.chip_origin.is_empty() {
            String::new()
        } else {
            format!("/{}", line.chip_origin)
        },
        match line.registered_model.as_str() {
            "true" => "/registered",
            "false" => "/unregistered",
            _ => "",
        }
    )
}

/// A record's time (UTC on the wire) in Asia/Shanghai.
fn record_time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map_or_else(String::new, |t| shanghai(&t.to_rfc3339()))
}

fn print_explanation(r: &pb::ExplainRunResponse) {
    let Some(run) = r.run.as_ref() else {
        return;
    };
    outln!(
        "run {} {} ({}) {} {}: {} line(s) of {}{}",
        run.run_id,
        run.programme,
        r.programme_name,
        run.period,
        status_name(run.status),
        r.lines.len(),
        r.beneficiary,
        if r.beneficiary_name.is_empty() || r.beneficiary_name == r.beneficiary {
            String::new()
        } else {
            format!(" ({})", r.beneficiary_name)
        }
    );
    for l in &r.lines {
        let Some(line) = l.line.as_ref() else {
            continue;
        };
        outln!(
            "line {}: {} {}{}, payee {}: {} CNY",
            l.seq,
            line_label(line),
            line.original_period,
            if l.adjustment { " (adjustment)" } else { "" },
            line.payee,
            Fen(line.amount_fen)
        );
        for sentence in &l.text {
            outln!("  {sentence}");
        }
        if l.records.is_empty() {
            outln!("  no usage records of the line are stored now");
        } else {
            outln!("  usage records ({} listed):", l.records.len());
        }
        for rec in &l.records {
            let state = if rec.voided_at.is_empty() {
                String::new()
            } else {
                format!(
                    " VOID since {} ({}){}",
                    shanghai(&rec.voided_at),
                    rec.void_reason,
                    if rec.counted {
                        ", counted in this run"
                    } else {
                        ", not counted"
                    }
                )
            };
            outln!(
                "    {} {} {} – {} quantity {} amount {} CNY{state}",
                rec.record_id,
                rec.sku,
                record_time(rec.start.as_ref()),
                record_time(rec.end.as_ref()),
                rec.quantity,
                Fen(rec.amount_fen)
            );
        }
        if !l.next_records_page_token.is_empty() {
            outln!(
                "  more records: --records-page {}",
                l.next_records_page_token
            );
        }
    }
}

/// The explanation as JSON: every figure, fen as integers, ratios as decimal strings.
fn explanation_json(r: &pb::ExplainRunResponse) -> serde_json::Value {
    use serde_json::json;
    let lines: Vec<serde_json::Value> = r
        .lines
        .iter()
        .map(|l| {
            let line = l.line.clone().unwrap_or_default();
            let ratio = l.ratio.clone().unwrap_or_default();
            json!({
                "seq": l.seq,
                "original_period": line.original_period,
                "adjustment": l.adjustment,
                "beneficiary": line.beneficiary,
                "provider": line.provider,
                "category": line.category,
                "chip_origin": line.chip_origin,
                "registered_model": line.registered_model,
                "payee": line.payee,
                "base_fen": line.base_fen,
                "ratio": line.ratio,
                "demand_fen": l.demand_fen,
                "entitlement_fen": line.entitlement_fen,
                "settled_before_fen": line.posted_before_fen,
                "change_fen": line.amount_fen,
                "cut_by": line.cut_by,
                "reason": line.reason,
                "ratio_explanation": {
                    "class": ratio.class,
                    "ratio": ratio.ratio,
                    "ratio_percent": ratio.ratio_percent,
                    "own_ratio": ratio.own_ratio,
                    "stacked_with": ratio.stacked_with,
                    "stacked_with_name": ratio.stacked_with_name,
                    "stacked_with_ratio": ratio.stacked_with_ratio,
                    "primary": ratio.primary,
                    "ceiling": ratio.ceiling,
                    "chosen_because": ratio.chosen_because,
                    "runner_up": ratio.runner_up,
                    "runner_up_ratio": ratio.runner_up_ratio,
                    "text": ratio.text,
                },
                "cuts": l.cuts.iter().map(|c| json!({
                    "stage": c.stage,
                    "subject": c.subject,
                    "subject_name": c.subject_name,
                    "limit_fen": c.limit_fen,
                    "prior_fen": c.prior_fen,
                    "prior_opening_fen": c.prior_opening_fen,
                    "left_fen": c.left_fen,
                    "wanted_fen": c.wanted_fen,
                    "lines": c.lines,
                    "before_fen": c.before_fen,
                    "after_fen": c.after_fen,
                    "text": c.text,
                })).collect::<Vec<_>>(),
                "base_now_fen": l.base_now_fen,
                "records_now": l.records_now,
                "records": l.records.iter().map(|rec| json!({
                    "record_id": rec.record_id,
                    "sku": rec.sku,
                    "start": record_time(rec.start.as_ref()),
                    "end": record_time(rec.end.as_ref()),
                    "quantity": rec.quantity,
                    "amount_fen": rec.amount_fen,
                    "voided_at": rec.voided_at,
                    "void_reason": rec.void_reason,
                    "counted": rec.counted,
                })).collect::<Vec<_>>(),
                "next_records_page": l.next_records_page_token,
                "text": l.text,
            })
        })
        .collect();
    let run = r.run.clone().unwrap_or_default();
    json!({
        "run_id": run.run_id,
        "programme": run.programme,
        "programme_name": r.programme_name,
        "period": run.period,
        "status": status_name(run.status),
        "beneficiary": r.beneficiary,
        "beneficiary_name": r.beneficiary_name,
        "lines": lines,
    })
}

/// The statement of a run: the columns of `suanli simulate`, then `run_id`, `original_period`
/// (set on adjustment lines only), `entitlement`, `settled_before`, `change` and `reason`
/// (see `RUN_STATEMENT_HEADER`). `subsidy` is what the run posts.
async fn export(
    client: &mut SettlementServiceClient<tonic::transport::Channel>,
    token: &str,
    response: &pb::RunResponse,
    out: &Path,
) -> anyhow::Result<()> {
    let run = response.run.as_ref().context("server returned no run")?;
    let partial = partial_path(out);
    let written = write_export(client, token, response, run, &partial).await;
    let written = into_place(written, &partial, out)?;
    outln!(
        "run {}: {written} line(s) written to {}",
        run.run_id,
        out.display()
    );
    Ok(())
}

/// Where an export is written until it is whole: beside `out`, renamed onto it at the end
/// ([`into_place`]), so an export whose rows stop coming half way leaves no file that looks
/// whole.
fn partial_path(out: &Path) -> PathBuf {
    out.with_file_name(format!(
        ".{}.partial",
        out.file_name()
            .map_or_else(|| "export".into(), |n| n.to_string_lossy())
    ))
}

/// Renames `partial` onto `out` when `written` is whole; removes it otherwise.
fn into_place<T>(written: anyhow::Result<T>, partial: &Path, out: &Path) -> anyhow::Result<T> {
    match written {
        Ok(written) => {
            std::fs::rename(partial, out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            Err(e)
        }
    }
}

async fn write_export(
    client: &mut SettlementServiceClient<tonic::transport::Channel>,
    token: &str,
    response: &pb::RunResponse,
    run: &pb::Run,
    out: &Path,
) -> anyhow::Result<u64> {
    let mut w =
        csv::Writer::from_path(out).with_context(|| format!("cannot write {}", out.display()))?;
    w.write_record(RUN_STATEMENT_HEADER)?;
    let row = RunRow {
        run_id: run.run_id as i64,
        programme: run.programme.clone(),
        period: run.period.clone(),
        ..RunRow::default()
    };
    let written = each_line(client, token, response, |l| {
        let line = RunLineRow {
            original_period: l.original_period.clone(),
            key: LineKeyRow {
                beneficiary: l.beneficiary.clone(),
                provider: l.provider.clone(),
                category: l.category.clone(),
                chip_origin: l.chip_origin.clone(),
                registered_model: l.registered_model.clone(),
            },
            base_fen: l.base_fen,
            ratio: l.ratio.clone(),
            entitlement_fen: l.entitlement_fen,
            posted_before_fen: l.posted_before_fen,
            amount_fen: l.amount_fen,
            cut_by: l.cut_by.clone(),
            payee: l.payee.clone(),
        };
        w.write_record(run_statement_record(&row, &line, &l.reason))?;
        Ok(())
    })
    .await?;
    w.flush()?;
    Ok(written)
}

pub enum LedgerAction {
    RecordPayment {
        payee: String,
        amount: String,
        reference: String,
        programme: Option<String>,
    },
    Export {
        out: std::path::PathBuf,
    },
    TrialBalance,
    ImportOpening {
        programme: String,
        file: std::path::PathBuf,
        encoding: Option<crate::files::Encoding>,
    },
    ConfirmOpening {
        import_id: u64,
    },
    Openings {
        programme: Option<String>,
    },
    ConfirmPayment {
        payment_id: u64,
    },
    WithdrawPayment {
        payment_id: u64,
    },
    Payments {
        awaiting: bool,
    },
}

/// A payment that needs a second person: one line, then who did what, when.
fn print_payment(p: &pb::Payment) {
    outln!(
        "payment {} {}: {} CNY to {} by {}, reference {}",
        p.payment_id,
        p.status,
        Fen(p.amount_fen),
        p.payee,
        p.programme,
        p.reference
    );
    outln!(
        "  recorded by {} at {}",
        p.recorded_by,
        shanghai(&p.recorded_at)
    );
    if !p.confirmed_by.is_empty() {
        outln!(
            "  confirmed by {} at {} (journal {})",
            p.confirmed_by,
            shanghai(&p.confirmed_at),
            p.journal_id
        );
    }
    if !p.withdrawn_by.is_empty() {
        outln!(
            "  withdrawn by {} at {}",
            p.withdrawn_by,
            shanghai(&p.withdrawn_at)
        );
    }
}

fn print_opening(i: &pb::OpeningImport) {
    outln!(
        "opening import {} {} {}: {} row(s), total {} CNY; content sha256 {}",
        i.import_id,
        i.programme,
        i.status,
        i.lines.len(),
        Fen(i.total_fen),
        i.content_hash
    );
    outln!(
        "  imported by {} at {}",
        i.created_by,
        shanghai(&i.created_at)
    );
    if !i.confirmed_by.is_empty() {
        outln!(
            "  confirmed by {} at {}{}",
            i.confirmed_by,
            shanghai(&i.confirmed_at),
            if i.journal_id == 0 {
                String::new()
            } else {
                format!(" (journal {})", i.journal_id)
            }
        );
    }
    for l in &i.lines {
        outln!(
            "  {} {} paid to {}: {} CNY",
            l.beneficiary,
            if l.provider.is_empty() {
                "(provider unknown)"
            } else {
                &l.provider
            },
            l.payee,
            Fen(l.amount_fen)
        );
    }
}

/// A time the server sent (RFC 3339, UTC) as people in the programme read it: Asia/Shanghai,
/// with its +08:00 offset. Text that is not a time is shown as it came.
pub fn shanghai(text: &str) -> String {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => t
            .with_timezone(&offset)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        Err(_) => text.to_owned(),
    }
}

pub async fn ledger(server: &Target, token: &str, action: LedgerAction) -> anyhow::Result<()> {
    let mut client = LedgerServiceClient::new(channel(server).await?);
    match action {
        LedgerAction::RecordPayment {
            payee,
            amount,
            reference,
            programme,
        } => {
            let amount = Fen::parse_cny(&amount).map_err(|e| anyhow::anyhow!("--amount: {e}"))?;
            let r = client
                .record_payment(authorize(
                    pb::RecordPaymentRequest {
                        payee: payee.clone(),
                        amount_fen: amount.0,
                        reference,
                        programme: programme.unwrap_or_default(),
                    },
                    token,
                )?)
                .await
                .map_err(grpc_error)?
                .into_inner();
            match &r.payment {
                Some(p) if r.awaiting_confirmation => {
                    outln!(
                        "{} {} of {amount} CNY to {payee}: it awaits confirmation by another finance user (suanli ledger confirm-payment {}); nothing is booked yet, still owed {} CNY",
                        if r.duplicate {
                            "already recorded: payment"
                        } else {
                            "recorded payment"
                        },
                        p.payment_id,
                        p.payment_id,
                        Fen(r.outstanding_fen)
                    );
                }
                _ => {
                    outln!(
                        "{} {amount} CNY to {payee} (journal {}); still owed {} CNY",
                        if r.duplicate {
                            "already recorded: payment of"
                        } else {
                            "recorded payment of"
                        },
                        r.journal_id,
                        Fen(r.outstanding_fen)
                    );
                }
            }
        }
        LedgerAction::ConfirmPayment { payment_id } => {
            let r = client
                .confirm_payment(authorize(pb::PaymentActionRequest { payment_id }, token)?)
                .await
                .map_err(grpc_error)?
                .into_inner();
            let p = r.payment.context("server returned no payment")?;
            if r.unchanged {
                outln!("unchanged: payment {} was already confirmed", p.payment_id);
            }
            print_payment(&p);
            outln!("still owed {} CNY", Fen(r.outstanding_fen));
        }
        LedgerAction::WithdrawPayment { payment_id } => {
            let r = client
                .withdraw_payment(authorize(pb::PaymentActionRequest { payment_id }, token)?)
                .await
                .map_err(grpc_error)?
                .into_inner();
            let p = r.payment.context("server returned no payment")?;
            if r.unchanged {
                outln!("unchanged: payment {} was already withdrawn", p.payment_id);
            }
            print_payment(&p);
        }
        LedgerAction::Payments { awaiting } => {
            let payments = client
                .list_payments(authorize(pb::ListPaymentsRequest { awaiting }, token)?)
                .await
                .map_err(grpc_error)?
                .into_inner()
                .payments;
            for p in &payments {
                print_payment(p);
            }
            if payments.is_empty() {
                outln!(
                    "{}",
                    if awaiting {
                        "no payments await confirmation"
                    } else {
                        "no payments needed a second person"
                    }
                );
            }
        }
        LedgerAction::Export { out } => {
            let partial = partial_path(&out);
            let written = write_journals(&mut client, token, &partial).await;
            let (journals, entries) = into_place(written, &partial, &out)?;
            outln!(
                "{journals} journal(s), {entries} entries written to {}",
                out.display()
            );
        }
        LedgerAction::ImportOpening {
            programme,
            file,
            encoding,
        } => {
            let rows = crate::files::read_opening(&file, &programme, encoding)?
                .into_iter()
                .map(|(line, beneficiary, provider, amount)| pb::OpeningRow {
                    beneficiary,
                    provider,
                    amount_fen: amount.0,
                    line,
                })
                .collect();
            let r = client
                .import_opening(authorize(
                    pb::ImportOpeningRequest { programme, rows },
                    token,
                )?)
                .await
                .map_err(grpc_error)?
                .into_inner();
            let import = r.import.context("server returned no import")?;
            if r.unchanged {
                outln!(
                    "unchanged: the same opening balances are already import {} ({})",
                    import.import_id,
                    import.status
                );
            }
            if r.superseded != 0 {
                outln!("replaces pending opening import {}", r.superseded);
            }
            print_opening(&import);
            if import.status == "pending" {
                outln!(
                    "another finance user confirms it: suanli ledger confirm-opening {}",
                    import.import_id
                );
            }
        }
        LedgerAction::ConfirmOpening { import_id } => {
            let r = client
                .confirm_opening(authorize(pb::ConfirmOpeningRequest { import_id }, token)?)
                .await
                .map_err(grpc_error)?
                .into_inner();
            let import = r.import.context("server returned no import")?;
            if r.unchanged {
                outln!(
                    "unchanged: opening import {} was already confirmed",
                    import.import_id
                );
            }
            print_opening(&import);
        }
        LedgerAction::Openings { programme } => {
            let imports = client
                .list_openings(authorize(
                    pb::ListOpeningsRequest {
                        programme: programme.unwrap_or_default(),
                    },
                    token,
                )?)
                .await
                .map_err(grpc_error)?
                .into_inner()
                .imports;
            for i in &imports {
                print_opening(i);
            }
            if imports.is_empty() {
                outln!("no opening balances");
            }
        }
        LedgerAction::TrialBalance => trial_balance(&mut client, token).await?,
    }
    Ok(())
}

/// What a listing of the ledger received, to check against its extent.
#[derive(Default, PartialEq, Eq)]
struct Received {
    journals: u64,
    entries: u64,
    accounts: u64,
    debit: Fen,
    credit: Fen,
}

impl Received {
    fn entry(&mut self, debit_fen: i64, credit_fen: i64) -> anyhow::Result<()> {
        self.debit = self
            .debit
            .checked_add(Fen(debit_fen))
            .context("the debits' total overflows")?;
        self.credit = self
            .credit
            .checked_add(Fen(credit_fen))
            .context("the credits' total overflows")?;
        Ok(())
    }

    /// Fails unless what was received is what `extent` says the listing holds (`what`: the
    /// journals, the trial balance).
    fn check(&self, what: &str, extent: &pb::LedgerExtent) -> anyhow::Result<()> {
        let expected = Received {
            journals: extent.journals,
            entries: extent.entries,
            accounts: extent.accounts,
            debit: Fen(extent.total_debit_fen),
            credit: Fen(extent.total_credit_fen),
        };
        let counts = |r: &Received| {
            format!(
                "{} journal(s), {} entries, {} account(s), debits {} CNY, credits {} CNY",
                r.journals, r.entries, r.accounts, r.debit, r.credit
            )
        };
        anyhow::ensure!(
            *self == expected,
            "{what} through journal {}: received {}, but the server counted {}; run the command again",
            extent.through_journal_id,
            counts(self),
            counts(&expected)
        );
        Ok(())
    }
}

/// `ledger export`: every journal entry as a CSV row, read page by page with ListJournalPages
/// (a ledger of any size is never held whole) and checked against the listing's extent; returns
/// how many journals and entries were written.
async fn write_journals(
    client: &mut LedgerServiceClient<tonic::transport::Channel>,
    token: &str,
    out: &Path,
) -> anyhow::Result<(u64, u64)> {
    let mut pages = client
        .list_journal_pages(authorize(pb::ListJournalsRequest::default(), token)?)
        .await
        .map_err(grpc_error)?
        .into_inner();
    let extent = pages
        .message()
        .await
        .map_err(grpc_error)?
        .and_then(|m| m.extent)
        .context("the server sent no extent of the journals")?;
    let mut w =
        csv::Writer::from_path(out).with_context(|| format!("cannot write {}", out.display()))?;
    w.write_record([
        "journal_id",
        "kind",
        "reference",
        "created_at",
        "created_by",
        "memo",
        "account",
        "debit",
        "credit",
    ])?;
    let mut received = Received::default();
    // The journal being received and how many of its entries came.
    let mut last: Option<(u64, u64)> = None;
    while let Some(page) = pages.message().await.map_err(grpc_error)? {
        for j in &page.journals {
            match last {
                Some((id, got)) if id == j.journal_id => anyhow::ensure!(
                    j.first_entry == got,
                    "journal {id}: the server sent entries from position {} where {got} was expected",
                    j.first_entry
                ),
                _ => {
                    anyhow::ensure!(
                        j.first_entry == 0 && last.is_none_or(|(id, _)| id < j.journal_id),
                        "journal {}: the server sent it (from entry {}) out of order, after journal {}",
                        j.journal_id,
                        j.first_entry,
                        last.map_or(0, |(id, _)| id)
                    );
                    received.journals += 1;
                }
            }
            last = Some((j.journal_id, j.first_entry + j.entries.len() as u64));
            for e in &j.entries {
                received.entries += 1;
                received
                    .entry(e.debit_fen, e.credit_fen)
                    .with_context(|| format!("journal {}", j.journal_id))?;
                w.write_record([
                    j.journal_id.to_string(),
                    j.kind.clone(),
                    j.reference.clone(),
                    j.created_at.clone(),
                    j.created_by.clone(),
                    j.memo.clone(),
                    e.account.clone(),
                    Fen(e.debit_fen).to_string(),
                    Fen(e.credit_fen).to_string(),
                ])?;
            }
        }
    }
    received.check("the journals", &extent)?;
    w.flush()?;
    Ok((received.journals, received.entries))
}

/// `ledger trial-balance`: the accounts as they come, page by page with ListTrialBalance (a
/// trial balance of any size is never held whole), checked against its extent.
async fn trial_balance(
    client: &mut LedgerServiceClient<tonic::transport::Channel>,
    token: &str,
) -> anyhow::Result<()> {
    let mut pages = client
        .list_trial_balance(authorize(pb::TrialBalanceRequest {}, token)?)
        .await
        .map_err(grpc_error)?
        .into_inner();
    let mut extent = None;
    let mut received = Received::default();
    outln!(
        "{:<60} {:>18} {:>18} {:>18}",
        "account",
        "debit",
        "credit",
        "balance"
    );
    while let Some(page) = pages.message().await.map_err(grpc_error)? {
        if extent.is_none() {
            extent = Some(
                page.extent
                    .context("the server sent no extent of the trial balance")?,
            );
        }
        for a in &page.accounts {
            received.accounts += 1;
            received
                .entry(a.debit_fen, a.credit_fen)
                .with_context(|| format!("account {}", a.account))?;
            outln!(
                "{:<60} {:>18} {:>18} {:>18}",
                a.account,
                Fen(a.debit_fen),
                Fen(a.credit_fen),
                Fen(a.balance_fen)
            );
        }
    }
    let extent = extent.context("the server sent no trial balance")?;
    // The accounts' sums are the entries' sums; the entries themselves are not sent.
    received.entries = extent.entries;
    received.check("the trial balance", &extent)?;
    outln!(
        "{:<60} {:>18} {:>18}",
        "total",
        received.debit,
        received.credit
    );
    if received.debit != received.credit {
        anyhow::bail!("the trial balance does not balance");
    }
    outln!("balanced");
    Ok(())
}

pub async fn balance(
    server: &Target,
    token: &str,
    beneficiary: Option<String>,
    year: Option<i32>,
    payee: Option<String>,
) -> anyhow::Result<()> {
    let mut client = BalanceServiceClient::new(channel(server).await?);
    if let Some(payee) = payee {
        let r = client
            .get_payee(authorize(pb::GetPayeeRequest { payee }, token)?)
            .await
            .map_err(grpc_error)?
            .into_inner();
        outln!("payee {}", r.payee);
        for p in &r.programmes {
            outln!(
                "  {}: settled {} CNY, paid out {} CNY, outstanding {} CNY",
                p.programme,
                Fen(p.settled_fen),
                Fen(p.paid_out_fen),
                Fen(p.outstanding_fen)
            );
        }
        return Ok(());
    }
    let beneficiary = beneficiary.context("give --beneficiary ID (with --year) or --payee ID")?;
    let year = year.context("--year is required with --beneficiary")?;
    let r = client
        .get_balance(authorize(
            pb::GetBalanceRequest { beneficiary, year },
            token,
        )?)
        .await
        .map_err(grpc_error)?
        .into_inner();
    outln!("beneficiary {} in {year}", r.beneficiary);
    for p in &r.programmes {
        let cap = if p.capped {
            format!("{} CNY", Fen(p.cap_fen))
        } else {
            "none".into()
        };
        let remaining = if p.capped {
            format!("{} CNY", Fen(p.remaining_fen))
        } else {
            "unlimited".into()
        };
        // entitled − settled, signed: a claw-back to come shows as a negative pending.
        let pending = Fen(p.pending_fen).minus(Fen(p.owed_back_fen));
        let owed = if p.owed_back_fen > 0 {
            " (owed back)"
        } else {
            ""
        };
        outln!(
            "  {}: cap {cap}, entitled {} CNY, settled {} CNY, pending {pending} CNY{owed}, remaining {remaining}",
            p.programme,
            Fen(p.entitled_fen),
            Fen(p.settled_fen),
        );
        let to_whom: Vec<String> = p
            .paid_out
            .iter()
            .map(|x| {
                format!(
                    "{} {} of {} CNY settled",
                    if x.to_beneficiary {
                        format!("to {} itself", x.payee)
                    } else {
                        format!("to provider {}", x.payee)
                    },
                    Fen(x.paid_out_fen),
                    Fen(x.settled_fen)
                )
            })
            .collect();
        outln!(
            "    paid out {} CNY: to {} itself {} CNY, to providers on its behalf {} CNY{}",
            Fen(p.paid_out_to_beneficiary_fen).plus(Fen(p.paid_out_to_providers_fen)),
            r.beneficiary,
            Fen(p.paid_out_to_beneficiary_fen),
            Fen(p.paid_out_to_providers_fen),
            if to_whom.is_empty() {
                String::new()
            } else {
                format!(" ({})", to_whom.join("; "))
            }
        );
    }
    if r.programmes.is_empty() {
        outln!("  no grants in {year}");
    }
    Ok(())
}

/// `usage void`: withdraws a record (idempotent).
pub async fn void(
    server: &Target,
    token: &str,
    provider: String,
    record_id: String,
    reason: String,
) -> anyhow::Result<()> {
    let mut client = suanli_proto::v1::metering_service_client::MeteringServiceClient::new(
        channel(server).await?,
    );
    let r = client
        .void_usage(authorize(
            pb::VoidUsageRequest {
                provider: provider.clone(),
                record_id: record_id.clone(),
                reason,
            },
            token,
        )?)
        .await
        .map_err(grpc_error)?
        .into_inner();
    let at = r.voided_at.map_or_else(String::new, |t| {
        chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            .map_or_else(String::new, |t| {
                format!(" at {}", shanghai(&t.to_rfc3339()))
            })
    });
    outln!(
        "record {record_id} of {provider} {}{at}",
        if r.voided {
            "voided"
        } else {
            "was already void"
        }
    );
    Ok(())
}
