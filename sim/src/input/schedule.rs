//! Schedules as strings: `0.1.1.+5000.0!crash.2`.
//!
//! Each token is one decision: `N` lets request N take its next step
//! (for a request whose wait is over, running its statement again; for a
//! member of a cycle of waits, being the deadlock victim);
//! `N!kind` does so with a fault (`crash`, `db_error`,
//! `stripe_timeout_after_success`, `cache_down`) injected at that step;
//! `+MS` advances the virtual clock by MS milliseconds. When the tokens run
//! out before the run is over, the lowest-numbered runnable request moves,
//! so a schedule need only spell out its interesting prefix.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::input::scenario::FaultKind;

/// The longest clock move one token may make: a year.
pub const MAX_TICK_MS: u64 = 365 * 24 * 60 * 60 * 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Token {
    Run { request: usize, fault: Option<FaultKind> },
    Tick { ms: u64 },
}

impl Token {
    pub fn run(request: usize) -> Token {
        Token::Run { request, fault: None }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Run { request, fault: None } => write!(f, "{request}"),
            Token::Run { request, fault: Some(kind) } => write!(f, "{request}!{kind}"),
            Token::Tick { ms } => write!(f, "+{ms}"),
        }
    }
}

/// A list of decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Schedule(pub Vec<Token>);

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, token) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{token}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule token {index} ({token:?}): {reason}")]
pub struct ScheduleError {
    /// 0-based position of the bad token.
    pub index: usize,
    pub token: String,
    pub reason: String,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Schedule::default());
        }
        let tokens = text.split('.').enumerate().map(|(index, raw)| {
            let error = |reason: String| ScheduleError { index, token: raw.to_owned(), reason };
            if let Some(ms) = raw.strip_prefix('+') {
                return match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 && ms <= MAX_TICK_MS => Ok(Token::Tick { ms }),
                    _ => Err(error(format!(
                        "a clock advance is `+` and milliseconds, from 1 to {MAX_TICK_MS} (a year)"
                    ))),
                };
            }
            let (request, fault) = match raw.split_once('!') {
                Some((request, kind)) => {
                    let kind = FaultKind::parse(kind).ok_or_else(|| {
                        let kinds: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
                        error(format!("unknown fault {kind:?}; expected one of {}", kinds.join(", ")))
                    })?;
                    (request, Some(kind))
                }
                None => (raw, None),
            };
            if request.is_empty() || !request.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error("expected a request number, `N!fault` or `+milliseconds`".into()));
            }
            let request = request.parse().map_err(|_| error("request number too large".into()))?;
            Ok(Token::Run { request, fault })
        });
        tokens.collect::<Result<Vec<_>, _>>().map(Schedule)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let text = "0.1.1.+5000.0!crash.2!stripe_timeout_after_success";
        assert_eq!(Schedule::parse(text).unwrap().to_string(), text);
        assert_eq!(Schedule::parse("").unwrap(), Schedule::default());
    }

    #[test]
    fn names_the_bad_token() {
        let error = Schedule::parse("0.1.x.2").unwrap_err();
        assert_eq!((error.index, error.token.as_str()), (2, "x"));
        assert!(Schedule::parse("0!boom").unwrap_err().reason.contains("unknown fault"));
        assert!(Schedule::parse("+0").is_err());
        assert!(Schedule::parse("0..1").is_err());
        assert!(Schedule::parse("-1").is_err());
    }
}
