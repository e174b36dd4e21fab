//! Why the console refused something, as stable codes: one enum, each code's text in both
//! languages in `i18n.rs` (`code.<code>`). Use-case errors carry English detail for the API and
//! the logs; the console shows the code's text in the page's language, next to the field.

use suanli_app::settlement::SettleError;

/// A refusal's stable code. The page shows `code.<as_str>` from the string table, and carries
/// the code in `data-code` for scripts and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    // Forms.
    Missing,
    Empty,
    TooLong,
    NotUtf8,
    Repeated,
    BadEscape,
    FormTooLarge,
    // Values.
    AmountNotANumber,
    AmountNotPositive,
    PeriodNotAMonth,
    DayNotADate,
    YearNotAYear,
    RunNotANumber,
    // Sessions and roles.
    SignInAgain,
    CsrfMissing,
    CsrfMismatch,
    RoleRefused,
    OtherParty,
    EnrolFirst,
    NotYourSession,
    // Sign-in and enrolment.
    CodeWrong,
    EnrolReload,
    EnrolWithPassword,
    TokenUnknown,
    TokenRevoked,
    TokenExpired,
    TokenUserDisabled,
    // Settlement runs.
    ProgrammeNotFound,
    PeriodOutsideYear,
    RunExists,
    EarlierRunOpen,
    PeriodPosted,
    NothingToSettle,
    RunNotFound,
    RunNotOpen,
    RunNotApproved,
    RunPosted,
    RunCancelled,
    RunStale,
    FourEyes,
    PaymentFourEyes,
    RunChangedSinceConfirmed,
    RederivePostedOnly,
    // Payments.
    PayeeOwedNothing,
    PayeeNotInRun,
    ProgrammeOwesNothing,
    SeveralProgrammes,
    AmountExceedsOwed,
    ReferenceReused,
    PaymentChangedSinceConfirmed,
    // Usage records.
    RecordNotFound,
    RecordChangedSinceConfirmed,
    // Lists.
    UnknownParameter,
    NotAChoice,
    PageNotANumber,
    PageBeyondEnd,
    PageTooDeep,
    CursorInvalid,
    PerOutOfRange,
    RangeReversed,
    ExportTooLarge,
    // People.
    SubjectNeeded,
    SubjectNotTaken,
    PasswordsDiffer,
    PasswordWeak,
    NotYourself,
    ConfirmFirst,
    // Anything else.
    NoPage,
    MethodNotServed,
    NotFound,
    Invalid,
    Conflict,
    Unavailable,
    /// The server has just started and is still preparing the balance figures.
    Preparing,
}

impl Code {
    /// Every code, for the test that each has its text in both languages.
    pub const ALL: [Code; 74] = [
        Code::Missing,
        Code::Empty,
        Code::TooLong,
        Code::NotUtf8,
        Code::Repeated,
        Code::BadEscape,
        Code::FormTooLarge,
        Code::AmountNotANumber,
        Code::AmountNotPositive,
        Code::PeriodNotAMonth,
        Code::DayNotADate,
        Code::YearNotAYear,
        Code::RunNotANumber,
        Code::SignInAgain,
        Code::CsrfMissing,
        Code::CsrfMismatch,
        Code::RoleRefused,
        Code::OtherParty,
        Code::EnrolFirst,
        Code::NotYourSession,
        Code::CodeWrong,
        Code::EnrolReload,
        Code::EnrolWithPassword,
        Code::TokenUnknown,
        Code::TokenRevoked,
        Code::TokenExpired,
        Code::TokenUserDisabled,
        Code::ProgrammeNotFound,
        Code::PeriodOutsideYear,
        Code::RunExists,
        Code::EarlierRunOpen,
        Code::PeriodPosted,
        Code::NothingToSettle,
        Code::RunNotFound,
        Code::RunNotOpen,
        Code::RunNotApproved,
        Code::RunPosted,
        Code::RunCancelled,
        Code::RunStale,
        Code::FourEyes,
        Code::PaymentFourEyes,
        Code::RunChangedSinceConfirmed,
        Code::RederivePostedOnly,
        Code::PayeeOwedNothing,
        Code::PayeeNotInRun,
        Code::ProgrammeOwesNothing,
        Code::SeveralProgrammes,
        Code::AmountExceedsOwed,
        Code::ReferenceReused,
        Code::PaymentChangedSinceConfirmed,
        Code::RecordNotFound,
        Code::RecordChangedSinceConfirmed,
        Code::UnknownParameter,
        Code::NotAChoice,
        Code::PageNotANumber,
        Code::PageBeyondEnd,
        Code::PageTooDeep,
        Code::CursorInvalid,
        Code::PerOutOfRange,
        Code::RangeReversed,
        Code::ExportTooLarge,
        Code::NoPage,
        Code::MethodNotServed,
        Code::NotFound,
        Code::Invalid,
        Code::Conflict,
        Code::Unavailable,
        Code::Preparing,
        Code::SubjectNeeded,
        Code::SubjectNotTaken,
        Code::PasswordsDiffer,
        Code::PasswordWeak,
        Code::NotYourself,
        Code::ConfirmFirst,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::SubjectNeeded => "subject_needed",
            Code::SubjectNotTaken => "subject_not_taken",
            Code::PasswordsDiffer => "passwords_differ",
            Code::PasswordWeak => "password_weak",
            Code::NotYourself => "not_yourself",
            Code::ConfirmFirst => "confirm_first",
            Code::Missing => "missing",
            Code::Empty => "empty",
            Code::TooLong => "too_long",
            Code::NotUtf8 => "not_utf8",
            Code::Repeated => "repeated",
            Code::BadEscape => "bad_escape",
            Code::FormTooLarge => "form_too_large",
            Code::AmountNotANumber => "amount_not_a_number",
            Code::AmountNotPositive => "amount_not_positive",
            Code::PeriodNotAMonth => "period_not_a_month",
            Code::DayNotADate => "day_not_a_date",
            Code::YearNotAYear => "year_not_a_year",
            Code::RunNotANumber => "run_not_a_number",
            Code::SignInAgain => "sign_in_again",
            Code::CsrfMissing => "csrf_missing",
            Code::CsrfMismatch => "csrf_mismatch",
            Code::RoleRefused => "role_refused",
            Code::OtherParty => "other_party",
            Code::EnrolFirst => "enrol_first",
            Code::NotYourSession => "not_your_session",
            Code::CodeWrong => "code_wrong",
            Code::EnrolReload => "enrol_reload",
            Code::EnrolWithPassword => "enrol_with_password",
            Code::TokenUnknown => "token_unknown",
            Code::TokenRevoked => "token_revoked",
            Code::TokenExpired => "token_expired",
            Code::TokenUserDisabled => "token_user_disabled",
            Code::ProgrammeNotFound => "programme_not_found",
            Code::PeriodOutsideYear => "period_outside_year",
            Code::RunExists => "run_exists",
            Code::EarlierRunOpen => "earlier_run_open",
            Code::PeriodPosted => "period_posted",
            Code::NothingToSettle => "nothing_to_settle",
            Code::RunNotFound => "run_not_found",
            Code::RunNotOpen => "run_not_open",
            Code::RunNotApproved => "run_not_approved",
            Code::RunPosted => "run_posted",
            Code::RunCancelled => "run_cancelled",
            Code::RunStale => "run_stale",
            Code::FourEyes => "four_eyes",
            Code::PaymentFourEyes => "payment_four_eyes",
            Code::RunChangedSinceConfirmed => "run_changed_since_confirmed",
            Code::RederivePostedOnly => "rederive_posted_only",
            Code::PayeeOwedNothing => "payee_owed_nothing",
            Code::PayeeNotInRun => "payee_not_in_run",
            Code::ProgrammeOwesNothing => "programme_owes_nothing",
            Code::SeveralProgrammes => "several_programmes",
            Code::AmountExceedsOwed => "amount_exceeds_owed",
            Code::ReferenceReused => "reference_reused",
            Code::PaymentChangedSinceConfirmed => "payment_changed_since_confirmed",
            Code::RecordNotFound => "record_not_found",
            Code::RecordChangedSinceConfirmed => "record_changed_since_confirmed",
            Code::UnknownParameter => "unknown_parameter",
            Code::NotAChoice => "not_a_choice",
            Code::PageNotANumber => "page_not_a_number",
            Code::PageBeyondEnd => "page_beyond_end",
            Code::PageTooDeep => "page_too_deep",
            Code::CursorInvalid => "cursor_invalid",
            Code::PerOutOfRange => "per_out_of_range",
            Code::RangeReversed => "range_reversed",
            Code::ExportTooLarge => "export_too_large",
            Code::NoPage => "no_page",
            Code::MethodNotServed => "method_not_served",
            Code::NotFound => "not_found",
            Code::Invalid => "invalid",
            Code::Conflict => "conflict",
            Code::Unavailable => "unavailable",
            Code::Preparing => "preparing",
        }
    }

    /// The code of the authenticator's refusal of a token (`token revoked`, …).
    pub fn of_token_refusal(reason: &str) -> Code {
        if reason.contains("revoked") {
            Code::TokenRevoked
        } else if reason.contains("expired") || reason.contains("expiry") {
            Code::TokenExpired
        } else if reason.contains("disabled") {
            Code::TokenUserDisabled
        } else {
            Code::TokenUnknown
        }
    }

    /// The code of a use-case refusal. The use cases name their refusals in English for the
    /// API; this reads them once, here, so that no page shows that English.
    pub fn of_settle(e: &SettleError) -> Code {
        let has = |m: &str, parts: &[&str]| parts.iter().any(|p| m.contains(p));
        match e {
            SettleError::NotFound(m) if has(m, &["does not exist"]) && m.starts_with("run ") => {
                Code::RunNotFound
            }
            SettleError::NotFound(m) if has(m, &["programme"]) => Code::ProgrammeNotFound,
            SettleError::NotFound(_) => Code::NotFound,
            SettleError::InvalidArgument(m) if has(m, &["is not YYYY-MM"]) => Code::PeriodNotAMonth,
            SettleError::InvalidArgument(m) if has(m, &["fiscal year"]) => Code::PeriodOutsideYear,
            SettleError::InvalidArgument(m) if has(m, &["must be positive"]) => {
                Code::AmountNotPositive
            }
            SettleError::InvalidArgument(m) if has(m, &["reference is empty"]) => Code::Empty,
            SettleError::InvalidArgument(m) if has(m, &["several programmes"]) => {
                Code::SeveralProgrammes
            }
            SettleError::InvalidArgument(m) if has(m, &["owes payee"]) => {
                Code::ProgrammeOwesNothing
            }
            SettleError::InvalidArgument(_) => Code::Invalid,
            SettleError::FailedPrecondition(m) if has(m, &["only an open run"]) => Code::RunNotOpen,
            SettleError::FailedPrecondition(m) if has(m, &["only an approved run"]) => {
                Code::RunNotApproved
            }
            SettleError::FailedPrecondition(m) if has(m, &["posted run cannot"]) => Code::RunPosted,
            SettleError::FailedPrecondition(m) if has(m, &["is cancelled"]) => Code::RunCancelled,
            SettleError::FailedPrecondition(m)
                if has(m, &["posted in order", "post or cancel it first"]) =>
            {
                Code::EarlierRunOpen
            }
            SettleError::FailedPrecondition(m) if has(m, &["would go back"]) => Code::PeriodPosted,
            SettleError::FailedPrecondition(m) if has(m, &["nothing to settle"]) => {
                Code::NothingToSettle
            }
            SettleError::FailedPrecondition(m)
                if has(m, &["computed before another run", "changed while posting"]) =>
            {
                Code::RunStale
            }
            SettleError::FailedPrecondition(m) if has(m, &["exceeds"]) => Code::AmountExceedsOwed,
            SettleError::FailedPrecondition(m) if has(m, &["nothing is owed"]) => {
                Code::PayeeOwedNothing
            }
            SettleError::FailedPrecondition(_) => Code::Conflict,
            SettleError::AlreadyExists(m) if has(m, &["reference"]) => Code::ReferenceReused,
            SettleError::AlreadyExists(m) if has(m, &["one open run"]) => Code::RunExists,
            SettleError::AlreadyExists(_) => Code::Conflict,
            SettleError::PermissionDenied(m)
                if has(m, &["four eyes"]) && m.starts_with("payment ") =>
            {
                Code::PaymentFourEyes
            }
            SettleError::PermissionDenied(m) if has(m, &["four eyes"]) => Code::FourEyes,
            SettleError::PermissionDenied(_) => Code::RoleRefused,
            SettleError::Store(_) | SettleError::Unavailable(_) => Code::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Codes are unique and every code has its text in both languages.
    #[test]
    fn every_code_is_named_and_translated() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code:?}");
            let key = format!("code.{}", code.as_str());
            for lang in [super::super::Lang::Zh, super::super::Lang::En] {
                assert!(
                    !super::super::i18n::t(lang, &key).is_empty(),
                    "{key} has no {lang:?} text"
                );
            }
        }
        assert_eq!(
            Code::of_settle(&SettleError::PermissionDenied(
                "run 1 was created by a (a); another finance user must approve it (four eyes)"
                    .into()
            )),
            Code::FourEyes
        );
        assert_eq!(
            Code::of_settle(&SettleError::PermissionDenied(
                "payment 1 was recorded by a (a); another finance user must confirm it (four eyes)"
                    .into()
            )),
            Code::PaymentFourEyes
        );
        assert_eq!(
            Code::of_settle(&SettleError::FailedPrecondition(
                "payment ¥2.00 to dc-a exceeds the ¥1.00 owed by p".into()
            )),
            Code::AmountExceedsOwed
        );
    }
}
