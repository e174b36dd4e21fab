//! `application/x-www-form-urlencoded` bodies and query strings, parsed strictly: every refusal
//! names the field (invalid UTF-8, an oversized value, a missing or repeated field).

use std::collections::BTreeMap;

use super::codes::Code;

/// Longest form body accepted, in bytes.
pub const FORM_BYTES_MAX: usize = 16 * 1024;
/// Longest value of one field, in characters.
pub const FIELD_CHARS_MAX: usize = 200;

/// Why a form was refused; `field` names the offending field ("form" for the body as a whole),
/// `code` the reason the page shows in its language, `message` the English detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub code: Code,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: Code, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A parsed form: each field at most once.
#[derive(Debug, Default)]
pub struct Form {
    fields: BTreeMap<String, String>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes (`+` is a space) to raw bytes; a malformed escape is an error.
fn decode(part: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        match part[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = hex(*part.get(i + 1)?)?;
                let l = hex(*part.get(i + 2)?)?;
                out.push(h * 16 + l);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

impl Form {
    pub fn parse(body: &[u8]) -> Result<Form, FieldError> {
        Form::parse_with(body, FIELD_CHARS_MAX)
    }

    /// As [`Form::parse`], with values of up to `field_chars_max` characters: an identity
    /// provider's answer carries codes longer than any form field.
    pub fn parse_with(body: &[u8], field_chars_max: usize) -> Result<Form, FieldError> {
        if body.len() > FORM_BYTES_MAX {
            return Err(FieldError::new(
                "form",
                Code::FormTooLarge,
                format!("body has {} bytes; at most {FORM_BYTES_MAX}", body.len()),
            ));
        }
        let mut fields = BTreeMap::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = decode(name)
                .and_then(|n| String::from_utf8(n).ok())
                .ok_or_else(|| {
                    FieldError::new("form", Code::NotUtf8, "a field name is not valid UTF-8")
                })?;
            let field = name.chars().take(40).collect::<String>();
            let value = decode(value).ok_or_else(|| {
                FieldError::new(&field, Code::BadEscape, "has a malformed %-escape")
            })?;
            let value = String::from_utf8(value)
                .map_err(|_| FieldError::new(&field, Code::NotUtf8, "is not valid UTF-8"))?;
            if value.chars().count() > field_chars_max {
                return Err(FieldError::new(
                    &field,
                    Code::TooLong,
                    format!("is longer than {field_chars_max} characters"),
                ));
            }
            if fields.insert(name, value).is_some() {
                return Err(FieldError::new(
                    &field,
                    Code::Repeated,
                    "is given more than once",
                ));
            }
        }
        Ok(Form { fields })
    }

    /// The field's trimmed value, which must be present and not empty.
    pub fn required(&self, name: &str) -> Result<&str, FieldError> {
        match self.fields.get(name).map(|v| v.trim()) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(FieldError::new(name, Code::Empty, "is empty")),
            None => Err(FieldError::new(name, Code::Missing, "is missing")),
        }
    }

    /// The names of the fields given, for parsers that refuse unknown ones.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The field's trimmed value, `None` when absent or empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Decoding, and each refusal names its field.
    #[test]
    fn parses_and_names_bad_fields() {
        let f = Form::parse(b"amount=1%2C000.50&reference=BANK+1&empty=").unwrap();
        assert_eq!(f.required("amount").unwrap(), "1,000.50");
        assert_eq!(f.required("reference").unwrap(), "BANK 1");
        assert_eq!(f.required("empty").unwrap_err().field, "empty");
        assert_eq!(f.required("payee").unwrap_err().message, "is missing");
        assert_eq!(f.optional("empty"), None);
        assert_eq!(
            Form::parse(b"payee=%FF%FE").unwrap_err(),
            FieldError::new("payee", Code::NotUtf8, "is not valid UTF-8")
        );
        assert_eq!(f.required("payee").unwrap_err().code, Code::Missing);
        assert_eq!(Form::parse(b"payee=%G1").unwrap_err().field, "payee");
        assert_eq!(Form::parse(b"a=1&a=2").unwrap_err().field, "a");
        let long = format!("reference={}", "x".repeat(FIELD_CHARS_MAX + 1));
        assert_eq!(Form::parse(long.as_bytes()).unwrap_err().field, "reference");
        let huge = vec![b'x'; FORM_BYTES_MAX + 1];
        assert_eq!(Form::parse(&huge).unwrap_err().field, "form");
    }
}
