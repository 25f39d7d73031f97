//! The regression corpus: minimal failing cases, one JSON file each,
//! replayed by a test that also snapshots their traces.

use std::path::{Path, PathBuf};

use cusim::flow::Strategy;
use serde::{Deserialize, Serialize};

use crate::input::scenario::{Scenario, ScenarioError};
use crate::input::schedule::Schedule;
use crate::judge::races::Race;
use crate::judge::Invariant;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    pub scenario: Scenario,
    pub strategy: Strategy,
    pub schedule: String,
    /// The invariant the case must keep breaking.
    pub invariant: Invariant,
    /// The catalog race whose interleaving the case holds; absent when it
    /// holds none of the catalog's (a failure the catalog does not describe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub race: Option<Race>,
    /// What the oracle said when the case was saved.
    pub message: String,
}

impl Regression {
    /// `<scenario>--<strategy>--<invariant>[--<race>].json`
    pub fn file_name(&self) -> String {
        let race = self.race.map_or(String::new(), |r| format!("--{}", r.to_string().to_lowercase()));
        format!("{}--{}--{}{race}.json", self.scenario.name, self.strategy, self.invariant)
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(self.file_name());
        let text = serde_json::to_string_pretty(self).expect("regressions serialize");
        std::fs::write(&path, text + "\n")?;
        Ok(path)
    }

    pub fn load(path: &Path) -> Result<Regression, ScenarioError> {
        let error =
            |json_path: String, reason: String| ScenarioError { origin: path.to_owned(), json_path, reason };
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(String::new(), format!("cannot read the file: {e}")))?;
        let mut deserializer = serde_json::Deserializer::from_str(&text);
        let regression: Regression = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| error(e.path().to_string(), e.into_inner().to_string()))?;
        // The embedded scenario gets the same checks as a scenario file.
        let scenario_text = serde_json::to_string(&regression.scenario).expect("scenarios serialize");
        Scenario::parse(&scenario_text, path)
            .map_err(|e| error(format!("scenario.{}", e.json_path), e.reason))?;
        // So is its schedule: a bad one is an error, never the default run.
        Schedule::parse(&regression.schedule).map_err(|e| error("schedule".into(), e.to_string()))?;
        Ok(regression)
    }
}

/// The saved regressions: `fixtures/regressions/` of this repository.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/regressions")
}

/// The JSON files of `dir`, sorted by name (the order every test that
/// walks a fixtures directory reports in).
pub fn json_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

impl Regression {
    /// Every regression saved in [`corpus_dir`], with its file, in file order.
    pub fn corpus() -> Result<Vec<(PathBuf, Regression)>, ScenarioError> {
        let dir = corpus_dir();
        let files = json_files(&dir).map_err(|e| ScenarioError {
            origin: dir.clone(),
            json_path: String::new(),
            reason: format!("cannot list the directory: {e}"),
        })?;
        files.into_iter().map(|path| Regression::load(&path).map(|r| (path, r))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_schedule_is_an_error_naming_the_field() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/regressions");
        let good = dir.join("r1-same-id-create--legacy--no_internal_error--r1.json");
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(good).unwrap()).unwrap();
        value["schedule"] = serde_json::Value::from("0.1.x");
        let bad = std::env::temp_dir().join(format!("cusim-bad-regression-{}.json", std::process::id()));
        std::fs::write(&bad, value.to_string()).unwrap();
        let error = Regression::load(&bad).unwrap_err();
        std::fs::remove_file(&bad).unwrap();
        assert_eq!(error.json_path, "schedule");
        assert!(error.reason.contains("\"x\""), "{}", error.reason);
    }
}
