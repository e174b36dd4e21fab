//! Usage records: parsing from text fields, validation against the registry (R2, R3), and the
//! fiscal period a record belongs to (R6: Asia/Shanghai time, by the record's end).
//! The CSV importer, `suanli simulate` and gRPC ingest all validate through [`validate`].

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset};
use rust_decimal::Decimal;

use crate::money::{Fen, MoneyError, parse_decimal};
use crate::registry::{Class, Registry};

/// Asia/Shanghai is UTC+8 all year (China has had no daylight saving time since 1991), so a
/// fixed offset is exact for every date this system can see.
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// A calendar month of a fiscal year in Asia/Shanghai time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub year: i32,
    pub month: u32,
}

impl Period {
    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Period> {
        let (y, m) = text.trim().split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let year: i32 = y.parse().ok()?;
        let month: u32 = m.parse().ok()?;
        (1..=12).contains(&month).then_some(Period { year, month })
    }

    /// The period holding an instant, in Asia/Shanghai time.
    pub fn of_instant(at: DateTime<FixedOffset>) -> Period {
        let local = at.with_timezone(&shanghai());
        Period {
            year: local.year(),
            month: local.month(),
        }
    }

    /// Periods of the same fiscal year before this one, in order.
    pub fn earlier_in_year(self) -> impl Iterator<Item = Period> {
        (1..self.month).map(move |month| Period {
            year: self.year,
            month,
        })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A usage record as posted by a provider: what it charged a beneficiary for a SKU over a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRecord {
    pub provider: String,
    pub record_id: String,
    pub beneficiary: String,
    pub sku: String,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    /// In the SKU's unit; exact decimal.
    pub quantity: Decimal,
    /// The contract amount actually incurred (R2), the subsidy base.
    pub amount: Fen,
}

impl UsageRecord {
    /// Same content: what makes a resend a duplicate rather than a conflict. Times compare as
    /// instants and decimals by value, so "+08:00" vs "Z" spellings of one instant agree.
    pub fn same_content(&self, other: &UsageRecord) -> bool {
        self.provider == other.provider
            && self.record_id == other.record_id
            && self.beneficiary == other.beneficiary
            && self.sku == other.sku
            && self.start == other.start
            && self.end == other.end
            && self.quantity == other.quantity
            && self.amount == other.amount
    }

    pub fn period(&self) -> Period {
        Period::of_instant(self.end)
    }
}

/// Why a record is refused. `code` is stable and machine-readable; `field` names the offending
/// field; `message` explains in one lowercase sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub field: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectCode {
    MissingField,
    InvalidField,
    UnknownProvider,
    UnknownBeneficiary,
    UnknownSku,
    SkuNotOfProvider,
    EndNotAfterStart,
    NegativeAmount,
    AmountPrecision,
    NegativeQuantity,
    AboveListPrice,
    OverCapacity,
    Conflict,
    AmountOutOfRange,
    QuantityOutOfRange,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::UnknownProvider => "unknown_provider",
            RejectCode::UnknownBeneficiary => "unknown_beneficiary",
            RejectCode::UnknownSku => "unknown_sku",
            RejectCode::SkuNotOfProvider => "sku_not_of_provider",
            RejectCode::EndNotAfterStart => "end_not_after_start",
            RejectCode::NegativeAmount => "negative_amount",
            RejectCode::AmountPrecision => "amount_precision",
            RejectCode::NegativeQuantity => "negative_quantity",
            RejectCode::AboveListPrice => "above_list_price",
            RejectCode::OverCapacity => "over_capacity",
            RejectCode::Conflict => "conflict",
            RejectCode::AmountOutOfRange => "amount_out_of_range",
            RejectCode::QuantityOutOfRange => "quantity_out_of_range",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

fn reject(code: RejectCode, field: &'static str, message: String) -> Rejection {
    Rejection {
        code,
        field,
        message,
    }
}

/// The text fields of a record as they arrive in a CSV row.
#[derive(Clone, Copy, Debug)]
pub struct UsageFields<'a> {
    pub provider: &'a str,
    pub record_id: &'a str,
    pub beneficiary: &'a str,
    pub sku: &'a str,
    pub start: &'a str,
    pub end: &'a str,
    pub quantity: &'a str,
    pub amount: &'a str,
}

/// Upper bound on id lengths: ids are keys, not documents.
pub const ID_BYTES_MAX: usize = 128;

/// Upper bound on one record's amount: 10^13 fen, 100 billion CNY. No single bill for compute
/// comes near it (a year of ten thousand accelerators at 100 CNY an hour is under 10^12 fen),
/// and it keeps every sum of amounts far from `i64::MAX` (about 9.2 × 10^18 fen): a beneficiary
/// would need over 900,000 records at this bound in one month before a monthly total overflows.
pub const AMOUNT_FEN_MAX: i64 = 10_000_000_000_000;

/// Upper bound on the amounts one provider's accepted records may add up to in one month (the
/// period of their end, R6): 10^15 fen, 10 trillion CNY, a hundred records at
/// [`AMOUNT_FEN_MAX`] and far above what any data centre bills in a month. A record that would
/// pass it is `amount_out_of_range`. The bound keeps every total the settlement forms within
/// 64 bits whatever a provider posts: without it, a million records at the bound of one record
/// would overflow their beneficiary's monthly total, and that total is read with everyone
/// else's. With it, a programme-year's totals stay below `i64::MAX` for up to 768 providers.
pub const PROVIDER_MONTH_FEN_MAX: i64 = 1_000_000_000_000_000;

/// Upper bound on one record's quantity, in the SKU's unit: 10^12 (a million accelerators for a
/// million hours, or a trillion of the smallest token units). Capacity and accrual sums add
/// quantities as 96-bit decimals, so the bound keeps them exact for any realistic number of
/// records.
pub fn quantity_max() -> Decimal {
    Decimal::from(1_000_000_000_000_i64)
}

/// The record id as it may appear in a message: at most [`ID_BYTES_MAX`] characters, so a
/// hostile id cannot make a rejection message long. `{:?}` escapes control characters.
fn shown_id(record_id: &str) -> String {
    let id = record_id.trim();
    match id.char_indices().nth(ID_BYTES_MAX) {
        Some((end, _)) => format!("{:?}…", &id[..end]),
        None => format!("{id:?}"),
    }
}

/// Prefixes a rejection's message with the record it is about, so every message names both
/// the record and the field.
fn of_record(record_id: &str, mut rejection: Rejection) -> Rejection {
    rejection.message = format!("record {}: {}", shown_id(record_id), rejection.message);
    rejection
}

fn id_field(field: &'static str, value: &str) -> Result<String, Rejection> {
    let v = value.trim();
    if v.is_empty() {
        return Err(reject(
            RejectCode::MissingField,
            field,
            format!("{field} is empty"),
        ));
    }
    if v.len() > ID_BYTES_MAX {
        return Err(reject(
            RejectCode::InvalidField,
            field,
            format!("{field} is longer than {ID_BYTES_MAX} bytes"),
        ));
    }
    // NUL cannot be stored in PostgreSQL text, and no control character belongs in a key that
    // people read in statements and logs; both backends refuse it the same way here.
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(reject(
            RejectCode::InvalidField,
            field,
            format!(
                "{field} contains the control character U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(v.to_owned())
}

fn time_field(field: &'static str, value: &str) -> Result<DateTime<FixedOffset>, Rejection> {
    let v = value.trim();
    if v.is_empty() {
        return Err(reject(
            RejectCode::MissingField,
            field,
            format!("{field} is empty"),
        ));
    }
    DateTime::parse_from_rfc3339(v).map_err(|e| {
        reject(
            RejectCode::InvalidField,
            field,
            format!("{field} {v:?} is not an RFC 3339 time with offset ({e})"),
        )
    })
}

/// Parses the text fields of one record: syntax only, no registry. Every rejection's message
/// names the record.
pub fn parse_fields(fields: UsageFields<'_>) -> Result<UsageRecord, Rejection> {
    parse_fields_of(fields).map_err(|r| of_record(fields.record_id, r))
}

fn parse_fields_of(fields: UsageFields<'_>) -> Result<UsageRecord, Rejection> {
    let provider = id_field("provider", fields.provider)?;
    let record_id = id_field("record_id", fields.record_id)?;
    let beneficiary = id_field("beneficiary", fields.beneficiary)?;
    let sku = id_field("sku", fields.sku)?;
    let start = time_field("start", fields.start)?;
    let end = time_field("end", fields.end)?;
    let q = fields.quantity.trim();
    if q.is_empty() {
        return Err(reject(
            RejectCode::MissingField,
            "quantity",
            "quantity is empty".into(),
        ));
    }
    let quantity = parse_decimal(q).ok_or_else(|| {
        reject(
            RejectCode::InvalidField,
            "quantity",
            format!("quantity {q:?} is not a decimal number"),
        )
    })?;
    let a = fields.amount.trim();
    if a.is_empty() {
        return Err(reject(
            RejectCode::MissingField,
            "amount",
            "amount is empty".into(),
        ));
    }
    let amount = Fen::parse_cny(a).map_err(|e| match e {
        MoneyError::Negative(_) => reject(
            RejectCode::NegativeAmount,
            "amount",
            format!("amount {a} is negative"),
        ),
        MoneyError::TooPrecise(_) => reject(
            RejectCode::AmountPrecision,
            "amount",
            format!("amount {a} has more than 2 decimals"),
        ),
        other => reject(
            RejectCode::InvalidField,
            "amount",
            format!("amount: {other}"),
        ),
    })?;
    Ok(UsageRecord {
        provider,
        record_id,
        beneficiary,
        sku,
        start,
        end,
        quantity,
        amount,
    })
}

/// Builds a record from typed fields (as they arrive over gRPC): the same id, quantity and
/// missing-time checks as [`parse_fields`], without going through text for times and money.
/// Every rejection's message names the record.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field of the record"
)]
pub fn from_typed(
    provider: &str,
    record_id: &str,
    beneficiary: &str,
    sku: &str,
    start: Option<DateTime<FixedOffset>>,
    end: Option<DateTime<FixedOffset>>,
    quantity: &str,
    amount: Fen,
) -> Result<UsageRecord, Rejection> {
    from_typed_of(
        provider,
        record_id,
        beneficiary,
        sku,
        start,
        end,
        quantity,
        amount,
    )
    .map_err(|r| of_record(record_id, r))
}

#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field of the record"
)]
fn from_typed_of(
    provider: &str,
    record_id: &str,
    beneficiary: &str,
    sku: &str,
    start: Option<DateTime<FixedOffset>>,
    end: Option<DateTime<FixedOffset>>,
    quantity: &str,
    amount: Fen,
) -> Result<UsageRecord, Rejection> {
    let provider = id_field("provider", provider)?;
    let record_id = id_field("record_id", record_id)?;
    let beneficiary = id_field("beneficiary", beneficiary)?;
    let sku = id_field("sku", sku)?;
    let start = start.ok_or_else(|| {
        reject(
            RejectCode::MissingField,
            "start",
            "start is missing or out of range".into(),
        )
    })?;
    let end = end.ok_or_else(|| {
        reject(
            RejectCode::MissingField,
            "end",
            "end is missing or out of range".into(),
        )
    })?;
    let q = quantity.trim();
    if q.is_empty() {
        return Err(reject(
            RejectCode::MissingField,
            "quantity",
            "quantity is empty".into(),
        ));
    }
    let quantity = parse_decimal(q).ok_or_else(|| {
        reject(
            RejectCode::InvalidField,
            "quantity",
            format!("quantity {q:?} is not a decimal number"),
        )
    })?;
    Ok(UsageRecord {
        provider,
        record_id,
        beneficiary,
        sku,
        start,
        end,
        quantity,
        amount,
    })
}

/// Nanoseconds in an hour, for the capacity check without division.
const HOUR_NANOS: i64 = 3_600_000_000_000;

/// Validates a parsed record against the registry (R2, R3) and the bounds of amounts and
/// quantities, and returns its classification, which comes from the SKU and never from the
/// record. Every rejection's message names the record.
pub fn validate(registry: &Registry, record: &UsageRecord) -> Result<Class, Rejection> {
    validate_of(registry, record).map_err(|r| of_record(&record.record_id, r))
}

fn validate_of(registry: &Registry, record: &UsageRecord) -> Result<Class, Rejection> {
    if registry.provider(&record.provider).is_none() {
        return Err(reject(
            RejectCode::UnknownProvider,
            "provider",
            format!("provider {:?} is not in the registry", record.provider),
        ));
    }
    if registry.beneficiary(&record.beneficiary).is_none() {
        return Err(reject(
            RejectCode::UnknownBeneficiary,
            "beneficiary",
            format!(
                "beneficiary {:?} is not in the registry",
                record.beneficiary
            ),
        ));
    }
    let Some(sku) = registry.sku(&record.sku) else {
        return Err(reject(
            RejectCode::UnknownSku,
            "sku",
            format!("sku {:?} is not in the registry", record.sku),
        ));
    };
    if sku.provider != record.provider {
        return Err(reject(
            RejectCode::SkuNotOfProvider,
            "sku",
            format!(
                "sku {:?} belongs to provider {:?}, not {:?}",
                sku.id, sku.provider, record.provider
            ),
        ));
    }
    if record.end <= record.start {
        return Err(reject(
            RejectCode::EndNotAfterStart,
            "end",
            format!(
                "end {} is not after start {}",
                record.end.to_rfc3339(),
                record.start.to_rfc3339()
            ),
        ));
    }
    if record.quantity.is_sign_negative() && !record.quantity.is_zero() {
        return Err(reject(
            RejectCode::NegativeQuantity,
            "quantity",
            format!("quantity {} is negative", record.quantity),
        ));
    }
    if record.amount.0 < 0 {
        return Err(reject(
            RejectCode::NegativeAmount,
            "amount",
            format!("amount {} is negative", record.amount),
        ));
    }
    if record.amount.0 > AMOUNT_FEN_MAX {
        return Err(reject(
            RejectCode::AmountOutOfRange,
            "amount",
            format!(
                "amount {} is above the largest amount of one record, {}",
                record.amount,
                Fen(AMOUNT_FEN_MAX)
            ),
        ));
    }
    if record.quantity > quantity_max() {
        return Err(reject(
            RejectCode::QuantityOutOfRange,
            "quantity",
            format!(
                "quantity {} is above the largest quantity of one record, {}",
                record.quantity,
                quantity_max()
            ),
        ));
    }
    if let Some(price) = sku.list_price {
        // R2: amount ≤ quantity × list_price + 0.01.
        let limit = record
            .quantity
            .checked_mul(price)
            .and_then(|l| l.checked_add(Decimal::new(1, 2)));
        if limit.is_none_or(|limit| record.amount.to_cny() > limit) {
            return Err(reject(
                RejectCode::AboveListPrice,
                "amount",
                format!(
                    "amount {} is above quantity {} × list price {} of sku {:?}",
                    record.amount, record.quantity, price, sku.id
                ),
            ));
        }
    }
    if let Some(capacity) = sku.capacity {
        // R3: quantity ≤ capacity × hours, compared as quantity × hour ≤ capacity × duration.
        let nanos = (record.end - record.start)
            .num_nanoseconds()
            .unwrap_or(i64::MAX);
        let lhs = record.quantity.checked_mul(Decimal::from(HOUR_NANOS));
        let rhs = capacity.checked_mul(Decimal::from(nanos));
        let over = match (lhs, rhs) {
            (Some(l), Some(r)) => l > r,
            (None, _) => true,
            (Some(_), None) => false,
        };
        if over {
            return Err(reject(
                RejectCode::OverCapacity,
                "quantity",
                format!(
                    "quantity {} is above capacity {} per hour of sku {:?} over {} hours",
                    record.quantity,
                    capacity,
                    sku.id,
                    Decimal::from(nanos) / Decimal::from(HOUR_NANOS)
                ),
            ));
        }
    }
    Ok(sku.class)
}
