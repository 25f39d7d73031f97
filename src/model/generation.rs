//! The generations of the modelled server's API (docs/API.md,
//! "Generations"): what a client meets when it talks to a deployment of
//! each, read from that server's code. `cusim serve --generation` serves
//! one; `cusim check` learns which facts a target has (its profile) and
//! names the generation they match.
//!
//! What differs between generations here: the routes, the newest
//! `x-api-version`, whether check and track create a missing customer at a
//! version, and what happens to a failed keyed request's key. What does not
//! differ here (cusim models one create-customer flow, chosen by
//! `--strategy`): the flow itself and the response shapes, which are the
//! current ones (those autumn-js 1.3.13 validates) at every version.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Generation {
    /// The server of 2026-01-13: the first route family only, newest
    /// version 2.0.0, auto-create at every version, keys kept.
    #[serde(rename = "2026-01")]
    January2026,
    /// The server of 2026-02-18: both route families but no
    /// `customers.get`, newest version 2.1.0, auto-create at every
    /// version, keys kept.
    #[serde(rename = "2026-02")]
    February2026,
    /// docs/API.md's contract.
    #[serde(rename = "current")]
    Current,
}

/// A route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// `POST /v1/customers` (create or get, `id` in the body).
    Customers,
    /// `GET /v1/customers/{id}`.
    CustomerById,
    /// `POST /v1/check`.
    Check,
    /// `POST /v1/track`.
    Track,
    /// `POST /v1/customers.get_or_create`.
    GetOrCreate,
    /// `POST /v1/customers.get`.
    Get,
    /// `POST /v1/balances.check`.
    BalancesCheck,
    /// `POST /v1/balances.track`.
    BalancesTrack,
}

impl Route {
    pub const ALL: [Route; 8] = [
        Route::Customers,
        Route::CustomerById,
        Route::Check,
        Route::Track,
        Route::GetOrCreate,
        Route::Get,
        Route::BalancesCheck,
        Route::BalancesTrack,
    ];

    /// Its method and path (`{id}` for the customer id).
    pub fn describe(self) -> &'static str {
        match self {
            Route::Customers => "POST /v1/customers",
            Route::CustomerById => "GET /v1/customers/{id}",
            Route::Check => "POST /v1/check",
            Route::Track => "POST /v1/track",
            Route::GetOrCreate => "POST /v1/customers.get_or_create",
            Route::Get => "POST /v1/customers.get",
            Route::BalancesCheck => "POST /v1/balances.check",
            Route::BalancesTrack => "POST /v1/balances.track",
        }
    }
}

/// A route family: the first (`v1`: `/v1/customers`, `/v1/check`,
/// `/v1/track`) or the one named after the client's calls (`rpc`:
/// `/v1/customers.get_or_create`, `/v1/balances.check`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    V1,
    Rpc,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V1 => "v1",
            Family::Rpc => "rpc",
        }
    }

    pub fn parse(text: &str) -> Option<Family> {
        match text {
            "v1" => Some(Family::V1),
            "rpc" => Some(Family::Rpc),
            _ => None,
        }
    }

    /// Its create, check and track routes (a read has a route of its own
    /// per family too, but `rpc`'s arrived later than the rest).
    pub fn routes(self) -> [Route; 4] {
        match self {
            Family::V1 => [Route::Customers, Route::CustomerById, Route::Check, Route::Track],
            Family::Rpc => [Route::GetOrCreate, Route::Get, Route::BalancesCheck, Route::BalancesTrack],
        }
    }
}

/// What the idempotency middleware does with the key of a request that
/// failed (a 4xx other than 409, or a 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedKey {
    /// It is given back: the client may send the request again with it.
    GivenBack,
    /// It stays claimed for its 24 hours: a resend is 409.
    Kept,
}

/// An `x-api-version`: `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion(pub u32, pub u32, pub u32);

impl ApiVersion {
    /// The version below which check and track create a missing customer
    /// in the current generation.
    pub const NO_AUTO_CREATE: ApiVersion = ApiVersion(2, 1, 0);

    /// The versions a client knows, newest first: the ones the generations
    /// introduced (the 1.x and 0.x versions are older than any generation
    /// here and shaped otherwise).
    pub const KNOWN: [ApiVersion; 6] = [
        ApiVersion(2, 4, 0),
        ApiVersion(2, 3, 0),
        ApiVersion(2, 2, 0),
        ApiVersion(2, 1, 0),
        ApiVersion(2, 0, 0),
        ApiVersion(1, 2, 0),
    ];

    /// Parses `major[.minor[.patch]]`, each part up to six digits.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let pieces: Vec<&str> = text.trim().split('.').collect();
        if pieces.is_empty() || pieces.len() > 3 {
            return None;
        }
        let mut parts = [0u32; 3];
        for (slot, piece) in parts.iter_mut().zip(&pieces) {
            if piece.is_empty() || piece.len() > 6 || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = piece.parse().ok()?;
        }
        Some(ApiVersion(parts[0], parts[1], parts[2]))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Serialize for ApiVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ApiVersion, D::Error> {
        let text = String::deserialize(deserializer)?;
        ApiVersion::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not an API version (major.minor.patch)"))
        })
    }
}

impl Generation {
    pub const ALL: [Generation; 3] = [Generation::January2026, Generation::February2026, Generation::Current];

    pub fn name(self) -> &'static str {
        match self {
            Generation::January2026 => "2026-01",
            Generation::February2026 => "2026-02",
            Generation::Current => "current",
        }
    }

    pub fn parse(text: &str) -> Option<Generation> {
        Generation::ALL.into_iter().find(|g| g.name() == text)
    }

    /// Whether the generation answers `route`.
    pub fn has_route(self, route: Route) -> bool {
        match self {
            Generation::January2026 => Family::V1.routes().contains(&route),
            Generation::February2026 => route != Route::Get,
            Generation::Current => true,
        }
    }

    /// The newest `x-api-version` it accepts (a newer one is 400
    /// `invalid_api_version`); also the version of a request that sends none.
    pub fn newest_version(self) -> ApiVersion {
        match self {
            Generation::January2026 => ApiVersion(2, 0, 0),
            Generation::February2026 => ApiVersion(2, 1, 0),
            Generation::Current => ApiVersion(2, 4, 0),
        }
    }

    /// Whether it accepts `version`: from 1.0.0 up to its newest.
    pub fn accepts(self, version: ApiVersion) -> bool {
        (ApiVersion(1, 0, 0)..=self.newest_version()).contains(&version)
    }

    /// Whether check and track create a missing customer at `version`.
    pub fn auto_creates(self, version: ApiVersion) -> bool {
        match self {
            Generation::January2026 | Generation::February2026 => true,
            Generation::Current => version < ApiVersion::NO_AUTO_CREATE,
        }
    }

    /// What its idempotency middleware does with a failed request's key.
    pub fn failed_key(self) -> FailedKey {
        match self {
            Generation::Current => FailedKey::GivenBack,
            Generation::January2026 | Generation::February2026 => FailedKey::Kept,
        }
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_generation_has_the_facts_of_its_code() {
        let jan = Generation::January2026;
        assert!(Route::ALL.iter().all(|r| jan.has_route(*r) == Family::V1.routes().contains(r)));
        assert!(!Generation::February2026.has_route(Route::Get));
        assert!(Generation::February2026.has_route(Route::GetOrCreate));
        assert!(Route::ALL.iter().all(|r| Generation::Current.has_route(*r)));
        assert!(jan.accepts(ApiVersion(2, 0, 0)) && !jan.accepts(ApiVersion(2, 1, 0)));
        assert!(Generation::February2026.auto_creates(ApiVersion(2, 1, 0)));
        assert!(!Generation::Current.auto_creates(ApiVersion(2, 1, 0)));
        assert!(Generation::Current.auto_creates(ApiVersion(2, 0, 0)));
        assert_eq!(jan.failed_key(), FailedKey::Kept);
        assert_eq!(Generation::Current.failed_key(), FailedKey::GivenBack);
        for g in Generation::ALL {
            assert_eq!(Generation::parse(g.name()), Some(g));
            assert!(ApiVersion::KNOWN.contains(&g.newest_version()));
        }
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(ApiVersion::parse("2.1"), Some(ApiVersion(2, 1, 0)));
        assert_eq!(ApiVersion::parse("2"), Some(ApiVersion(2, 0, 0)));
        assert_eq!(ApiVersion(2, 4, 0).to_string(), "2.4.0");
        for bad in ["", "2.", "a.b", "1.2.3.4", "1234567"] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
        assert!(ApiVersion::KNOWN.windows(2).all(|w| w[0] > w[1]), "newest first");
    }
}
