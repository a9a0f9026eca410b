//! What the REST API's handlers share: JSON responses, EMQX's error shape
//! (`{"code": "...", "message": "..."}`), the query string, and pagination
//! (`?page=1&limit=100` -> `{"data": [...], "meta": {"page", "limit", "count", "hasnext"}}`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Largest `limit` a list accepts (EMQX's default is 100).
const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 100;

/// A JSON response.
pub(super) fn reply(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// An error response in EMQX's shape.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    reply(status, &json!({"code": code, "message": message}))
}

/// 400 Bad Request.
pub(super) fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

/// The query string's parameters, percent-decoded, in order.
#[derive(Debug, Default)]
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The page asked for: `page` (from 1) and `limit`, or what is wrong with them (for a
    /// 400 response).
    pub(super) fn page(&self) -> Result<Page, String> {
        let number = |name: &str, default: usize| match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{name} must be a positive integer")),
        };
        let page = number("page", 1)?;
        let limit = number("limit", DEFAULT_LIMIT)?;
        if limit > MAX_LIMIT {
            return Err(format!("limit must be at most {MAX_LIMIT}"));
        }
        Ok(Page { page, limit })
    }
}

/// `%XX` and `+` decoded; a bad escape is kept as it is; bytes that are not UTF-8 replaced.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One page of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Page {
    pub(super) page: usize,
    pub(super) limit: usize,
}

impl Page {
    /// The page of `items` (the whole list, in a stable order) in EMQX's shape: `count` is
    /// the length of the whole list.
    pub(super) fn of(self, items: Vec<Value>) -> Value {
        let count = items.len();
        let start = (self.page - 1).saturating_mul(self.limit);
        let data: Vec<Value> = items.into_iter().skip(start).take(self.limit).collect();
        let hasnext = start.saturating_add(self.limit) < count;
        json!({
            "data": data,
            "meta": {"page": self.page, "limit": self.limit, "count": count, "hasnext": hasnext},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        let q = Query::parse(Some("like_clientid=a%2Fb+c&page=2&x"));
        assert_eq!(q.get("like_clientid"), Some("a/b c"));
        assert_eq!(q.get("page"), Some("2"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("y"), None);
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%C3%A9"), "é");
    }

    #[test]
    fn pages() {
        assert_eq!(
            Query::parse(None).page().unwrap(),
            Page {
                page: 1,
                limit: 100
            }
        );
        assert!(Query::parse(Some("page=0")).page().is_err());
        assert!(Query::parse(Some("limit=x")).page().is_err());
        assert!(Query::parse(Some("limit=10001")).page().is_err());
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let p = Page { page: 2, limit: 2 }.of(items.clone());
        assert_eq!(p["data"], json!([2, 3]));
        assert_eq!(
            p["meta"],
            json!({"page": 2, "limit": 2, "count": 5, "hasnext": true})
        );
        let p = Page { page: 3, limit: 2 }.of(items.clone());
        assert_eq!(p["data"], json!([4]));
        assert_eq!(p["meta"]["hasnext"], json!(false));
        let p = Page { page: 9, limit: 2 }.of(items);
        assert_eq!(p["data"], json!([]));
        let huge = Page {
            page: usize::MAX,
            limit: MAX_LIMIT,
        };
        assert_eq!(huge.of(vec![json!(1)])["data"], json!([]));
    }
}
