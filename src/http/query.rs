//! The query string: decoded once into pairs, read by name (the last of repeated
//! names wins, as Django's `QueryDict.get`), and rewritten for pagination links.

/// A request's decoded query parameters, in order.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let raw = raw.unwrap_or("");
        let pairs = if needs_decoding(raw) {
            form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        } else {
            literal_pairs(raw)
        };
        Query { pairs }
    }

    /// The value of a parameter; `None` when absent. Present but empty is
    /// `Some("")`: for a number that is an invalid value, not a missing one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// This query with `changes` applied: `Some(v)` sets a parameter, `None` removes it.
    pub fn with(&self, changes: &[(&str, Option<String>)]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.pairs {
            if !changes.iter().any(|(name, _)| name == key) {
                out.append_pair(key, value);
            }
        }
        for (name, value) in changes {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        out.finish()
    }
}

/// Whether a query has anything to decode (`%` or `+`). One flag over every
/// byte, with no early exit, so the compiler checks 16 bytes per step: a
/// handshake's query is a long token.
fn needs_decoding(raw: &str) -> bool {
    let seen = raw.bytes().fold(0u8, |seen, byte| {
        seen | u8::from(byte == b'%') | u8::from(byte == b'+')
    });
    seen != 0
}

/// The pairs of a query with nothing to decode (no `%`, no `+`), split as
/// `form_urlencoded::parse` splits: at `&`, skipping empty pieces, then at the
/// first `=`. A WebSocket handshake's query is a long token, and decoding it byte by
/// byte three times over was a visible part of every handshake.
fn literal_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn literal_queries_split_as_form_urlencoded_does(raw in "[a-z0-9=&._~-]{0,40}") {
            let decoded: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            prop_assert_eq!(literal_pairs(&raw), decoded.clone());
            prop_assert_eq!(Query::parse(Some(&raw)).pairs, decoded);
        }

        #[test]
        fn any_query_parses_as_form_urlencoded_does(raw in "[a-z0-9=&%+.~-]{0,80}") {
            let decoded: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            prop_assert_eq!(Query::parse(Some(&raw)).pairs, decoded);
        }
    }

    #[test]
    fn last_value_wins_and_rewrites_keep_the_rest() {
        let q = Query::parse(Some("page=1&q=a%20b&page=3&empty="));
        assert_eq!(q.get("page"), Some("3"));
        assert_eq!(q.get("q"), Some("a b"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("absent"), None);
        assert_eq!(q.with(&[("page", Some("4".into()))]), "q=a+b&empty=&page=4");
        assert_eq!(q.with(&[("page", None), ("empty", None)]), "q=a+b");
    }

    #[test]
    fn garbage_does_not_panic() {
        let q = Query::parse(Some("%%%&=&==x&%ff%fe=1"));
        assert_eq!(q.get("missing"), None);
    }
}
