//! Reading request bodies: bounded in size (413 beyond the limit, checked against
//! `Content-Length` before reading and while reading), and decoded as JSON (or, as
//! Django REST Framework also accepts, as a form) into an object of fields.

use crate::config::Limits;
use crate::http::error::ApiError;
use crate::json::{self, Value};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;

/// How the body is encoded, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
}

/// Reads the whole body, refusing more than `limits.max_body_bytes` bytes or
/// a body still incomplete after `limits.body_read_timeout` (a client
/// trickling bytes would otherwise hold its connection and task forever).
pub async fn read_limited(request: Request<Incoming>, limits: &Limits) -> Result<Bytes, ApiError> {
    let deadline = limits.body_read_timeout;
    tokio::time::timeout(deadline, read_at_most(request, limits.max_body_bytes))
        .await
        .unwrap_or(Err(ApiError::BodyTimeout(deadline)))
}

async fn read_at_most(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "Could not read the request body: {e}"
        ))),
    }
}

/// The request's body encoding; anything but JSON or a form is a 415.
fn encoding(request: &Request<Incoming>) -> Result<Encoding, ApiError> {
    let Some(value) = request.headers().get(CONTENT_TYPE) else {
        return Ok(Encoding::Json);
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "" | "application/json" => Ok(Encoding::Json),
        "application/x-www-form-urlencoded" => Ok(Encoding::Form),
        m if m.ends_with("+json") => Ok(Encoding::Json),
        _ => Err(ApiError::UnsupportedMediaType(text.to_owned())),
    }
}

/// The bytes of a body, kept for parsing in place.
pub struct RawBody {
    bytes: Vec<u8>,
    encoding: Encoding,
}

impl RawBody {
    /// Reads and checks the body of a request that must carry an object of fields.
    pub async fn read(request: Request<Incoming>, limits: &Limits) -> Result<Self, ApiError> {
        let encoding = encoding(&request)?;
        let bytes = read_limited(request, limits).await?;
        Ok(RawBody {
            bytes: bytes.to_vec(),
            encoding,
        })
    }

    /// Parses the body into a JSON object (a form becomes an object of strings).
    /// An empty body is an empty object, as DRF treats it.
    pub fn object(&mut self) -> Result<Value<'_>, ApiError> {
        // `curl -d '{...}'` labels JSON as a form; a body that opens like JSON is JSON.
        let looks_like_json = self
            .bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'['));
        if self.encoding == Encoding::Form && !looks_like_json {
            self.bytes = form_as_json(&self.bytes);
        }
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            self.bytes = b"{}".to_vec();
        }
        let value =
            json::parse(&mut self.bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        match value {
            Value::Object(_) => Ok(value),
            other => Err(ApiError::Validation(vec![(
                "non_field_errors".into(),
                vec![format!(
                    "Invalid data. Expected a dictionary, but got {}.",
                    json::type_name(&other)
                )],
            )])),
        }
    }
}

/// `a=1&b=x` → `{"a":"1","b":"x"}` (the last of repeated keys wins).
fn form_as_json(bytes: &[u8]) -> Vec<u8> {
    let fields: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    json::encode(&fields)
}
