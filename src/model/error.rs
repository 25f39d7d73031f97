//! The one error type of the API layer: SPEC §2's codes and HTTP statuses.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::id::IdError;

/// An error code of SPEC §2, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidInputs,
    InvalidCustomer,
    DuplicateCustomerId,
    CustomerNotFound,
    StripeError,
    /// An injected database fault; the client may retry.
    DbUnavailable,
    /// A bug. A race must never surface as one; `legacy` does (R1).
    InternalError,
    /// A repeated `Idempotency-Key` (the first response is not replayed).
    DuplicateIdempotencyKey,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::InvalidInputs,
        ErrorCode::InvalidCustomer,
        ErrorCode::DuplicateCustomerId,
        ErrorCode::CustomerNotFound,
        ErrorCode::StripeError,
        ErrorCode::DbUnavailable,
        ErrorCode::InternalError,
        ErrorCode::DuplicateIdempotencyKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInputs => "invalid_inputs",
            ErrorCode::InvalidCustomer => "invalid_customer",
            ErrorCode::DuplicateCustomerId => "duplicate_customer_id",
            ErrorCode::CustomerNotFound => "customer_not_found",
            ErrorCode::StripeError => "stripe_error",
            ErrorCode::DbUnavailable => "db_unavailable",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::DuplicateIdempotencyKey => "duplicate_idempotency_key",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidInputs | ErrorCode::InvalidCustomer | ErrorCode::StripeError => 400,
            ErrorCode::CustomerNotFound => 404,
            ErrorCode::DuplicateCustomerId | ErrorCode::DuplicateIdempotencyKey => 409,
            ErrorCode::InternalError => 500,
            ErrorCode::DbUnavailable => 503,
        }
    }

    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::DbUnavailable)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{code, message}`, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }

    /// `invalid_customer`: an id-less create must name an email.
    pub fn email_required() -> ApiError {
        ApiError::new(ErrorCode::InvalidCustomer, "Email is required when `id` is null")
    }

    pub fn not_found(id: &str) -> ApiError {
        ApiError::new(ErrorCode::CustomerNotFound, format!("Customer {id} not found"))
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }
}

/// One invalid field: `field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn customer_id(field: &'static str, err: &IdError) -> FieldError {
        FieldError { field, message: err.to_string() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins field errors into one `invalid_inputs` error: a single one reads
/// `field: message`; several read `[Validation Errors] a; b`.
pub fn validation_error(errors: &[FieldError]) -> ApiError {
    assert!(!errors.is_empty(), "validation_error needs at least one field error");
    let message = if let [only] = errors {
        only.to_string()
    } else {
        let joined: Vec<String> = errors.iter().map(FieldError::to_string).collect();
        format!("[Validation Errors] {}", joined.join("; "))
    };
    ApiError::new(ErrorCode::InvalidInputs, message)
}

impl From<crate::backend::DbError> for ApiError {
    /// An injected database fault, or a real database that went away, is
    /// retryable (`db_unavailable`); any other database error reaching a
    /// client is a bug (`internal_error`).
    fn from(error: crate::backend::DbError) -> ApiError {
        match error {
            crate::backend::DbError::Unavailable => {
                ApiError::new(ErrorCode::DbUnavailable, "database unavailable")
            }
            crate::backend::DbError::Timeout => ApiError::new(ErrorCode::DbUnavailable, "database timed out"),
            lost if lost.is_connection_lost() => {
                ApiError::new(ErrorCode::DbUnavailable, format!("database unavailable: {lost}"))
            }
            other => ApiError::new(ErrorCode::InternalError, other.to_string()),
        }
    }
}

impl From<crate::backend::StripeError> for ApiError {
    fn from(error: crate::backend::StripeError) -> ApiError {
        ApiError::new(ErrorCode::StripeError, error.to_string())
    }
}

impl From<crate::backend::BackendError> for ApiError {
    fn from(error: crate::backend::BackendError) -> ApiError {
        match error {
            crate::backend::BackendError::Db(db) => db.into(),
            crate::backend::BackendError::Cache(cache) => {
                ApiError::new(ErrorCode::InternalError, cache.to_string())
            }
        }
    }
}
