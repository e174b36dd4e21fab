//! The registry: programmes, stacking rules, providers, SKUs, beneficiaries and grants, loaded
//! from one TOML file (the shape of `examples/hangzhou-2025.toml`) and validated as a whole.
//! Every error names the file, the key path and the reason (docs/rules.md R3, R4, R5).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use rust_decimal::Decimal;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::money::{Fen, MoneyError, parse_decimal};

/// Who funds a programme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Funder {
    National,
    Provincial,
    Municipal,
    District,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BeneficiaryKind {
    Enterprise,
    University,
    ResearchInstitute,
}

/// Who a programme pays: the provider (quick redemption, 快捷兑付) or the beneficiary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Payee {
    Provider,
    Beneficiary,
}

/// Service category (R3). Declaration order is alphabetical so derived `Ord` sorts like text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Compute,
    Data,
    Model,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChipOrigin {
    Domestic,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    GpuHour,
    TokenMillion,
    Call,
    Gb,
    Item,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
            pub const NAMES: &'static str = concat!($($text, " "),+);
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

text_enum!(Funder { National => "national", Provincial => "provincial", Municipal => "municipal", District => "district" });
text_enum!(BeneficiaryKind { Enterprise => "enterprise", University => "university", ResearchInstitute => "research_institute" });
text_enum!(Payee { Provider => "provider", Beneficiary => "beneficiary" });
text_enum!(Category { Compute => "compute", Data => "data", Model => "model" });
text_enum!(ChipOrigin { Domestic => "domestic", Other => "other" });
text_enum!(Unit { GpuHour => "gpu_hour", TokenMillion => "token_million", Call => "call", Gb => "gb", Item => "item" });

/// The classification of a SKU and hence of a settlement line (R3): chip origin only for
/// compute, the registered-model flag only for model services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Class {
    pub category: Category,
    pub chip_origin: Option<ChipOrigin>,
    pub registered_model: Option<bool>,
}

impl Class {
    /// Every class a line can have; used to check rate tables for ambiguity.
    pub const ALL: [Class; 5] = [
        Class {
            category: Category::Compute,
            chip_origin: Some(ChipOrigin::Domestic),
            registered_model: None,
        },
        Class {
            category: Category::Compute,
            chip_origin: Some(ChipOrigin::Other),
            registered_model: None,
        },
        Class {
            category: Category::Data,
            chip_origin: None,
            registered_model: None,
        },
        Class {
            category: Category::Model,
            chip_origin: None,
            registered_model: Some(false),
        },
        Class {
            category: Category::Model,
            chip_origin: None,
            registered_model: Some(true),
        },
    ];
}

/// One entry of a rate table or of a stacking rule's ceilings. It matches a line when every key
/// it names matches; the entry naming the most keys wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateEntry {
    pub category: Option<Category>,
    pub chip_origin: Option<ChipOrigin>,
    pub registered_model: Option<bool>,
    pub ratio: Decimal,
}

impl RateEntry {
    pub fn matches(&self, class: Class) -> bool {
        self.category.is_none_or(|c| c == class.category)
            && self
                .chip_origin
                .is_none_or(|o| class.chip_origin == Some(o))
            && self
                .registered_model
                .is_none_or(|r| class.registered_model == Some(r))
    }

    pub fn specificity(&self) -> usize {
        usize::from(self.category.is_some())
            + usize::from(self.chip_origin.is_some())
            + usize::from(self.registered_model.is_some())
    }
}

/// The index of the entry that applies to `class`: the most specific matching one. Loading
/// guarantees that entries tied for most specific agree on the ratio, so the first is taken.
pub fn lookup_entry(entries: &[RateEntry], class: Class) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (index, entry) in entries.iter().enumerate() {
        if entry.matches(class)
            && best.is_none_or(|b| entry.specificity() > entries[b].specificity())
        {
            best = Some(index);
        }
    }
    best
}

pub fn lookup_ratio(entries: &[RateEntry], class: Class) -> Option<Decimal> {
    lookup_entry(entries, class).map(|i| entries[i].ratio)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FundingShare {
    pub funder: String,
    pub share: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Programme {
    pub id: String,
    pub name: String,
    pub funder: Funder,
    pub year: i32,
    pub pool: Option<Fen>,
    pub beneficiary_cap: Option<Fen>,
    pub provider_cap: Option<Fen>,
    pub beneficiary_kinds: Vec<BeneficiaryKind>,
    pub payee: Payee,
    pub funding: Vec<FundingShare>,
    pub rates: Vec<RateEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stacking {
    pub primary: String,
    pub top_up: String,
    pub ceilings: Vec<RateEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sku {
    pub id: String,
    pub provider: String,
    pub class: Class,
    pub chip_model: Option<String>,
    pub unit: Unit,
    /// Catalog price per unit in CNY (at most 2 decimals); R2 bounds a record's amount by it.
    pub list_price: Option<Decimal>,
    /// Units per hour the provider can deliver (R3).
    pub capacity: Option<Decimal>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beneficiary {
    pub id: String,
    pub name: String,
    pub kind: BeneficiaryKind,
    pub district: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub beneficiary: String,
    pub programme: String,
    /// Overrides the programme's `beneficiary_cap` (the foundation-model relaxation).
    pub cap: Option<Fen>,
}

/// A validated registry. Construct it only through [`Registry::from_toml`].
#[derive(Clone, Debug)]
pub struct Registry {
    pub programmes: Vec<Programme>,
    pub stacking: Vec<Stacking>,
    pub providers: Vec<Provider>,
    pub skus: Vec<Sku>,
    pub beneficiaries: Vec<Beneficiary>,
    pub grants: Vec<Grant>,
    /// SHA-256 of the file's bytes: the policy version's content hash (R11).
    pub content_hash: String,
    programme_index: HashMap<String, usize>,
    provider_index: HashMap<String, usize>,
    sku_index: HashMap<String, usize>,
    beneficiary_index: HashMap<String, usize>,
    /// Per beneficiary, its grants' programmes and places in `grants` (a look-up copies no
    /// text: it is on the path of every balance).
    grant_index: HashMap<String, Vec<(String, usize)>>,
}

/// One problem found in a registry file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    pub path: String,
    pub reason: String,
}

/// Everything wrong with a registry file, reported together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RegistryErrors {
    pub file: String,
    pub errors: Vec<RegistryError>,
}

impl fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: invalid registry ({} problem(s))",
            self.file,
            self.errors.len()
        )?;
        for e in &self.errors {
            writeln!(f, "{}: {}: {}", self.file, e.path, e.reason)?;
        }
        Ok(())
    }
}

/// A key the loader does not know; reported as a warning, since a typo could hide a cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryWarning {
    pub path: String,
    pub reason: String,
}

// ---- raw file shape -------------------------------------------------------------------------

/// A number written as a string ("0.30") or an integer (2025). Floats are refused: a binary
/// float cannot carry money or ratios exactly.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum RawNumber {
    Text(String),
    Integer(i64),
    Float(f64),
}

#[derive(Debug, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    programme: Vec<RawProgramme>,
    #[serde(default)]
    stacking: Vec<RawStacking>,
    #[serde(default)]
    provider: Vec<RawProvider>,
    #[serde(default)]
    sku: Vec<RawSku>,
    #[serde(default)]
    beneficiary: Vec<RawBeneficiary>,
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Debug, Deserialize)]
struct RawProgramme {
    id: String,
    #[serde(default)]
    name: Option<String>,
    funder: String,
    year: i64,
    pool: Option<RawNumber>,
    beneficiary_cap: Option<RawNumber>,
    provider_cap: Option<RawNumber>,
    beneficiary_kinds: Vec<String>,
    payee: String,
    #[serde(default)]
    funding: Vec<RawFunding>,
    #[serde(default)]
    rates: Vec<RawRate>,
}

#[derive(Debug, Deserialize)]
struct RawFunding {
    funder: String,
    share: RawNumber,
}

#[derive(Debug, Deserialize)]
struct RawRate {
    category: Option<String>,
    chip_origin: Option<String>,
    registered_model: Option<bool>,
    ratio: RawNumber,
}

#[derive(Debug, Deserialize)]
struct RawStacking {
    primary: String,
    top_up: String,
    #[serde(default)]
    ceilings: Vec<RawRate>,
}

#[derive(Debug, Deserialize)]
struct RawProvider {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawSku {
    id: String,
    provider: String,
    category: String,
    chip_origin: Option<String>,
    registered_model: Option<bool>,
    chip_model: Option<String>,
    unit: String,
    list_price: Option<RawNumber>,
    capacity: Option<RawNumber>,
}

#[derive(Debug, Deserialize)]
struct RawBeneficiary {
    id: String,
    #[serde(default)]
    name: Option<String>,
    kind: String,
    district: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawGrant {
    beneficiary: String,
    programme: String,
    cap: Option<RawNumber>,
}

/// Keys the loader understands, per section, for the unknown-key warning.
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "programme",
        &[
            "id",
            "name",
            "funder",
            "year",
            "pool",
            "beneficiary_cap",
            "provider_cap",
            "beneficiary_kinds",
            "payee",
            "funding",
            "rates",
        ],
    ),
    ("stacking", &["primary", "top_up", "ceilings"]),
    ("provider", &["id", "name"]),
    (
        "sku",
        &[
            "id",
            "provider",
            "category",
            "chip_origin",
            "registered_model",
            "chip_model",
            "unit",
            "list_price",
            "capacity",
        ],
    ),
    ("beneficiary", &["id", "name", "kind", "district"]),
    ("grant", &["beneficiary", "programme", "cap"]),
];
const RATE_KEYS: &[&str] = &["category", "chip_origin", "registered_model", "ratio"];
const FUNDING_KEYS: &[&str] = &["funder", "share"];

fn unknown_keys(text: &str) -> Vec<RegistryWarning> {
    let mut warnings = Vec::new();
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return warnings;
    };
    for (section, value) in &table {
        let Some((_, known)) = KNOWN_KEYS.iter().find(|(name, _)| name == section) else {
            warnings.push(RegistryWarning {
                path: section.clone(),
                reason: "unknown section, ignored".into(),
            });
            continue;
        };
        let Some(items) = value.as_array() else {
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            let Some(item) = item.as_table() else {
                continue;
            };
            for (key, nested) in item {
                let path = format!("{section}[{index}].{key}");
                if !known.contains(&key.as_str()) {
                    warnings.push(RegistryWarning {
                        path,
                        reason: "unknown key, ignored".into(),
                    });
                    continue;
                }
                let nested_known = match key.as_str() {
                    "rates" | "ceilings" => RATE_KEYS,
                    "funding" => FUNDING_KEYS,
                    _ => continue,
                };
                for (n, entry) in nested.as_array().into_iter().flatten().enumerate() {
                    for entry_key in entry.as_table().into_iter().flat_map(|t| t.keys()) {
                        if !nested_known.contains(&entry_key.as_str()) {
                            warnings.push(RegistryWarning {
                                path: format!("{path}[{n}].{entry_key}"),
                                reason: "unknown key, ignored".into(),
                            });
                        }
                    }
                }
            }
        }
    }
    warnings
}

// ---- validation -----------------------------------------------------------------------------

struct Checker {
    errors: Vec<RegistryError>,
}

impl Checker {
    fn fail(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(RegistryError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    fn text_of(&mut self, path: &str, raw: &RawNumber) -> Option<String> {
        match raw {
            RawNumber::Text(t) => Some(t.clone()),
            RawNumber::Integer(i) => Some(i.to_string()),
            RawNumber::Float(f) => {
                self.fail(
                    path,
                    format!("{f} is a float; write it as a decimal string, e.g. \"{f}\""),
                );
                None
            }
        }
    }

    fn money(&mut self, path: &str, raw: Option<&RawNumber>) -> Option<Fen> {
        let text = self.text_of(path, raw?)?;
        match Fen::parse_cny(&text) {
            Ok(fen) => Some(fen),
            Err(MoneyError::Negative(t)) => {
                self.fail(path, format!("negative money {t}"));
                None
            }
            Err(e) => {
                self.fail(path, format!("invalid money: {e}"));
                None
            }
        }
    }

    /// A per-unit price: money with at most 2 decimals, kept as a decimal for multiplication.
    fn price(&mut self, path: &str, raw: Option<&RawNumber>) -> Option<Decimal> {
        self.money(path, raw).map(Fen::to_cny)
    }

    fn ratio(&mut self, path: &str, raw: &RawNumber) -> Option<Decimal> {
        let text = self.text_of(path, raw)?;
        match parse_decimal(&text) {
            Some(r) if r >= Decimal::ZERO && r <= Decimal::ONE => Some(r),
            Some(r) => {
                self.fail(path, format!("ratio {r} is outside [0, 1]"));
                None
            }
            None => {
                self.fail(path, format!("{text:?} is not a decimal number"));
                None
            }
        }
    }

    fn decimal_non_negative(&mut self, path: &str, raw: Option<&RawNumber>) -> Option<Decimal> {
        let text = self.text_of(path, raw?)?;
        match parse_decimal(&text) {
            Some(d) if d >= Decimal::ZERO => Some(d),
            Some(d) => {
                self.fail(path, format!("{d} is negative"));
                None
            }
            None => {
                self.fail(path, format!("{text:?} is not a decimal number"));
                None
            }
        }
    }

    fn enumerated<T>(
        &mut self,
        path: &str,
        text: &str,
        parse: fn(&str) -> Option<T>,
        names: &str,
    ) -> Option<T> {
        let parsed = parse(text);
        if parsed.is_none() {
            self.fail(
                path,
                format!("{text:?} is not one of: {}", names.trim_end()),
            );
        }
        parsed
    }

    fn id(&mut self, path: &str, id: &str, seen: &mut HashMap<String, usize>, index: usize) {
        if id.trim().is_empty() || id.trim() != id || id.contains(',') {
            self.fail(
                path,
                format!("id {id:?} must be non-empty, without surrounding spaces or commas"),
            );
        }
        if let Some(first) = seen.insert(id.to_owned(), index) {
            seen.insert(id.to_owned(), first);
            self.fail(
                path,
                format!("duplicate id {id:?} (first defined at index {first})"),
            );
        }
    }

    fn rates(&mut self, path: &str, raw: &[RawRate]) -> Vec<RateEntry> {
        let mut entries = Vec::new();
        for (i, rate) in raw.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let category = rate.category.as_deref().and_then(|c| {
                self.enumerated(
                    &format!("{p}.category"),
                    c,
                    Category::parse,
                    Category::NAMES,
                )
            });
            let chip_origin = rate.chip_origin.as_deref().and_then(|c| {
                self.enumerated(
                    &format!("{p}.chip_origin"),
                    c,
                    ChipOrigin::parse,
                    ChipOrigin::NAMES,
                )
            });
            if chip_origin.is_some() && category.is_some_and(|c| c != Category::Compute) {
                self.fail(
                    format!("{p}.chip_origin"),
                    "chip_origin applies only to category compute",
                );
            }
            if rate.registered_model.is_some() && category.is_some_and(|c| c != Category::Model) {
                self.fail(
                    format!("{p}.registered_model"),
                    "registered_model applies only to category model",
                );
            }
            if let Some(ratio) = self.ratio(&format!("{p}.ratio"), &rate.ratio) {
                entries.push(RateEntry {
                    category,
                    chip_origin,
                    registered_model: rate.registered_model,
                    ratio,
                });
            }
        }
        // Two entries of equal specificity that both apply to one class must agree.
        for class in Class::ALL {
            let Some(best) = lookup_entry(&entries, class) else {
                continue;
            };
            for (i, e) in entries.iter().enumerate() {
                if i > best
                    && e.matches(class)
                    && e.specificity() == entries[best].specificity()
                    && e.ratio != entries[best].ratio
                {
                    self.fail(
                        format!("{path}[{i}]"),
                        format!(
                            "ambiguous: matches {} lines with the same specificity as {path}[{best}] but a different ratio ({} vs {})",
                            class_label(class), e.ratio, entries[best].ratio
                        ),
                    );
                }
            }
        }
        entries
    }
}

pub fn class_label(class: Class) -> String {
    let mut s = class.category.as_str().to_owned();
    if let Some(o) = class.chip_origin {
        s.push('/');
        s.push_str(o.as_str());
    }
    if let Some(r) = class.registered_model {
        s.push_str(if r { "/registered" } else { "/unregistered" });
    }
    s
}

impl Registry {
    /// Parses and validates a registry file. `file` names it in error messages.
    pub fn from_toml(
        file: &str,
        text: &str,
    ) -> Result<(Registry, Vec<RegistryWarning>), RegistryErrors> {
        let raw: RawFile = toml::from_str(text).map_err(|e| RegistryErrors {
            file: file.to_owned(),
            errors: vec![RegistryError {
                path: e
                    .span()
                    .map(|s| locate(text, s.start))
                    .unwrap_or_else(|| "(file)".into()),
                reason: e.message().to_owned(),
            }],
        })?;
        let warnings = unknown_keys(text);
        let mut c = Checker { errors: Vec::new() };

        let mut programme_index = HashMap::new();
        let mut programmes = Vec::new();
        for (i, p) in raw.programme.iter().enumerate() {
            let path = format!("programme[{i}]");
            c.id(&format!("{path}.id"), &p.id, &mut programme_index, i);
            let funder = c.enumerated(
                &format!("{path}.funder"),
                &p.funder,
                Funder::parse,
                Funder::NAMES,
            );
            let payee = c.enumerated(
                &format!("{path}.payee"),
                &p.payee,
                Payee::parse,
                Payee::NAMES,
            );
            if !(2000..=2200).contains(&p.year) {
                c.fail(
                    format!("{path}.year"),
                    format!("year {} is outside 2000..=2200", p.year),
                );
            }
            let pool = c.money(&format!("{path}.pool"), p.pool.as_ref());
            let beneficiary_cap = c.money(
                &format!("{path}.beneficiary_cap"),
                p.beneficiary_cap.as_ref(),
            );
            let provider_cap = c.money(&format!("{path}.provider_cap"), p.provider_cap.as_ref());
            let mut kinds = Vec::new();
            for (k, kind) in p.beneficiary_kinds.iter().enumerate() {
                if let Some(kind) = c.enumerated(
                    &format!("{path}.beneficiary_kinds[{k}]"),
                    kind,
                    BeneficiaryKind::parse,
                    BeneficiaryKind::NAMES,
                ) {
                    kinds.push(kind);
                }
            }
            if p.beneficiary_kinds.is_empty() {
                c.fail(
                    format!("{path}.beneficiary_kinds"),
                    "must name at least one kind",
                );
            }
            let mut funding = Vec::new();
            let mut funders = BTreeSet::new();
            for (f, share) in p.funding.iter().enumerate() {
                let fp = format!("{path}.funding[{f}]");
                if share.funder.trim().is_empty() || !funders.insert(share.funder.clone()) {
                    c.fail(
                        format!("{fp}.funder"),
                        format!("funder {:?} is empty or named twice", share.funder),
                    );
                }
                if let Some(s) = c.ratio(&format!("{fp}.share"), &share.share) {
                    funding.push(FundingShare {
                        funder: share.funder.clone(),
                        share: s,
                    });
                }
            }
            if !funding.is_empty() && funding.len() == p.funding.len() {
                let total: Decimal = funding.iter().map(|f| f.share).sum();
                if total != Decimal::ONE {
                    c.fail(
                        format!("{path}.funding"),
                        format!("shares sum to {total}, not 1"),
                    );
                }
            }
            let rates = c.rates(&format!("{path}.rates"), &p.rates);
            if let (Some(funder), Some(payee)) = (funder, payee) {
                programmes.push(Programme {
                    id: p.id.clone(),
                    name: p.name.clone().unwrap_or_else(|| p.id.clone()),
                    funder,
                    year: i32::try_from(p.year).unwrap_or(0),
                    pool,
                    beneficiary_cap,
                    provider_cap,
                    beneficiary_kinds: kinds,
                    payee,
                    funding,
                    rates,
                });
            }
        }

        let mut provider_index = HashMap::new();
        let mut providers = Vec::new();
        for (i, p) in raw.provider.iter().enumerate() {
            c.id(&format!("provider[{i}].id"), &p.id, &mut provider_index, i);
            providers.push(Provider {
                id: p.id.clone(),
                name: p.name.clone().unwrap_or_else(|| p.id.clone()),
            });
        }

        let mut sku_index = HashMap::new();
        let mut skus = Vec::new();
        for (i, s) in raw.sku.iter().enumerate() {
            let path = format!("sku[{i}]");
            c.id(&format!("{path}.id"), &s.id, &mut sku_index, i);
            if !provider_index.contains_key(&s.provider) {
                c.fail(
                    format!("{path}.provider"),
                    format!("unknown provider {:?}", s.provider),
                );
            }
            let category = c.enumerated(
                &format!("{path}.category"),
                &s.category,
                Category::parse,
                Category::NAMES,
            );
            let chip_origin = s.chip_origin.as_deref().and_then(|o| {
                c.enumerated(
                    &format!("{path}.chip_origin"),
                    o,
                    ChipOrigin::parse,
                    ChipOrigin::NAMES,
                )
            });
            let unit = c.enumerated(&format!("{path}.unit"), &s.unit, Unit::parse, Unit::NAMES);
            let list_price = c.price(&format!("{path}.list_price"), s.list_price.as_ref());
            let capacity = c.decimal_non_negative(&format!("{path}.capacity"), s.capacity.as_ref());
            let class = match category {
                Some(Category::Compute) => {
                    if s.chip_origin.is_none() {
                        c.fail(
                            format!("{path}.chip_origin"),
                            "a compute SKU must say its chip_origin (domestic or other)",
                        );
                    }
                    if s.registered_model.is_some() {
                        c.fail(
                            format!("{path}.registered_model"),
                            "registered_model applies only to category model",
                        );
                    }
                    chip_origin.map(|o| Class {
                        category: Category::Compute,
                        chip_origin: Some(o),
                        registered_model: None,
                    })
                }
                Some(other) => {
                    if s.chip_origin.is_some() {
                        c.fail(
                            format!("{path}.chip_origin"),
                            "chip_origin applies only to category compute",
                        );
                    }
                    if other == Category::Data && s.registered_model.is_some() {
                        c.fail(
                            format!("{path}.registered_model"),
                            "registered_model applies only to category model",
                        );
                    }
                    let registered_model =
                        (other == Category::Model).then(|| s.registered_model.unwrap_or(false));
                    Some(Class {
                        category: other,
                        chip_origin: None,
                        registered_model,
                    })
                }
                None => None,
            };
            if let (Some(class), Some(unit)) = (class, unit) {
                skus.push(Sku {
                    id: s.id.clone(),
                    provider: s.provider.clone(),
                    class,
                    chip_model: s.chip_model.clone(),
                    unit,
                    list_price,
                    capacity,
                });
            }
        }

        let mut beneficiary_index = HashMap::new();
        let mut beneficiaries = Vec::new();
        for (i, b) in raw.beneficiary.iter().enumerate() {
            let path = format!("beneficiary[{i}]");
            c.id(&format!("{path}.id"), &b.id, &mut beneficiary_index, i);
            if let Some(kind) = c.enumerated(
                &format!("{path}.kind"),
                &b.kind,
                BeneficiaryKind::parse,
                BeneficiaryKind::NAMES,
            ) {
                beneficiaries.push(Beneficiary {
                    id: b.id.clone(),
                    name: b.name.clone().unwrap_or_else(|| b.id.clone()),
                    kind,
                    district: b.district.clone(),
                });
            }
        }

        let mut grants = Vec::new();
        let mut grant_index = HashMap::new();
        // Maps, not scans: a city registry can hold 100,000 beneficiaries and their grants.
        let beneficiary_by_id: HashMap<&str, &Beneficiary> =
            beneficiaries.iter().map(|b| (b.id.as_str(), b)).collect();
        let programme_by_id: HashMap<&str, &Programme> =
            programmes.iter().map(|p| (p.id.as_str(), p)).collect();
        for (i, g) in raw.grant.iter().enumerate() {
            let path = format!("grant[{i}]");
            let beneficiary = beneficiary_by_id.get(g.beneficiary.as_str()).copied();
            let programme = programme_by_id.get(g.programme.as_str()).copied();
            if !beneficiary_index.contains_key(&g.beneficiary) {
                c.fail(
                    format!("{path}.beneficiary"),
                    format!("unknown beneficiary {:?}", g.beneficiary),
                );
            }
            if !programme_index.contains_key(&g.programme) {
                c.fail(
                    format!("{path}.programme"),
                    format!("unknown programme {:?}", g.programme),
                );
            }
            if let (Some(b), Some(p)) = (beneficiary, programme)
                && !p.beneficiary_kinds.contains(&b.kind)
            {
                c.fail(
                    format!("{path}.programme"),
                    format!(
                        "programme {:?} does not admit beneficiary kind {} (beneficiary {:?})",
                        p.id, b.kind, b.id
                    ),
                );
            }
            let cap = c.money(&format!("{path}.cap"), g.cap.as_ref());
            let of_beneficiary: &mut Vec<(String, usize)> =
                grant_index.entry(g.beneficiary.clone()).or_default();
            if of_beneficiary.iter().any(|(p, _)| *p == g.programme) {
                c.fail(
                    path.clone(),
                    format!(
                        "duplicate grant of {:?} to {:?}",
                        g.programme, g.beneficiary
                    ),
                );
            } else {
                of_beneficiary.push((g.programme.clone(), grants.len()));
            }
            grants.push(Grant {
                beneficiary: g.beneficiary.clone(),
                programme: g.programme.clone(),
                cap,
            });
        }

        let mut stacking = Vec::new();
        let mut pairs = BTreeSet::new();
        for (i, s) in raw.stacking.iter().enumerate() {
            let path = format!("stacking[{i}]");
            let primary = programmes.iter().find(|p| p.id == s.primary);
            let top_up = programmes.iter().find(|p| p.id == s.top_up);
            if !programme_index.contains_key(&s.primary) {
                c.fail(
                    format!("{path}.primary"),
                    format!("unknown programme {:?}", s.primary),
                );
            }
            if !programme_index.contains_key(&s.top_up) {
                c.fail(
                    format!("{path}.top_up"),
                    format!("unknown programme {:?}", s.top_up),
                );
            }
            if s.primary == s.top_up {
                c.fail(format!("{path}.top_up"), "a programme cannot top itself up");
            }
            let key = if s.primary < s.top_up {
                (s.primary.clone(), s.top_up.clone())
            } else {
                (s.top_up.clone(), s.primary.clone())
            };
            if !pairs.insert(key) {
                c.fail(
                    path.clone(),
                    format!(
                        "{:?} and {:?} are already joined by another stacking rule",
                        s.primary, s.top_up
                    ),
                );
            }
            if let (Some(p), Some(t)) = (primary, top_up)
                && p.year != t.year
            {
                c.fail(
                    format!("{path}.top_up"),
                    format!("{:?} is for {} but {:?} for {}", t.id, t.year, p.id, p.year),
                );
            }
            let ceilings = c.rates(&format!("{path}.ceilings"), &s.ceilings);
            if let Some(p) = primary {
                // R5: the ceiling is the combined ratio, so it may not be below the primary's own.
                for class in Class::ALL {
                    let (Some(ci), Some(primary_ratio)) = (
                        lookup_entry(&ceilings, class),
                        lookup_ratio(&p.rates, class),
                    ) else {
                        continue;
                    };
                    if ceilings[ci].ratio < primary_ratio {
                        c.fail(
                            format!("{path}.ceilings[{ci}].ratio"),
                            format!(
                                "ceiling {} for {} is below the primary {:?} ratio {}",
                                ceilings[ci].ratio,
                                class_label(class),
                                p.id,
                                primary_ratio
                            ),
                        );
                    }
                }
            }
            stacking.push(Stacking {
                primary: s.primary.clone(),
                top_up: s.top_up.clone(),
                ceilings,
            });
        }

        if !c.errors.is_empty() {
            // Several ceilings can fail for one entry; report each path and reason once.
            let mut seen = BTreeSet::new();
            c.errors
                .retain(|e| seen.insert((e.path.clone(), e.reason.clone())));
            return Err(RegistryErrors {
                file: file.to_owned(),
                errors: c.errors,
            });
        }
        let content_hash = hex::encode(Sha256::digest(text.as_bytes()));
        let index_of = |ids: Vec<&String>| {
            ids.into_iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect::<HashMap<_, _>>()
        };
        let registry = Registry {
            programme_index: index_of(programmes.iter().map(|p| &p.id).collect()),
            provider_index: index_of(providers.iter().map(|p| &p.id).collect()),
            sku_index: index_of(skus.iter().map(|s| &s.id).collect()),
            beneficiary_index: index_of(beneficiaries.iter().map(|b| &b.id).collect()),
            grant_index,
            programmes,
            stacking,
            providers,
            skus,
            beneficiaries,
            grants,
            content_hash,
        };
        Ok((registry, warnings))
    }

    pub fn programme(&self, id: &str) -> Option<&Programme> {
        self.programme_index.get(id).map(|&i| &self.programmes[i])
    }

    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.provider_index.get(id).map(|&i| &self.providers[i])
    }

    pub fn sku(&self, id: &str) -> Option<&Sku> {
        self.sku_index.get(id).map(|&i| &self.skus[i])
    }

    pub fn beneficiary(&self, id: &str) -> Option<&Beneficiary> {
        self.beneficiary_index
            .get(id)
            .map(|&i| &self.beneficiaries[i])
    }

    pub fn grant(&self, beneficiary: &str, programme: &str) -> Option<&Grant> {
        self.grant_index
            .get(beneficiary)?
            .iter()
            .find(|(p, _)| p == programme)
            .map(|&(_, i)| &self.grants[i])
    }

    /// The stacking rule joining two programmes, in either order.
    pub fn stacking_between(&self, a: &str, b: &str) -> Option<&Stacking> {
        self.stacking
            .iter()
            .find(|s| (s.primary == a && s.top_up == b) || (s.primary == b && s.top_up == a))
    }

    /// Programmes of one fiscal year, in file order.
    pub fn programmes_of_year(&self, year: i32) -> impl Iterator<Item = &Programme> {
        self.programmes.iter().filter(move |p| p.year == year)
    }

    /// The beneficiary cap that applies to a grant: the grant's override, else the programme's.
    pub fn beneficiary_cap(&self, programme: &Programme, beneficiary: &str) -> Option<Fen> {
        self.grant(beneficiary, &programme.id)
            .and_then(|g| g.cap)
            .or(programme.beneficiary_cap)
    }
}

/// "line L, column C" of a byte offset, for TOML syntax and type errors, followed by the key
/// path when the line is a `key = value` line (`line 5, column 8 (programme[0].year)`): a type
/// error from the TOML reader names only the position.
fn locate(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let at = format!("line {line}, column {column}");
    let Some(key) = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with(['[', '#', '{']))
    else {
        return at;
    };
    // The table the line belongs to: the last header above it; `[[name]]` counts its items.
    let mut table = String::new();
    let mut items: HashMap<&str, usize> = HashMap::new();
    for header in before.lines().map(str::trim) {
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
            let name = name.trim();
            let n = items.entry(name).or_insert(0);
            table = format!("{name}[{n}].");
            *n += 1;
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            table = format!("{}.", name.trim());
        }
    }
    format!("{at} ({table}{key})")
}
