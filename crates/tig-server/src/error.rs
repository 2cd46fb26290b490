//! [`ApiError`]: the one error type of the HTTP layer. It picks the status code and
//! a one-line `text/plain` reason; internals are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tig_store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed request (bad query, bad burst line, `..` in the path, …).
    #[error("{0}")]
    BadRequest(String),
    /// 401: wrong or missing API key.
    #[error("wrong or missing apikey")]
    Unauthorized,
    /// 404: no such object.
    #[error("{0}")]
    NotFound(String),
    /// 405: a method tig does not speak.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: content-addressed data cannot change, or a slot blocks content.
    #[error("{0}")]
    Conflict(String),
    /// 413: body over the size limit.
    #[error("body exceeds the size limit of {0} bytes")]
    TooLarge(u64),
    /// 416: a `Range` that selects nothing of an object of this many bytes.
    #[error("range not satisfiable: the object has {0} bytes")]
    RangeNotSatisfiable(u64),
    /// 417: a path that is not an object (the seed's code).
    #[error("not an object path: {0}")]
    NotObjectPath(String),
    /// 429: too many failed API-key attempts from this address.
    #[error("too many failed apikey attempts; try again later")]
    Throttled,
    /// 507: the storage is full; nothing was stored.
    #[error("insufficient storage: the server's disk is full; nothing stored")]
    Full,
    /// 500: the store failed; details are logged.
    #[error("internal storage error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::NotObjectPath(_) => StatusCode::EXPECTATION_FAILED,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::Full => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooLarge { limit } => Self::TooLarge(limit),
            StoreError::Immutable(id) => Self::Conflict(format!(
                "{} is content-addressed data and cannot be changed",
                id.path()
            )),
            StoreError::SlotConflict(id) => Self::Conflict(format!(
                "{} is a key-value slot holding other bytes; nothing stored",
                id.path()
            )),
            StoreError::NotFound(id) => Self::NotFound(format!("not found: {}", id.path())),
            StoreError::RangeNotSatisfiable { len } => Self::RangeNotSatisfiable(len),
            StoreError::Body(e) => {
                Self::BadRequest(format!("reading the request body failed: {e}"))
            }
            StoreError::Full(e) => {
                tracing::warn!(error = %e, "storage full: write refused");
                Self::Full
            }
            StoreError::Io(e) => Self::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        } else {
            tracing::debug!(%status, reason = %self, "request refused");
        }
        let mut line: String = self
            .to_string()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        line.push('\n');
        let mut resp = (status, line).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Self::RangeNotSatisfiable(len) = self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}"))
        {
            // RFC 9110 §15.5.17: say how long the object is.
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        resp
    }
}
