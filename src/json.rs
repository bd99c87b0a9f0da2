//! JSON in and out: the only user of `simd-json` (request decoding) and of
//! `serde_json`'s writer (response encoding, which keeps stored metadata text as is).

pub use simd_json::BorrowedValue as Value;
pub use simd_json::StaticNode;

use simd_json::prelude::*;

/// Deepest nesting any parsed document may have. Building and dropping a value
/// recurses once per level, so hostile input like 100,000 `[` must be refused
/// before it is turned into a tree.
pub const MAX_NESTING: usize = 128;

/// Why a body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("JSON parse error - {0}")]
    Syntax(String),
    #[error("JSON nesting deeper than {MAX_NESTING} levels is not allowed.")]
    TooDeep,
}

/// Parses a request body in place (simd-json rewrites the buffer it parses).
pub fn parse(bytes: &mut [u8]) -> Result<Value<'_>, ParseError> {
    refuse_deep(bytes)?;
    simd_json::to_borrowed_value(bytes).map_err(syntax)
}

/// A parser that keeps simd-json's working buffers from one document to the
/// next, for a socket parsing event after event. A one-off parse allocates
/// them every time, one of them 64-byte aligned, which is the allocator's slow
/// path on every event. None are held until the first parse, nor after [`release`].
///
/// [`release`]: Parser::release
#[derive(Default)]
pub struct Parser {
    buffers: Option<Box<simd_json::Buffers>>,
}

impl Parser {
    /// Parses a document in place, as [`parse`] does.
    pub fn parse<'a>(&mut self, bytes: &'a mut [u8]) -> Result<Value<'a>, ParseError> {
        refuse_deep(bytes)?;
        let buffers = self
            .buffers
            .get_or_insert_with(|| Box::new(simd_json::Buffers::new(bytes.len())));
        simd_json::value::borrowed::to_value_with_buffers(bytes, buffers).map_err(syntax)
    }

    /// Frees the buffers (a socket gone quiet need not hold them).
    pub fn release(&mut self) {
        self.buffers = None;
    }

    pub fn holds_buffers(&self) -> bool {
        self.buffers.is_some()
    }
}

fn refuse_deep(bytes: &[u8]) -> Result<(), ParseError> {
    if nesting_exceeds(bytes, MAX_NESTING) {
        return Err(ParseError::TooDeep);
    }
    Ok(())
}

fn syntax(error: simd_json::Error) -> ParseError {
    ParseError::Syntax(error.to_string())
}

/// Whether brackets nest deeper than `limit`, outside strings. Nesting can only
/// exceed the limit when there are more opening brackets than that: a count the
/// compiler vectorizes, so a typical event (a bracket or two) skips the scan.
fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    opening_brackets(bytes) > limit && deepest_exceeds(bytes, limit)
}

/// How many `[` and `{` there are, strings included. Counted in u8 lanes, 255
/// bytes at a time (no lane can overflow): counted straight into a usize, the
/// compiler has to widen every byte.
fn opening_brackets(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|chunk| {
            let count = chunk.iter().fold(0u8, |count, &byte| {
                count + (u8::from(byte == b'[') | u8::from(byte == b'{'))
            });
            usize::from(count)
        })
        .sum()
}

/// The exact check: one pass tracking depth outside strings.
fn deepest_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A member of an object; `None` for other values or a missing name.
pub fn get<'a, 'v>(value: &'a Value<'v>, name: &str) -> Option<&'a Value<'v>> {
    match value {
        Value::Object(fields) => fields.get(name),
        _ => None,
    }
}

/// Writes a value back out as compact JSON text.
pub fn to_text(value: &Value<'_>) -> String {
    value.encode()
}

/// Nesting depth: a scalar is 0, `{}` or `[]` is 1, `{"a": []}` is 2.
pub fn depth(value: &Value<'_>) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether text can be stored: PostgreSQL refuses the NUL character in `text`
/// and `jsonb`, so every input that may reach the store is checked with this,
/// the same way for both stores, before it is queued (a refused message never
/// reaches, or fails, a batch).
pub fn is_storable(text: &str) -> bool {
    // A fold with no early exit: the compiler vectorizes it, where
    // `contains('\0')` set up a char searcher and memchr for each of a
    // message's short strings.
    !text.bytes().fold(false, |found, byte| found | (byte == 0))
}

/// Whether any string of the value, or any object key, holds a NUL character:
/// text PostgreSQL cannot store (in `text` or in `jsonb`). simd-json also
/// decodes a lone high surrogate at the end of a string (`"\ud800"`) to NUL,
/// so this check refuses that too.
pub fn holds_nul(value: &Value<'_>) -> bool {
    match value {
        Value::String(text) => !is_storable(text),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, field)| !is_storable(key) || holds_nul(field)),
        Value::Static(_) => false,
    }
}

/// A short name of a value's type for error messages.
pub fn type_name(value: &Value<'_>) -> &'static str {
    match value {
        Value::Static(StaticNode::Null) => "null",
        Value::Static(StaticNode::Bool(_)) => "bool",
        Value::Static(_) => "number",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Encodes a response value.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    encode_with_capacity(value, 128)
}

/// Encodes a value into a buffer with room for `capacity` bytes from the start:
/// a value whose size is roughly known is written without growing the buffer
/// (a message event grew it five or six times, each a copy).
pub fn encode_with_capacity<T: serde::Serialize + ?Sized>(value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => out,
        Err(_) => b"{}".to_vec(),
    }
}

/// A string as a JSON string onto the end of `out`, exactly as `serde_json`
/// writes it. Most strings need no escape: one pass over the bytes finds that
/// out and they are copied whole; the rest go through `serde_json`. (The pass
/// runs a byte at a time: on the short strings a message has, a vectorized
/// pass gains nothing.)
pub fn append_str(out: &mut Vec<u8>, text: &str) {
    let needs_escape = text.bytes().fold(false, |found, byte| {
        found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    if needs_escape {
        append(out, text);
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Encodes a value onto the end of `out` (for responses assembled from parts).
pub fn append<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers() {
        let mut text = br#"{"a": [1, {"b": []}]}"#.to_vec();
        assert_eq!(depth(&parse(&mut text).unwrap()), 4);
        let mut scalar = b"3".to_vec();
        assert_eq!(depth(&parse(&mut scalar).unwrap()), 0);
    }

    #[test]
    fn hostile_nesting_is_refused_before_parsing() {
        let mut deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)).into_bytes();
        assert_eq!(parse(&mut deep).unwrap_err(), ParseError::TooDeep);
        let mut fine =
            format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING)).into_bytes();
        assert!(parse(&mut fine).is_ok());
        let mut in_string = format!(r#"["{}\"{}"]"#, "[".repeat(500), "{".repeat(500)).into_bytes();
        assert!(
            parse(&mut in_string).is_ok(),
            "brackets inside strings do not count"
        );
    }

    #[test]
    fn opening_brackets_are_counted_across_every_chunk() {
        for len in [0, 1, 254, 255, 256, 510, 511, 1_000, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| b"[a{]}\"x"[i % 7]).collect();
            let naive = bytes.iter().filter(|b| **b == b'[' || **b == b'{').count();
            assert_eq!(opening_brackets(&bytes), naive, "{len} bytes");
        }
        let all = vec![b'{'; 1_000];
        assert_eq!(opening_brackets(&all), 1_000, "no lane overflows");
        let mut one_too_deep = format!(
            "{}{}",
            "[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        )
        .into_bytes();
        assert_eq!(parse(&mut one_too_deep).unwrap_err(), ParseError::TooDeep);
    }

    #[test]
    fn nul_is_found_in_any_string_or_key() {
        for (document, holds) in [
            (r#"{"a":"b","c":[1,{"d":"e"}]}"#, false),
            (r#"{"a":"b\u0000"}"#, true),
            (r#"{"a\u0000":"b"}"#, true),
            (r#"[1,[{"x":["\u0000"]}]]"#, true),
            (r#"["\ud800"]"#, true),
            (r#""\u0000""#, true),
            ("12", false),
        ] {
            let mut bytes = document.as_bytes().to_vec();
            assert_eq!(holds_nul(&parse(&mut bytes).unwrap()), holds, "{document}");
        }
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for bad in [&b"{"[..], b"", b"{\"a\":}", b"\xff\xfe", b"[1,]"] {
            assert!(parse(&mut bad.to_vec()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_reused_parser_reads_each_document_as_a_fresh_one_does() {
        let long = format!(r#"{{"content":"{}","n":[1,2,3]}}"#, "é\\n".repeat(300));
        let documents = [
            long.as_str(),
            r#"{"a":"b"}"#,
            "{\"broken\":",
            r#"[true,{"x":"\u00e9"}]"#,
            "",
            r#""last""#,
        ];
        let mut parser = Parser::default();
        assert!(!parser.holds_buffers());
        for (round, document) in documents.iter().enumerate() {
            let mut reused = document.as_bytes().to_vec();
            let mut fresh = document.as_bytes().to_vec();
            assert_eq!(
                parser.parse(&mut reused),
                parse(&mut fresh),
                "document {round}: {document:.40}"
            );
            assert!(parser.holds_buffers());
        }
        parser.release();
        assert!(!parser.holds_buffers());
        assert_eq!(
            parser.parse(&mut br#"{"after":"release"}"#.to_vec()),
            parse(&mut br#"{"after":"release"}"#.to_vec())
        );
    }
}
