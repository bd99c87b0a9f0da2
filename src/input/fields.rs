//! Reading fields out of a decoded JSON object with Django REST Framework's rules
//! and messages: every problem is collected per field, so one 400 lists them all.

use crate::http::error::ApiError;
pub use crate::json::is_storable;
use crate::json::{self, StaticNode, Value};
use crate::model::FieldErrors;

/// Rules for a text field.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub required: bool,
    pub max_chars: usize,
    /// Trim surrounding whitespace first (DRF's default).
    pub trim: bool,
    pub allow_blank: bool,
}

impl Text {
    pub const fn required(max_chars: usize) -> Self {
        Text {
            required: true,
            max_chars,
            trim: true,
            allow_blank: false,
        }
    }

    pub const fn optional(max_chars: usize) -> Self {
        Text {
            required: false,
            max_chars,
            trim: true,
            allow_blank: true,
        }
    }
}

/// Fields of one request object and the errors found so far.
pub struct Fields<'a, 'v> {
    value: &'a Value<'v>,
    errors: FieldErrors,
}

impl<'a, 'v> Fields<'a, 'v> {
    /// `value` must be an object (see `RawBody::object`).
    pub fn new(value: &'a Value<'v>) -> Self {
        Fields {
            value,
            errors: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value<'v>> {
        json::get(self.value, name)
    }

    /// A string field as is, without validation or error.
    pub fn peek_str(&self, name: &str) -> Option<&'a str> {
        match self.get(name) {
            Some(Value::String(text)) => Some(text.as_ref()),
            _ => None,
        }
    }

    /// Records a problem with a field.
    pub fn reject(&mut self, name: &str, message: impl Into<String>) {
        match self.errors.iter_mut().find(|(field, _)| field == name) {
            Some((_, messages)) => messages.push(message.into()),
            None => self.errors.push((name.to_owned(), vec![message.into()])),
        }
    }

    /// A text field; `None` when absent (and optional), null (and optional) or invalid.
    pub fn text(&mut self, name: &str, rules: Text) -> Option<String> {
        let raw = match self.get(name) {
            None => return self.missing(name, rules.required),
            Some(Value::Static(StaticNode::Null)) if !rules.required => return None,
            Some(Value::Static(StaticNode::Null)) => {
                self.reject(name, "This field may not be null.");
                return None;
            }
            Some(Value::String(s)) => s.as_ref(),
            Some(_) => {
                self.reject(name, "Not a valid string.");
                return None;
            }
        };
        if !is_storable(raw) {
            self.reject(name, NUL_REFUSED);
            return None;
        }
        // A string has at most as many characters as bytes: only a long one
        // needs counting.
        if raw.len() > rules.max_chars && raw.chars().count() > rules.max_chars {
            let limit = rules.max_chars;
            self.reject(
                name,
                format!("Ensure this field has no more than {limit} characters."),
            );
            return None;
        }
        let text = if rules.trim {
            raw.trim_matches(is_space)
        } else {
            raw
        };
        if text.is_empty() && !rules.allow_blank {
            self.reject(name, "This field may not be blank.");
            return None;
        }
        Some(text.to_owned())
    }

    /// A required integer: a JSON integer or a string of digits, as DRF accepts.
    pub fn integer(&mut self, name: &str) -> Option<i64> {
        let parsed = match self.get(name) {
            None => return self.missing(name, true),
            Some(Value::Static(StaticNode::I64(n))) => Some(*n),
            Some(Value::Static(StaticNode::U64(n))) => i64::try_from(*n).ok(),
            Some(Value::Static(StaticNode::F64(f))) if f.fract() == 0.0 && f.abs() < 9e15 => {
                Some(*f as i64)
            }
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        if parsed.is_none() {
            self.reject(name, "A valid integer is required.");
        }
        parsed
    }

    /// An optional integer: absent or null is `None`, anything else is read
    /// as [`Fields::integer`] reads it.
    pub fn optional_integer(&mut self, name: &str) -> Option<i64> {
        match self.get(name) {
            None | Some(Value::Static(StaticNode::Null)) => None,
            Some(_) => self.integer(name),
        }
    }

    /// Any JSON but null, returned as compact text, bounded in bytes and depth.
    /// Absent → `default`.
    pub fn json(
        &mut self,
        name: &str,
        default: &str,
        max_bytes: usize,
        max_depth: usize,
    ) -> Option<String> {
        let value = match self.get(name) {
            None => return Some(default.to_owned()),
            Some(Value::Static(StaticNode::Null)) => {
                self.reject(name, "This field may not be null.");
                return None;
            }
            Some(value) => value,
        };
        if json::holds_nul(value) {
            self.reject(name, NUL_REFUSED);
            return None;
        }
        if json::depth(value) > max_depth {
            self.reject(
                name,
                format!("Nesting deeper than {max_depth} levels is not allowed."),
            );
            return None;
        }
        let text = json::to_text(value);
        if text.len() > max_bytes {
            self.reject(
                name,
                format!("Ensure this value is no larger than {max_bytes} bytes of JSON."),
            );
            return None;
        }
        Some(text)
    }

    fn missing<T>(&mut self, name: &str, required: bool) -> Option<T> {
        if required {
            self.reject(name, "This field is required.");
        }
        None
    }

    /// Whether every field read so far was valid.
    pub fn all_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok` when every field was valid, else the 400 listing every problem.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// Why text with a NUL character is refused (Django REST Framework's words).
pub const NUL_REFUSED: &str = "Null characters are not allowed.";

/// Whitespace as Unicode defines it, plus the four ASCII separators (0x1C-0x1F)
/// that Python (and so Django and schema validators) also treat as space.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// An email address as Django's `EmailValidator` accepts one, at most 254
/// characters: a dot-atom local part (letters, digits and ``!#$%&'*+/=?^_`{|}~-``
/// between dots), an `@`, and a domain of dot-separated labels (letters,
/// digits, hyphens not at either end, or non-ASCII letters of an
/// internationalized name), the last at least two characters long.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    email.chars().count() <= 254 && is_dot_atom(local) && is_domain(domain)
}

fn is_dot_atom(local: &str) -> bool {
    let atom_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(atom_char))
}

fn is_domain(domain: &str) -> bool {
    let label_char =
        |c: char| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric());
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.chars().count())
                && label.chars().all(label_char)
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels.last().is_some_and(|tld| tld.chars().count() >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "a@b.io",
            "first.last+tag@example.co.uk",
            "o'neil@xn--bcher-kva.example",
            "x@bücher.example",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.io",
            "a@b",
            "a b@c.io",
            "a@b..io",
            "a@.b.io",
            "a@b@c.io",
            "0@0.0.com*",
            "a@-b.io",
            "a@b-.io",
            "a@b.c",
            ".a@b.io",
            "a..b@c.io",
            "a\0@b.io",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn the_length_limit_counts_characters_not_bytes() {
        let mut text = r#"{"fits": "ééé", "long": "éééé", "ascii": "abcd"}"#
            .as_bytes()
            .to_vec();
        let value = json::parse(&mut text).unwrap();
        let mut fields = Fields::new(&value);
        assert_eq!(
            fields.text("fits", Text::required(3)).as_deref(),
            Some("ééé"),
            "6 bytes, 3 characters"
        );
        assert!(fields.all_valid());
        assert_eq!(fields.text("long", Text::required(3)), None);
        assert_eq!(fields.text("ascii", Text::required(3)), None);
        assert!(!fields.all_valid());
        let Err(ApiError::Validation(errors)) = fields.finish() else {
            panic!("expected validation errors");
        };
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors[0].1,
            ["Ensure this field has no more than 3 characters."]
        );
    }

    #[test]
    fn every_problem_is_reported_per_field() {
        let mut text = br#"{"name": "  ", "n": true, "meta": null}"#.to_vec();
        let value = json::parse(&mut text).unwrap();
        let mut fields = Fields::new(&value);
        assert_eq!(fields.text("name", Text::required(5)), None);
        assert_eq!(fields.integer("n"), None);
        assert_eq!(fields.json("meta", "{}", 100, 4), None);
        assert_eq!(fields.text("absent", Text::required(5)), None);
        let Err(ApiError::Validation(errors)) = fields.finish() else {
            panic!("expected validation errors");
        };
        let names: Vec<&str> = errors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["name", "n", "meta", "absent"]);
        assert_eq!(errors[0].1, ["This field may not be blank."]);
    }
}
