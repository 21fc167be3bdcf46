//! API errors: every failure is `{"error": {"code", "message", "field"}}` with a 4xx or 5xx status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for people and programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_field`, `not_found`, `unauthorized`, ...).
    pub code: String,
    /// What went wrong, in words.
    pub message: String,
    /// The offending field's path (`resources.gpu.share`), when one field is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error an API handler returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Offending field path.
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// A 400 about the request as a whole (malformed body, bad query).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A 404 for a missing resource.
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: what.into(),
            field: None,
        }
    }

    /// A 401: no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
            field: None,
        }
    }

    /// A 403: valid credentials, not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            field: None,
        }
    }

    /// A 409: the resource is not in a state that allows this.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
        }
    }

    /// A 503: a dependency (store, GPU backend) is not available.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
            field: None,
        }
    }

    /// A 500 for a failure of ours (logged; the message says what, not the internals).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
            field: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        (self.status, Json(self.body())).into_response()
    }
}

/// Turns a JSON object body into `T`, naming the field of the first problem (unknown field, wrong
/// type, missing field); anything but an object (serde would read an array positionally into a
/// struct) and trailing text after the value are refused.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::bad_request(
            "malformed_body",
            "the body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(crate::strict::Strict(&mut de)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let data_error = inner.classify() == serde_json::error::Category::Data;
        match field_of(&path, &inner.to_string()).filter(|_| data_error) {
            Some(field) => ApiError::invalid(field, inner.to_string()),
            None => ApiError::bad_request("malformed_body", format!("malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request("malformed_body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The field at fault, from a deserializer's path (`resources.gpu.count`, `.` at the top, `?` for
/// unknown positions) and its message (a missing field is named only there); `None`: the whole body.
pub fn field_of(path: &str, message: &str) -> Option<String> {
    let known: Vec<&str> = path
        .split('.')
        .take_while(|s| !s.starts_with('?'))
        .filter(|s| !s.is_empty())
        .collect();
    let missing = message
        .split_once("missing field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name);
    let mut parts = known;
    if let Some(name) = missing {
        parts.push(name);
    }
    (!parts.is_empty()).then(|| parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Probe>(br#"{"name": "a", "inner": {"count": "x"}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.field.as_deref(), Some("inner.count"));
        let e = parse_json::<Probe>(br#"{"name": "a", "inner": {"count": 1, "extra": 2}}"#)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.extra"));
        let e = parse_json::<Probe>(b"{not json").unwrap_err();
        assert_eq!(e.code, "malformed_body");
        let e = parse_json::<Probe>(br#"{"name": "a", "inner": {}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.count"));
        let e = parse_json::<Probe>(br#"{"inner": {"count": 1}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse_json::<Probe>(br#"{"name": "a", "inner": {"count": 1}} {}"#).unwrap_err();
        assert_eq!(e.code, "malformed_body");
        assert!(parse_json::<Probe>(b" {\"name\": \"a\", \"inner\": {\"count\": 1}}\n ").is_ok());
        // An array would be read positionally into the struct: refused.
        let e = parse_json::<Probe>(br#"["a", {"count": 1}]"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "malformed_body"));
        assert!(parse_json::<Probe>(b"null").is_err());
    }
}
