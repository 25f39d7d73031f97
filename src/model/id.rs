//! Customer id validation: the one definition used by create, check and track.
//!
//! The rules and their messages are SPEC §2's, checked in its order, so a bad
//! id always reports its *first* offending rule.

use std::fmt;

/// Why a string is not a valid customer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    Empty,
    ContainsAt,
    ContainsSpace,
    ContainsPeriod,
    /// The first character outside `[a-zA-Z0-9_-]`.
    InvalidChar(char),
}

const ALLOWED: &str = "Use only letters, numbers, underscores, and hyphens.";

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => f.write_str("can't be an empty string"),
            IdError::ContainsAt => write!(f, "cannot contain @ symbol. {ALLOWED}"),
            IdError::ContainsSpace => write!(f, "cannot contain spaces. {ALLOWED}"),
            IdError::ContainsPeriod => write!(f, "cannot contain periods. {ALLOWED}"),
            IdError::InvalidChar(c) => write!(f, "cannot contain '{c}'. {ALLOWED}"),
        }
    }
}

/// True for the characters of `^[a-zA-Z0-9_-]+$`.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A customer id that passed [`validate_customer_id`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(raw: &str) -> Result<CustomerId, IdError> {
        validate_customer_id(raw)?;
        Ok(CustomerId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks `raw` against SPEC §2's rules, in order.
pub fn validate_customer_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.contains('@') {
        return Err(IdError::ContainsAt);
    }
    if raw.contains(' ') {
        return Err(IdError::ContainsSpace);
    }
    if raw.contains('.') {
        return Err(IdError::ContainsPeriod);
    }
    match raw.chars().find(|&c| !is_id_char(c)) {
        Some(c) => Err(IdError::InvalidChar(c)),
        None => Ok(()),
    }
}
