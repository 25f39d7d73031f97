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
        if error.code == ErrorCode::InternalError && lost_database(&error.message) {
            return HttpError::new(503, "db_unavailable", error.message);
        }
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

/// Whether an `internal_error` is the database going away rather than a
/// bug: the connection broke (`database error client: …`, sqlx's own
/// errors), or Postgres refused or ended the session (SQLSTATE class 08,
/// 53 insufficient resources, 57P01–57P03 shutdown). The flows see these as
/// any other failed statement; the client is told to retry.
fn lost_database(message: &str) -> bool {
    let Some(rest) = message.strip_prefix("database error ") else {
        return false;
    };
    let code = rest.split(':').next().unwrap_or("");
    code == "client"
        || code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03")
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

    #[test]
    fn a_database_that_went_away_is_503_and_a_bug_is_500() {
        let status =
            |message: &str| HttpError::from_api(ApiError::new(ErrorCode::InternalError, message)).status;
        assert_eq!(status("database error client: error communicating with database: broken pipe"), 503);
        assert_eq!(status("database error 57P01: terminating connection due to administrator command"), 503);
        assert_eq!(status("database error 08006: connection failure"), 503);
        assert_eq!(status("database error 53300: too many connections"), 503);
        assert_eq!(status("database error 42P01: relation does not exist"), 500);
        assert_eq!(status("23505 unique violation on customers_org_env_id_key"), 500);
        let unavailable =
            HttpError::from_api(ApiError::new(ErrorCode::DbUnavailable, "database unavailable"));
        assert_eq!((unavailable.status, unavailable.code), (503, "db_unavailable"));
    }
}
