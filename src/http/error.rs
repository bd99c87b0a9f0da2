//! The one place errors become HTTP responses. Handlers return
//! `Result<Response, ApiError>`; each variant maps to a status code and a DRF-style
//! body (`{"detail": ...}` or `{"field": ["message", ...]}`). Server-side failures
//! are logged with their cause and shown to the client as an opaque message.

use crate::auth::jwt::TokenError;
use crate::auth::password::HashError;
use crate::http::response::{json_response, Body};
use crate::store::StoreError;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::model::FieldErrors;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Authentication credentials were not provided.")]
    NotAuthenticated,
    #[error("{0}")]
    BadAuthHeader(&'static str),
    #[error("Given token not valid for any token type")]
    InvalidAccessToken(TokenError),
    #[error("Token is invalid or expired")]
    InvalidRefreshToken,
    #[error("Token is blacklisted")]
    BlacklistedToken,
    #[error("User is inactive")]
    UserInactive,
    #[error("No active account found with the given credentials")]
    InvalidCredentials,
    #[error("You do not have permission to perform this action.")]
    PermissionDenied,
    #[error("Not found.")]
    NotFound,
    #[error("Invalid page.")]
    InvalidPage,
    /// The method, and the route's allowed methods (the `Allow` header).
    #[error("Method \"{0}\" not allowed.")]
    MethodNotAllowed(Method, &'static str),
    #[error("Request body is larger than the limit of {0} bytes.")]
    PayloadTooLarge(usize),
    #[error("The request body did not arrive within {} seconds.", .0.as_secs())]
    BodyTimeout(std::time::Duration),
    #[error("Unsupported media type \"{0}\" in request.")]
    UnsupportedMediaType(String),
    /// The body is not JSON we accept; the message says why.
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid fields")]
    Validation(FieldErrors),
    #[error("Bad Request (400)")]
    DisallowedHost,
    #[error("This endpoint only accepts WebSocket upgrade requests.")]
    UpgradeRequired,
    #[error("Request was throttled. Expected available in {} seconds.", .0.as_secs().max(1))]
    Throttled(std::time::Duration),
    #[error("Too many open connections for this user.")]
    TooManySockets,
    #[error("Service temporarily unavailable, try again later.")]
    Unavailable(String),
    #[error("A server error occurred.")]
    Internal(String),
}

impl ApiError {
    /// One field, one message: `{"field": ["message"]}`.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![(name.to_owned(), vec![message.into()])])
    }

    /// A valid token whose user no longer exists: refused like an invalid one.
    pub fn user_gone() -> Self {
        ApiError::InvalidAccessToken(TokenError::Invalid)
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            NotAuthenticated
            | BadAuthHeader(_)
            | InvalidAccessToken(_)
            | InvalidRefreshToken
            | BlacklistedToken
            | UserInactive
            | InvalidCredentials => StatusCode::UNAUTHORIZED,
            PermissionDenied => StatusCode::FORBIDDEN,
            NotFound | InvalidPage => StatusCode::NOT_FOUND,
            MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MalformedJson(_) | BadRequest(_) | Validation(_) | DisallowedHost => {
                StatusCode::BAD_REQUEST
            }
            UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Throttled(_) | TooManySockets => StatusCode::TOO_MANY_REQUESTS,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> serde_json::Value {
        match self {
            ApiError::Validation(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(name, messages)| (name.clone(), json!(messages)))
                    .collect(),
            ),
            ApiError::InvalidAccessToken(reason) => json!({
                "detail": self.to_string(),
                "code": "token_not_valid",
                "messages": [{
                    "token_class": "AccessToken",
                    "token_type": "access",
                    "message": reason.to_string(),
                }],
            }),
            ApiError::InvalidRefreshToken | ApiError::BlacklistedToken => {
                json!({"detail": self.to_string(), "code": "token_not_valid"})
            }
            ApiError::UserInactive => json!({"detail": self.to_string(), "code": "user_inactive"}),
            _ => json!({ "detail": self.to_string() }),
        }
    }

    /// The response the client sees. Server-side causes are logged, never sent.
    pub fn into_response(self) -> Response<Body> {
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "request failed"),
            ApiError::Unavailable(cause) => tracing::warn!(%cause, "dependency unavailable"),
            _ => {}
        }
        let mut response = json_response(self.status(), &self.body());
        let retry_after = match &self {
            ApiError::Unavailable(_) | ApiError::TooManySockets => Some(1),
            ApiError::Throttled(wait) => Some(wait.as_secs().max(1)),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            let value = hyper::header::HeaderValue::from(seconds);
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, value);
        }
        if let ApiError::MethodNotAllowed(_, allow) = self {
            // RFC 9110: a 405 lists the methods the resource supports.
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static(allow),
            );
        }
        if let ApiError::BodyTimeout(_) = self {
            // The rest of the body may still come: the connection cannot be reused.
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        if let ApiError::NotAuthenticated
        | ApiError::InvalidAccessToken(_)
        | ApiError::UserInactive = self
        {
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"api\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken => {
                ApiError::field("email", "user with this email already exists.")
            }
            StoreError::Unavailable(cause) | StoreError::Interrupted(cause) => {
                ApiError::Unavailable(cause)
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<HashError> for ApiError {
    fn from(error: HashError) -> Self {
        ApiError::Internal(error.to_string())
    }
}
