//! Payments that need a second person (`ledger.payment_confirm_above_fen`) on the finance
//! page: the list of those awaiting confirmation with who recorded them, the confirm and
//! withdraw actions (the same use cases as `LedgerService`), and what recording one says.

use std::fmt::Write as _;
use std::sync::Arc;

use suanli_app::ledger::Recorded;
use suanli_domain::money::Fen;
use suanli_store::payments::PaymentRow;

use super::codes::Code;
use super::format::{cny, esc, shanghai_time};
use super::pages::tr;
use super::{Console, ConsoleError, Ctx, FINANCE, settle_error};

/// Under the payment form: which amounts need a second person, when the server says so.
pub(super) fn threshold_hint(ctx: &Ctx, confirm_above: Option<Fen>) -> String {
    match confirm_above {
        Some(limit) => format!(
            "<p class=\"muted\" id=\"payment-threshold\" data-fen=\"{}\">{} {}</p>",
            limit.0,
            tr(ctx, "payment.threshold"),
            esc(&cny(limit))
        ),
        None => String::new(),
    }
}

/// The result line of recording a payment, and what the programme owes the payee now.
pub(super) fn recorded_result(
    ctx: &Ctx,
    recorded: &Recorded,
    confirm_above: Option<Fen>,
) -> (String, Fen) {
    match recorded {
        Recorded::Booked {
            journal_id,
            duplicate,
            outstanding,
            ..
        } => {
            let message = if *duplicate {
                tr(ctx, "payment.duplicate")
            } else {
                tr(ctx, "payment.recorded")
            };
            (
                format!(
                    "<p class=\"ok\" id=\"payment-result\" data-status=\"booked\" data-journal=\"{journal_id}\">{message}</p>"
                ),
                *outstanding,
            )
        }
        Recorded::Awaiting {
            payment,
            duplicate,
            outstanding,
        } => {
            let again = if *duplicate {
                format!(" {}", tr(ctx, "payment.duplicate_awaiting"))
            } else {
                String::new()
            };
            let above = confirm_above.map_or_else(String::new, |l| format!(" ({})", cny(l)));
            (
                format!(
                    "<p class=\"ok\" id=\"payment-result\" data-status=\"awaiting\" data-payment=\"{id}\">{awaits}{above} <b>{l_payment} {id}</b>.{again}</p>",
                    id = payment.payment_id,
                    awaits = tr(ctx, "payment.awaits_second"),
                    above = esc(&above),
                    l_payment = tr(ctx, "payment"),
                ),
                *outstanding,
            )
        }
    }
}

/// The payments awaiting confirmation, each with who recorded it; a finance user gets Confirm
/// (unless they recorded it: four eyes) and Withdraw. Nothing when none await.
pub(super) fn awaiting_section(ctx: &Ctx, awaiting: &[PaymentRow]) -> String {
    if awaiting.is_empty() {
        return String::new();
    }
    let actor = ctx.actor.as_ref();
    let finance = ctx
        .principal
        .as_ref()
        .is_some_and(|p| FINANCE.contains(&p.role()));
    let mut html = format!(
        "<section class=\"card\"><h2>{}</h2><p class=\"muted\">{}</p><div class=\"scroll\"><table id=\"awaiting-payments\"><thead><tr><th>#</th><th>{}</th><th>{}</th><th class=\"num\">{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
        tr(ctx, "payment.awaiting_title"),
        tr(ctx, "payment.four_eyes"),
        tr(ctx, "payee"),
        tr(ctx, "programme"),
        tr(ctx, "amount"),
        tr(ctx, "reference"),
        tr(ctx, "payment.recorded_by"),
    );
    for p in awaiting {
        let id = p.payment_id;
        let mut actions = String::new();
        if finance {
            let recorder =
                actor.is_some_and(|a| a.same_person_as(&p.recorded_by, p.recorded_by_user_id));
            if recorder {
                let _ = write!(
                    actions,
                    "<small class=\"muted\" data-own=\"true\">{}</small> ",
                    tr(ctx, "payment.own")
                );
            } else {
                actions += &action_button(ctx, id, "confirm", "");
            }
            actions += &action_button(ctx, id, "withdraw", "secondary");
        }
        let _ = write!(
            html,
            "<tr data-payment=\"{id}\"><td>{id}</td><td>{payee}</td><td>{programme}</td><td class=\"num\">{amount}</td><td>{reference}</td><td class=\"person\">{by}<br><small>{at}</small></td><td>{actions}</td></tr>",
            payee = esc(&p.payee),
            programme = esc(&p.programme),
            amount = esc(&cny(Fen(p.amount_fen))),
            reference = esc(&p.reference),
            by = esc(&p.recorded_by),
            at = esc(&shanghai_time(&p.recorded_at)),
        );
    }
    html.push_str("</tbody></table></div></section>");
    html
}

fn action_button(ctx: &Ctx, payment_id: i64, action: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/finance/payments/{payment_id}/{action}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" id=\"{action}-payment-{payment_id}\" class=\"{class}\">{}</button></form>",
        esc(&ctx.csrf),
        tr(ctx, &format!("payment.{action}"))
    )
}

/// A payment number from the path.
pub(super) fn payment_id_of(text: &str) -> Result<i64, ConsoleError> {
    text.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| {
        ConsoleError::field(
            "payment",
            Code::Invalid,
            format!("{text:?} is not a payment number"),
        )
    })
}

/// Confirms (`confirm`) or withdraws (`withdraw`) a payment awaiting confirmation.
pub(super) async fn payment_action(
    console: &Arc<Console>,
    ctx: &Ctx,
    payment_id: i64,
    action: &str,
) -> Result<(), ConsoleError> {
    let actor = ctx.actor.clone().expect("signed in");
    let confirm = action == "confirm";
    console
        .store(move |s| {
            if confirm {
                suanli_app::ledger::confirm_payment(s, payment_id, &actor)
            } else {
                suanli_app::ledger::withdraw_payment(s, payment_id, &actor)
            }
        })
        .await?
        .map_err(|e| settle_error(e, "payment"))?;
    Ok(())
}
