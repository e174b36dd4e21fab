//! Payments that need a second person (`ledger.payment_confirm_above_fen`) on the finance
//! page: the list of those awaiting confirmation with who recorded them, the confirm and
//! withdraw actions (the same use cases as `LedgerService`), and what recording one says.

use std::sync::Arc;

use askama::Template;
use suanli_app::ledger::Recorded;
use suanli_domain::money::Fen;
use suanli_store::payments::PaymentRow;

use super::codes::Code;
use super::view::{Markup, View, view};
use super::{Console, ConsoleError, Ctx, FINANCE, settle_error};

#[derive(Template)]
#[template(path = "payment_threshold.html")]
struct Threshold<'a> {
    ctx: &'a Ctx,
    confirm_above: Option<Fen>,
}

/// Under the payment form: which amounts need a second person, when the server says so.
pub(super) fn threshold_hint(ctx: &Ctx, confirm_above: Option<Fen>) -> Markup {
    Markup::render(&Threshold { ctx, confirm_above })
}

#[derive(Template)]
#[template(path = "payment_result.html")]
struct RecordedResult<'a> {
    ctx: &'a Ctx,
    /// The journal that booked it, when booked.
    journal: i64,
    /// The payment's number, when it awaits a second person.
    awaiting: Option<i64>,
    duplicate: bool,
    confirm_above: Option<Fen>,
}

/// The result line of recording a payment, and what the programme owes the payee now.
pub(super) fn recorded_result(
    ctx: &Ctx,
    recorded: &Recorded,
    confirm_above: Option<Fen>,
) -> (Markup, Fen) {
    let (journal, awaiting, outstanding) = match recorded {
        Recorded::Booked {
            journal_id,
            outstanding,
            ..
        } => (*journal_id, None, *outstanding),
        Recorded::Awaiting {
            payment,
            outstanding,
            ..
        } => (0, Some(payment.payment_id), *outstanding),
    };
    (
        Markup::render(&RecordedResult {
            ctx,
            journal,
            awaiting,
            duplicate: recorded.duplicate(),
            confirm_above,
        }),
        outstanding,
    )
}

#[derive(Template)]
#[template(path = "payments_awaiting.html")]
struct Awaiting<'a> {
    ctx: &'a Ctx,
    awaiting: &'a [PaymentRow],
    /// Confirm and withdraw are offered to the finance role only.
    finance: bool,
    /// The current registry, for payee and programme names.
    registry: Option<Arc<suanli_domain::Registry>>,
}

impl Awaiting<'_> {
    /// The signed-in person recorded `p`: four eyes, another must confirm it.
    fn recorded_by_me(&self, p: &PaymentRow) -> bool {
        self.ctx
            .actor
            .as_ref()
            .is_some_and(|a| a.same_person_as(&p.recorded_by, p.recorded_by_user_id))
    }
}

view!(Threshold, RecordedResult);
view!(registry: Awaiting);

/// The payments awaiting confirmation, each with who recorded it; a finance user gets Confirm
/// (unless they recorded it: four eyes) and Withdraw. Nothing when none await.
pub(super) fn awaiting_section(
    ctx: &Ctx,
    awaiting: &[PaymentRow],
    registry: Option<Arc<suanli_domain::Registry>>,
) -> Markup {
    let finance = ctx
        .principal
        .as_ref()
        .is_some_and(|p| FINANCE.contains(&p.role()));
    Markup::render(&Awaiting {
        ctx,
        awaiting,
        finance,
        registry,
    })
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
