//! What the checker knows of its target: which route family it speaks,
//! the newest `x-api-version` it accepts, whether check and track create a
//! missing customer, and what it does with a failed keyed request's key
//! (docs/API.md, "Generations"). The preflight (`preflight.rs`)
//! learns these facts before a run, or `--routes`, `--api-version` and
//! `--target-profile FILE` give them; the profile in force is kept in the
//! history, printed in the report, and read by the verdict.

use std::path::Path;

use cusim::model::{ApiVersion, FailedKey, Family, Generation, Route};
use serde::{Deserialize, Serialize};

use super::workload::Call;

/// A target's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The family creates, checks and tracks are sent on.
    pub routes: Family,
    /// The family reads (and the read-back) are sent on: `rpc`
    /// (`customers.get`) or `v1` (`GET /v1/customers/{id}`).
    pub reads: Family,
    /// The `x-api-version` of every call that need not create a missing
    /// customer: the newest the target accepts.
    pub api_version: ApiVersion,
    /// Whether check and track create a missing customer at `api_version`.
    pub auto_create_at_api_version: bool,
    /// The version a check or track that should create a missing customer
    /// is sent at; none: the target creates none at any version.
    pub auto_create_version: Option<ApiVersion>,
    /// What the target does with a failed keyed request's key.
    pub failed_key: FailedKey,
}

impl Default for Profile {
    /// docs/API.md's contract (the current generation).
    fn default() -> Profile {
        Profile::of(Generation::Current)
    }
}

impl Profile {
    /// The facts of `generation`, spoken on its newest routes.
    pub fn of(generation: Generation) -> Profile {
        let newest = generation.newest_version();
        let family = if generation.has_route(Route::BalancesTrack) { Family::Rpc } else { Family::V1 };
        let auto_create_version = if generation.auto_creates(newest) {
            Some(newest)
        } else {
            ApiVersion::KNOWN.into_iter().find(|v| generation.accepts(*v) && generation.auto_creates(*v))
        };
        Profile {
            routes: family,
            reads: if family == Family::Rpc && generation.has_route(Route::Get) {
                Family::Rpc
            } else {
                Family::V1
            },
            api_version: newest,
            auto_create_at_api_version: generation.auto_creates(newest),
            auto_create_version,
            failed_key: generation.failed_key(),
        }
    }

    /// The generations whose facts these are: the same newest version,
    /// auto-create and key, and every route the profile uses.
    pub fn generations(&self) -> Vec<Generation> {
        Generation::ALL
            .into_iter()
            .filter(|g| {
                g.newest_version() == self.api_version
                    && g.auto_creates(self.api_version) == self.auto_create_at_api_version
                    && g.failed_key() == self.failed_key
                    && self.used_routes().iter().all(|r| g.has_route(*r))
            })
            .collect()
    }

    /// The routes the profile sends calls on.
    pub fn used_routes(&self) -> Vec<Route> {
        let [create, _, check, track] = self.routes.routes();
        let read = self.reads.routes()[1];
        vec![create, read, check, track]
    }

    /// The `x-api-version` a check or track is sent at: the auto-create
    /// version when it should create a missing customer (and the target
    /// does at some version), else the newest.
    pub fn version_for(&self, auto_create: bool) -> ApiVersion {
        match (auto_create, self.auto_create_version) {
            (true, Some(version)) => version,
            _ => self.api_version,
        }
    }

    /// Whether `call`, a check or a track, creates a missing customer on
    /// the target, at the version it is sent at.
    pub fn creates_missing(&self, call: &Call) -> bool {
        match call {
            Call::Check { auto_create, .. } | Call::Track { auto_create, .. } => {
                let version = self.version_for(*auto_create);
                if version == self.api_version {
                    self.auto_create_at_api_version
                } else {
                    self.auto_create_version == Some(version)
                }
            }
            Call::Create { .. } => true,
            Call::Get { .. } => false,
        }
    }

    /// One line for reports: the facts, and the generations they match.
    pub fn describe(&self) -> String {
        let reads = match self.reads {
            Family::Rpc => "customers.get",
            Family::V1 => "GET /v1/customers/{id}",
        };
        let auto = match (self.auto_create_at_api_version, self.auto_create_version) {
            (true, _) => format!("check and track auto-create at {}", self.api_version),
            (false, Some(v)) => format!("check and track auto-create at {v}, not at {}", self.api_version),
            (false, None) => "check and track create no missing customer at any version tried".to_owned(),
        };
        let key = match self.failed_key {
            FailedKey::GivenBack => "a failed request's key is given back",
            FailedKey::Kept => "a failed request's key is kept",
        };
        let generations: Vec<&str> = self.generations().iter().map(|g| g.name()).collect();
        format!(
            "routes {}, reads by {reads}, x-api-version {}, {auto}, {key}; {}",
            self.routes.as_str(),
            self.api_version,
            if generations.is_empty() {
                "matches no generation of API.md".to_owned()
            } else {
                format!("matches generation {}", generations.join(", "))
            }
        )
    }

    /// A profile file (`--target-profile`): this struct as JSON, every
    /// field given.
    pub fn load(path: &Path) -> Result<Profile, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let profile: Profile = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{}: at {}: {}", path.display(), e.path(), e.inner()))?;
        if profile.routes == Family::V1 && profile.reads == Family::Rpc {
            return Err(format!(
                "{}: at reads: rpc reads (customers.get) with v1 routes: a target with customers.get has the rpc routes",
                path.display()
            ));
        }
        if profile.auto_create_at_api_version != (profile.auto_create_version == Some(profile.api_version)) {
            return Err(format!(
                "{}: at auto_create_at_api_version: {} with auto_create_version {}: a target that creates at api_version {} is sent its auto-creating calls there (auto_create_version equals api_version exactly when this is true)",
                path.display(),
                profile.auto_create_at_api_version,
                profile.auto_create_version.map_or("null".to_owned(), |v| v.to_string()),
                profile.api_version
            ));
        }
        if profile.auto_create_version.is_some_and(|v| v > profile.api_version) {
            return Err(format!(
                "{}: at auto_create_version: newer than api_version {}",
                path.display(),
                profile.api_version
            ));
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_generations_profile_matches_it_alone() {
        for generation in Generation::ALL {
            let profile = Profile::of(generation);
            assert_eq!(profile.generations(), [generation], "{profile:?}");
        }
        let feb = Profile::of(Generation::February2026);
        assert_eq!((feb.routes, feb.reads), (Family::Rpc, Family::V1));
        assert_eq!(Profile::of(Generation::January2026).routes, Family::V1);
        let current = Profile::default();
        assert_eq!(current.auto_create_version, Some(ApiVersion(2, 0, 0)));
        assert!(!current.auto_create_at_api_version);
        // The current generation spoken on its first routes is still it.
        let on_v1 = Profile { routes: Family::V1, reads: Family::V1, ..current };
        assert_eq!(on_v1.generations(), [Generation::Current]);
    }

    #[test]
    fn the_profile_files_of_the_fixtures_are_the_generations_facts() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/profiles");
        for generation in Generation::ALL {
            let path = dir.join(format!("{}.json", generation.name()));
            assert_eq!(Profile::load(&path).unwrap(), Profile::of(generation), "{}", path.display());
        }
    }

    #[test]
    fn a_profile_file_is_checked_field_by_field() {
        let dir = std::env::temp_dir().join(format!("cusim-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.json");
        let good = serde_json::to_string(&Profile::of(Generation::February2026)).unwrap();
        std::fs::write(&path, &good).unwrap();
        assert_eq!(Profile::load(&path).unwrap(), Profile::of(Generation::February2026));
        for (text, field) in [
            (good.replace("\"2.1.0\"", "\"two\""), "api_version"),
            (good.replace("\"kept\"", "\"lost\""), "failed_key"),
            (
                good.replace("\"routes\":\"rpc\"", "\"routes\":\"v1\"")
                    .replace("\"reads\":\"v1\"", "\"reads\":\"rpc\""),
                "reads",
            ),
            (good.replace('}', ",\"color\":1}"), "color"),
            (
                good.replace("\"auto_create_at_api_version\":true", "\"auto_create_at_api_version\":false"),
                "auto_create_at_api_version",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = Profile::load(&path).unwrap_err();
            assert!(error.contains("p.json") && error.contains(field), "{field}: {error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
