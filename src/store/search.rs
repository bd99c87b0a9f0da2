//! A user search's `LIKE` pattern, the same for both backends.

/// The LIKE pattern of a user search: a substring match, or for a query
/// shorter than a trigram (which a trigram index cannot serve as a
/// substring) a match at the start. Wildcards in the query are literal.
pub(crate) fn search_pattern(query: &str) -> String {
    let escaped = escape_like(query);
    if query.chars().count() < 3 {
        format!("{escaped}%")
    } else {
        format!("%{escaped}%")
    }
}

/// Escapes LIKE wildcards so a search for `50%` finds the literal text.
pub(crate) fn escape_like(query: &str) -> String {
    let mut escaped = String::with_capacity(query.len());
    for ch in query.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_searches_match_the_start_and_wildcards_are_literal() {
        assert_eq!(search_pattern("al"), "al%");
        assert_eq!(search_pattern("ali"), "%ali%");
        assert_eq!(search_pattern("5%"), "5\\%%");
        assert_eq!(search_pattern("é_x"), "%é\\_x%");
    }
}
