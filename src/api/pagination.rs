//! History pagination. Because every chat's `seq` is gap-free (1..=last_seq), any
//! page or cursor is a `seq` range computed without touching the table: page N of
//! size S is `last_seq - N*S + 1 ..= last_seq - (N-1)*S`, read through the
//! `(chat_id, seq)` index. Page 10,000 costs what page 1 costs; `count` is
//! `last_seq`, not a `COUNT(*)`.
//!
//! `next` always points at older messages and `previous` at newer ones, in
//! page mode (page 1 = newest, as DRF with reversed results) and cursor mode alike.

use crate::config::Paging;
use crate::http::error::ApiError;
use crate::http::query::Query;
use crate::store::SeqWindow;
use std::ops::RangeInclusive;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRequest {
    /// `?page=N&page_size=S` (`page=last` allowed).
    Page { page: PageNumber, size: i64 },
    /// `?after_seq=N&limit=K`: up to K messages with `seq > N`, ascending.
    After { seq: i64, limit: i64 },
    /// `?before_seq=N&limit=K`: the K messages just before `seq N`, ascending.
    Before { seq: i64, limit: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageNumber {
    Number(i64),
    Last,
}

/// A planned read: the `seq` range and where the neighbouring pages are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub seqs: RangeInclusive<i64>,
    /// Query changes for the link to older messages, if any.
    pub next: Option<Vec<(&'static str, Option<String>)>>,
    /// Query changes for the link to newer messages, if any.
    pub previous: Option<Vec<(&'static str, Option<String>)>>,
}

impl HistoryRequest {
    /// Reads the query. Sizes default to `PAGE_SIZE` and are capped at
    /// `MAX_PAGE_SIZE`; a size or cursor that is not a fitting integer is a 400.
    pub fn parse(query: &Query, paging: Paging) -> Result<Self, ApiError> {
        let after = cursor(query, "after_seq", 0)?;
        let before = cursor(query, "before_seq", 1)?;
        // Both sizes are checked whichever mode uses them.
        let limit = size(query, "limit", paging)?;
        let page_size = size(query, "page_size", paging)?;
        if after.is_some() || before.is_some() {
            if query.get("page").is_some() {
                return Err(ApiError::BadRequest(
                    "Use either page or after_seq/before_seq, not both.".into(),
                ));
            }
            return match (after, before) {
                (Some(seq), None) => Ok(HistoryRequest::After { seq, limit }),
                (None, Some(seq)) => Ok(HistoryRequest::Before { seq, limit }),
                _ => Err(ApiError::BadRequest(
                    "Use either after_seq or before_seq, not both.".into(),
                )),
            };
        }
        let size = page_size;
        let page = match query.get("page") {
            None => PageNumber::Number(1),
            Some("last") => PageNumber::Last,
            Some(raw) => PageNumber::Number(raw.parse().map_err(|_| ApiError::InvalidPage)?),
        };
        Ok(HistoryRequest::Page { page, size })
    }

    /// The request's `seq` range before `last_seq` is known, for a store to
    /// resolve in the query that reads the chat; `plan(last_seq).seqs` is
    /// `window().range(last_seq)` whenever the plan is valid.
    pub fn window(self) -> SeqWindow {
        let open = SeqWindow {
            skip: 0,
            size: 1,
            cap: i64::MAX,
            floor: 1,
            oldest_page: false,
        };
        match self {
            HistoryRequest::Page { page, size } => SeqWindow {
                size,
                oldest_page: page == PageNumber::Last,
                // Pages past the end are refused by the plan; keep the SQL in range.
                skip: match page {
                    PageNumber::Number(n) => (n.max(1) - 1).saturating_mul(size).min(i64::MAX / 4),
                    PageNumber::Last => 0,
                },
                ..open
            },
            HistoryRequest::After { seq, limit } => SeqWindow {
                size: limit,
                cap: seq.saturating_add(limit),
                floor: seq.saturating_add(1),
                ..open
            },
            HistoryRequest::Before { seq, limit } => SeqWindow {
                size: limit,
                cap: seq - 1,
                ..open
            },
        }
    }

    /// The range to read from a chat whose highest `seq` is `last_seq`.
    pub fn plan(self, last_seq: i64) -> Result<Plan, ApiError> {
        match self {
            HistoryRequest::Page { page, size } => plan_page(page, size, last_seq),
            HistoryRequest::After { seq, limit } => {
                let from = seq.saturating_add(1);
                Ok(cursor_plan(
                    from,
                    from.saturating_add(limit - 1).min(last_seq),
                    last_seq,
                ))
            }
            HistoryRequest::Before { seq, limit } => {
                let to = (seq - 1).min(last_seq);
                Ok(cursor_plan((to - limit + 1).max(1), to, last_seq))
            }
        }
    }
}

fn plan_page(page: PageNumber, size: i64, last_seq: i64) -> Result<Plan, ApiError> {
    let pages = ((last_seq + size - 1) / size).max(1);
    let page = match page {
        PageNumber::Last => pages,
        PageNumber::Number(n) if (1..=pages).contains(&n) => n,
        PageNumber::Number(_) => return Err(ApiError::InvalidPage),
    };
    let to = last_seq - (page - 1) * size;
    let from = (to - size + 1).max(1);
    let link = |n: i64| {
        let value = (n > 1).then(|| n.to_string());
        vec![("page", value)]
    };
    Ok(Plan {
        seqs: from..=to,
        next: (page < pages).then(|| link(page + 1)),
        previous: (page > 1).then(|| link(page - 1)),
    })
}

/// Cursor results `from..=to`; links move by cursor, keeping `limit`.
fn cursor_plan(from: i64, to: i64, last_seq: i64) -> Plan {
    let older_than = from.min(last_seq + 1);
    let newer_than = to.max(from - 1);
    Plan {
        seqs: from..=to,
        next: (older_than > 1).then(|| {
            vec![
                ("before_seq", Some(older_than.to_string())),
                ("after_seq", None),
            ]
        }),
        previous: (newer_than < last_seq).then(|| {
            vec![
                ("after_seq", Some(newer_than.to_string())),
                ("before_seq", None),
            ]
        }),
    }
}

fn cursor(query: &Query, name: &str, min: i64) -> Result<Option<i64>, ApiError> {
    let Some(raw) = query.get(name) else {
        return Ok(None);
    };
    match raw.parse::<i64>() {
        Ok(n) if n >= min => Ok(Some(n)),
        Ok(_) => Err(ApiError::field(
            name,
            format!("Ensure this value is greater than or equal to {min}."),
        )),
        Err(_) => Err(ApiError::field(name, "A valid integer is required.")),
    }
}

/// A page size (`page_size` or `limit`): default when absent, capped at the
/// maximum, 400 when not a positive integer.
fn size(query: &Query, name: &str, paging: Paging) -> Result<i64, ApiError> {
    match query.get(name).map(str::parse::<i64>) {
        None => Ok(paging.default_page_size),
        Some(Ok(n)) if n >= 1 => Ok(n.min(paging.max_page_size)),
        Some(Ok(_)) => Err(ApiError::field(
            name,
            "Ensure this value is greater than or equal to 1.",
        )),
        Some(Err(_)) => Err(ApiError::field(name, "A valid integer is required.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGING: Paging = Paging {
        default_page_size: 25,
        max_page_size: 100,
        history_cache_bytes: 0,
    };

    fn plan(query: &str, last_seq: i64) -> Result<Plan, ApiError> {
        HistoryRequest::parse(&Query::parse(Some(query)), PAGING)?.plan(last_seq)
    }

    #[test]
    fn pages_count_back_from_the_newest() {
        let first = plan("", 60).unwrap();
        assert_eq!(first.seqs, 36..=60);
        assert_eq!(first.next, Some(vec![("page", Some("2".into()))]));
        assert_eq!(first.previous, None);
        let last = plan("page=3", 60).unwrap();
        assert_eq!(last.seqs, 1..=10);
        assert_eq!(last.next, None);
        assert_eq!(plan("page=last", 60).unwrap().seqs, 1..=10);
        assert_eq!(
            plan("page=2", 60).unwrap().previous,
            Some(vec![("page", None)])
        );
    }

    #[test]
    fn the_store_window_resolves_to_the_planned_range() {
        let queries = [
            "",
            "page=2",
            "page=3&page_size=7",
            "page=last",
            "page=last&page_size=1",
            "page=9",
            "after_seq=0",
            "after_seq=5&limit=3",
            "after_seq=58",
            "after_seq=100",
            "before_seq=1",
            "before_seq=30&limit=10",
            "before_seq=1000",
            "after_seq=9223372036854775807",
            "page=9223372036854775807",
        ];
        for query in queries {
            let request = HistoryRequest::parse(&Query::parse(Some(query)), PAGING).unwrap();
            for last_seq in [0, 1, 7, 24, 25, 26, 50, 60, 1000] {
                let Ok(plan) = request.plan(last_seq) else {
                    continue;
                };
                let window = request.window().range(last_seq);
                let same = plan.seqs == window || (plan.seqs.is_empty() && window.is_empty());
                assert!(same, "{query} at {last_seq}: {:?} vs {window:?}", plan.seqs);
            }
        }
    }

    #[test]
    fn deep_pages_are_plain_ranges() {
        let deep = plan("page=40000&page_size=25", 1_000_000).unwrap();
        assert_eq!(deep.seqs, 1..=25);
    }

    #[test]
    fn out_of_range_or_garbage_pages_are_invalid() {
        for query in [
            "page=4",
            "page=0",
            "page=-1",
            "page=abc",
            "page=99999999999999999999",
        ] {
            assert!(
                matches!(plan(query, 60), Err(ApiError::InvalidPage)),
                "{query}"
            );
        }
        assert!(plan("", 0).unwrap().seqs.is_empty());
    }

    #[test]
    fn page_sizes_are_capped_and_checked() {
        assert_eq!(plan("page_size=1000", 500).unwrap().seqs, 401..=500);
        assert_eq!(plan("", 500).unwrap().seqs, 476..=500);
        for bad in [
            "page_size=abc",
            "page_size=-5",
            "page_size=0",
            "page_size=99999999999999999999",
        ] {
            assert!(
                matches!(plan(bad, 500), Err(ApiError::Validation(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_values_are_invalid_not_absent() {
        assert!(matches!(plan("page=", 10), Err(ApiError::InvalidPage)));
        for bad in [
            "page_size=",
            "after_seq=",
            "before_seq=",
            "after_seq=1&limit=",
        ] {
            assert!(
                matches!(plan(bad, 10), Err(ApiError::Validation(_))),
                "{bad}"
            );
        }
        assert!(plan("after_seq=1&page=", 10).is_err());
    }

    #[test]
    fn cursors() {
        assert_eq!(plan("after_seq=10&limit=5", 12).unwrap().seqs, 11..=12);
        assert!(plan("after_seq=12", 12).unwrap().seqs.is_empty());
        assert_eq!(plan("before_seq=10&limit=5", 12).unwrap().seqs, 5..=9);
        assert_eq!(plan("before_seq=3&limit=5", 12).unwrap().seqs, 1..=2);
        let after = plan("after_seq=0&limit=5", 12).unwrap();
        assert_eq!(
            after.previous,
            Some(vec![("after_seq", Some("5".into())), ("before_seq", None)])
        );
        assert_eq!(after.next, None);
        for bad in [
            "after_seq=x",
            "after_seq=-1",
            "before_seq=0",
            "after_seq=1&before_seq=5",
            "after_seq=1&limit=0",
            "after_seq=1&page=2",
        ] {
            assert!(plan(bad, 12).is_err(), "{bad}");
        }
    }
}
