//! JSON in and out: the only user of `simd-json` (request decoding) and of
//! `serde_json`'s writer (response encoding, which keeps stored metadata text as is).

pub use simd_json::BorrowedValue as Value;
pub use simd_json::StaticNode;

use simd_json::prelude::*;

/// Parses a request body in place (simd-json rewrites the buffer it parses).
pub fn parse(bytes: &mut [u8]) -> Result<Value<'_>, String> {
    simd_json::to_borrowed_value(bytes).map_err(|e| e.to_string())
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
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
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
    fn malformed_json_is_an_error_not_a_panic() {
        for bad in [&b"{"[..], b"", b"{\"a\":}", b"\xff\xfe", b"[1,]"] {
            assert!(parse(&mut bad.to_vec()).is_err(), "{bad:?}");
        }
    }
}
