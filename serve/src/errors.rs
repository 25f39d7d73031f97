//! Error answers: `{"message", "code", "env"}` with their HTTP status
//! (API.md), from the flows' errors and from the HTTP layer's own.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cusim::model::{ApiError, Env, ErrorCode};
use serde_json::{json, Value};

/// A JSON body with `Content-Type: application/json`.
pub fn json_body(value: &Value) -> Response {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// The tenant's environment, once the request is authenticated.
    pub env: Option<Env>,
}

impl HttpError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> HttpError {
        HttpError { status, code, message: message.into(), env: None }
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> HttpError {
        HttpError::new(401, code, message)
    }

    pub fn invalid_inputs(message: impl Into<String>) -> HttpError {
        HttpError::new(400, "invalid_inputs", message)
    }

    pub fn in_env(self, env: Env) -> HttpError {
        HttpError { env: Some(env), ..self }
    }

    /// The flows' error, as the modelled server answers it.
    pub fn from_api(error: ApiError) -> HttpError {
        let code = match error.code {
            // API.md: an id-less create without an email.
            ErrorCode::InvalidCustomer => {
                return HttpError::new(400, "invalid_request", "Either customer ID or email is required")
            }
            other => other.as_str(),
        };
        HttpError::new(error.code.http_status(), code, error.message)
    }

    pub fn body(&self) -> serde_json::Value {
        match self.env {
            Some(env) => json!({"message": self.message, "code": self.code, "env": env.as_str()}),
            None => json!({"message": self.message, "code": self.code}),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, json_body(&self.body())).into_response();
        if self.status == 503 {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cusim::backend::DbError;

    #[test]
    fn a_database_that_went_away_is_503_and_a_bug_is_500() {
        let status = |code: &str| {
            let failed = DbError::Failed { code: code.into(), message: "…".into() };
            HttpError::from_api(ApiError::from(failed)).status
        };
        for lost in ["client", "57P01", "08006", "53300"] {
            assert_eq!(status(lost), 503, "{lost}");
        }
        assert_eq!(status("42P01"), 500);
        let unique = DbError::UniqueViolation { constraint: "customers_org_env_id_key".into() };
        assert_eq!(HttpError::from_api(ApiError::from(unique)).status, 500);
        let unavailable = HttpError::from_api(ApiError::from(DbError::Unavailable));
        assert_eq!((unavailable.status, unavailable.code), (503, "db_unavailable"));
    }
}
