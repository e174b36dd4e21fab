//! Reading the files users hand to the CLI: the registry TOML, usage CSV, and prior-payments
//! CSV (for `simulate --prior` and, as opening balances, `ledger import-opening`).
//! Parsing and validation are the domain's; this module only reads and names file positions.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use suanli_domain::Registry;
use suanli_domain::intake::Row;
use suanli_domain::money::Fen;
use suanli_domain::settlement::Prior;
use suanli_domain::usage::{Period, RejectCode, Rejection, UsageFields, parse_fields};

/// Loads and validates a registry file; warnings (unknown keys) go to stderr.
pub fn load_registry(path: &Path) -> anyhow::Result<(PathBuf, Registry)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read registry {}", path.display()))?;
    let (registry, warnings) = Registry::from_toml(&path.display().to_string(), &text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in warnings {
        eprintln!("warning: {}: {}: {}", path.display(), w.path, w.reason);
    }
    Ok((path.to_owned(), registry))
}

pub const USAGE_COLUMNS: [&str; 8] = [
    "provider",
    "record_id",
    "beneficiary",
    "sku",
    "start",
    "end",
    "quantity",
    "amount",
];

/// Column positions of a CSV header, by name; every column in `wanted` must be present.
fn columns<const N: usize>(
    path: &Path,
    header: &csv::StringRecord,
    wanted: [&str; N],
) -> anyhow::Result<[usize; N]> {
    let mut positions = [0usize; N];
    let mut missing = Vec::new();
    for (slot, name) in positions.iter_mut().zip(wanted) {
        match header
            .iter()
            .position(|h| h.trim().trim_start_matches('\u{feff}') == name)
        {
            Some(p) => *slot = p,
            None => missing.push(name),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}: header lacks column(s) {}; expected {}",
            path.display(),
            missing.join(", "),
            wanted.join(",")
        );
    }
    Ok(positions)
}

/// The text encodings a CSV may come in. Excel on Chinese Windows saves "CSV" as GBK (code
/// page 936); GB18030 is its superset, and GBK text decodes the same with either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    #[value(name = "utf-8")]
    Utf8,
    #[value(name = "gbk")]
    Gbk,
    #[value(name = "gb18030")]
    Gb18030,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Gbk => "GBK",
            Encoding::Gb18030 => "GB18030",
        }
    }

    /// One line decoded, or None when its bytes are not valid in this encoding.
    fn decode_line(self, bytes: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
        let encoding = match self {
            Encoding::Utf8 => return std::str::from_utf8(bytes).ok().map(Into::into),
            Encoding::Gbk => encoding_rs::GBK,
            Encoding::Gb18030 => encoding_rs::GB18030,
        };
        encoding.decode_without_bom_handling_and_without_replacement(bytes)
    }
}

/// Reads a CSV file as text: UTF-8 (a byte order mark is dropped) unless `forced` names
/// another encoding; without `forced`, bytes that are not UTF-8 are read as GB18030, said on
/// stderr. A file that is not valid in the encoding is refused whole, naming the first bad
/// line, so no statement or import is made from half a file.
pub fn read_text(path: &Path, forced: Option<Encoding>) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let encoding = match forced {
        Some(e) => e,
        None if std::str::from_utf8(body).is_ok() => Encoding::Utf8,
        None => Encoding::Gb18030,
    };
    // A line break (0x0A) never occurs inside a UTF-8, GBK or GB18030 sequence, so the text
    // can be decoded line by line and the first bad line named.
    let mut text = String::with_capacity(body.len());
    for (i, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        match encoding.decode_line(line) {
            Some(decoded) => text.push_str(&decoded),
            None => bail!(
                "{}: line {}: not valid {}{}; the file was not read (save it as UTF-8, or give --encoding)",
                path.display(),
                i + 1,
                encoding.name(),
                if forced.is_some() {
                    " (as --encoding asks)"
                } else {
                    " nor UTF-8"
                }
            ),
        }
    }
    if forced.is_none() && encoding != Encoding::Utf8 {
        eprintln!("read {} as {}", path.display(), encoding.name());
    }
    Ok(text)
}

/// A usage file saved from Excel as a workbook (`.xlsx`, `.xlsm`, `.xls`, `.ods`), by its name.
fn is_xlsx(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["xlsx", "xlsm", "xls", "ods"].contains(&e.to_ascii_lowercase().as_str()))
}

/// The first sheet of a workbook as CSV text with the same header as a usage CSV, so it is
/// read and validated exactly as one. Text cells are taken as they are. A number cell is
/// written as the shortest decimal that gives back the value Excel stores (what Excel shows:
/// 30 for 30.00, 0.1 for 0.10), then parsed and checked like any amount or quantity, so a
/// number with more than 2 decimals is rejected, never rounded. A date cell has no time zone:
/// it is read as Asia/Shanghai time (+08:00), the zone usage periods are counted in.
fn xlsx_as_csv(path: &Path) -> anyhow::Result<String> {
    use calamine::{Data, Reader, open_workbook_auto};
    let mut workbook =
        open_workbook_auto(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = workbook
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{}: the workbook has no sheet", path.display()))?;
    let range = workbook
        .worksheet_range(&name)
        .with_context(|| format!("{}: cannot read sheet {name:?}", path.display()))?;
    let mut out = csv::Writer::from_writer(Vec::new());
    for (i, row) in range.rows().enumerate() {
        let mut fields = Vec::with_capacity(row.len());
        for (j, cell) in row.iter().enumerate() {
            fields.push(match cell {
                Data::Empty => String::new(),
                Data::String(text) | Data::DateTimeIso(text) | Data::DurationIso(text) => {
                    text.clone()
                }
                Data::Int(n) => n.to_string(),
                Data::Float(x) => x.to_string(),
                Data::Bool(b) => b.to_string(),
                Data::DateTime(t) => t.as_datetime().map_or_else(String::new, |t| {
                    t.format("%Y-%m-%dT%H:%M:%S+08:00").to_string()
                }),
                Data::Error(e) => bail!(
                    "{}: sheet {name:?}, row {}, column {}: the cell holds the error {e}",
                    path.display(),
                    i + 1,
                    j + 1
                ),
            });
        }
        out.write_record(&fields)?;
    }
    eprintln!("read {} as a workbook (sheet {name:?})", path.display());
    Ok(String::from_utf8(out.into_inner()?)?)
}

fn reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes())
}

/// Reads a usage CSV into rows for intake. A row with too few fields becomes a rejected row;
/// an unreadable file, one not valid in its encoding ([`read_text`]) or a bad header is an
/// error.
pub fn read_usage(path: &Path, encoding: Option<Encoding>) -> anyhow::Result<Vec<Row>> {
    let text = if is_xlsx(path) {
        xlsx_as_csv(path)?
    } else {
        read_text(path, encoding)?
    };
    let mut rdr = reader(&text);
    let header = rdr
        .headers()
        .with_context(|| format!("{}: cannot read header", path.display()))?
        .clone();
    let cols = columns(path, &header, USAGE_COLUMNS)?;
    let mut rows = Vec::new();
    let mut raw = csv::ByteRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_byte_record(&mut raw) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => bail!("{}: line {line}: {e}", path.display()),
        }
        let line = raw.position().map_or(line, |p| p.line());
        let field = |i: usize| raw.get(cols[i]).map(String::from_utf8_lossy);
        let provider = field(0).unwrap_or_default().trim().to_owned();
        let record_id = field(1).unwrap_or_default().trim().to_owned();
        let invalid = |message: String, field: &'static str| Rejection {
            code: RejectCode::InvalidField,
            field,
            message,
        };
        if raw.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue; // a blank line is not a record
        }
        let parsed = if raw.len() < header.len() {
            Err(invalid(
                format!(
                    "row has {} fields but the header has {}",
                    raw.len(),
                    header.len()
                ),
                "row",
            ))
        } else if let Some(i) = (0..8).find(|&i| std::str::from_utf8(&raw[cols[i]]).is_err()) {
            Err(invalid(
                format!("{} is not valid UTF-8", USAGE_COLUMNS[i]),
                USAGE_COLUMNS[i],
            ))
        } else {
            let text = |i: usize| std::str::from_utf8(&raw[cols[i]]).expect("checked above");
            parse_fields(UsageFields {
                provider: text(0),
                record_id: text(1),
                beneficiary: text(2),
                sku: text(3),
                start: text(4),
                end: text(5),
                quantity: text(6),
                amount: text(7),
            })
        };
        let end_period = field(5)
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e.trim()).ok())
            .map(Period::of_instant);
        rows.push(Row {
            line,
            provider,
            record_id,
            end_period,
            parsed,
        });
    }
    Ok(rows)
}

/// One row of a file of money already paid (prior payments, opening balances): its line and
/// the programme, beneficiary, provider and amount columns, trimmed.
struct PaidRow {
    line: u64,
    programme: String,
    beneficiary: String,
    provider: String,
    amount: String,
}

impl PaidRow {
    /// `path: line N: field`, to name where a problem is.
    fn at(&self, path: &Path, field: &str) -> String {
        format!("{}: line {}: {field}", path.display(), self.line)
    }

    fn amount(&self, path: &Path) -> anyhow::Result<Fen> {
        Fen::parse_cny(&self.amount)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.at(path, "amount")))
    }
}

/// Reads a file with the columns programme, beneficiary, provider, amount (in any order, more
/// columns allowed), skipping blank lines.
fn read_paid_rows(path: &Path, encoding: Option<Encoding>) -> anyhow::Result<Vec<PaidRow>> {
    let text = read_text(path, encoding)?;
    let mut rdr = reader(&text);
    let header = rdr
        .headers()
        .with_context(|| format!("{}: cannot read header", path.display()))?
        .clone();
    let cols = columns(
        path,
        &header,
        ["programme", "beneficiary", "provider", "amount"],
    )?;
    let mut rows = Vec::new();
    for record in rdr.records() {
        let record = record.with_context(|| format!("cannot read {}", path.display()))?;
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let get = |i: usize| record.get(cols[i]).unwrap_or("").trim().to_owned();
        rows.push(PaidRow {
            line: record.position().map_or(0, |p| p.line()),
            programme: get(0),
            beneficiary: get(1),
            provider: get(2),
            amount: get(3),
        });
    }
    Ok(rows)
}

/// Reads prior payments. Unlike usage, a bad prior row is an error: the file states money
/// already paid, and guessing would pass a cap.
pub fn read_prior(
    path: &Path,
    registry: &Registry,
    encoding: Option<Encoding>,
) -> anyhow::Result<Prior> {
    let mut prior = Prior::default();
    for row in read_paid_rows(path, encoding)? {
        let (programme, beneficiary, provider) = (&row.programme, &row.beneficiary, &row.provider);
        if registry.programme(programme).is_none() {
            bail!(
                "{}: unknown programme {programme:?}",
                row.at(path, "programme")
            );
        }
        if registry.beneficiary(beneficiary).is_none() {
            bail!(
                "{}: unknown beneficiary {beneficiary:?}",
                row.at(path, "beneficiary")
            );
        }
        if !provider.is_empty() && registry.provider(provider).is_none() {
            bail!(
                "{}: unknown provider {provider:?}",
                row.at(path, "provider")
            );
        }
        prior.add(programme, beneficiary, provider, row.amount(path)?);
    }
    Ok(prior)
}

/// One row of an opening-balance file: its line, beneficiary, provider (possibly empty) and
/// amount.
pub type OpeningRow = (u64, String, String, Fen);

/// Reads opening balances for `programme`: the prior-payments columns of `simulate --prior`.
/// The server checks the parties against its registry; here a bad amount, or a row of another
/// programme, refuses the whole file, naming the line, since the file states money paid.
pub fn read_opening(
    path: &Path,
    programme: &str,
    encoding: Option<Encoding>,
) -> anyhow::Result<Vec<OpeningRow>> {
    let mut rows = Vec::new();
    for row in read_paid_rows(path, encoding)? {
        if row.programme != programme {
            bail!(
                "{}: {:?} is not --programme {programme:?}; an opening file holds one programme",
                row.at(path, "programme"),
                row.programme
            );
        }
        if row.beneficiary.is_empty() {
            bail!("{}: empty", row.at(path, "beneficiary"));
        }
        let amount = row.amount(path)?;
        rows.push((row.line, row.beneficiary, row.provider, amount));
    }
    if rows.is_empty() {
        bail!("{}: no rows below the header", path.display());
    }
    Ok(rows)
}
