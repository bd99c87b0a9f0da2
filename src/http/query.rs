//! The query string: decoded once into pairs, read by name (the last of repeated
//! names wins, as Django's `QueryDict.get`), and rewritten for pagination links.

/// A request's decoded query parameters, in order.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

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
