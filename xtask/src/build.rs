//! Builds test executables with `cargo test --no-run` and reads, from
//! cargo's JSON messages, which executables it made: the test command
//! then runs them itself, on two lanes, instead of asking cargo once per
//! mode (each with its own feature set, each a build of its own).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One test executable a build made.
#[derive(Debug, Clone)]
pub struct TestBin {
    /// The package's name (`cusim-sim`).
    pub package: String,
    /// `lib`, `bin` or `test`.
    pub kind: String,
    /// The target's name (`safe_everywhere`).
    pub name: String,
    pub exe: PathBuf,
    /// The package's folder: cargo runs a package's tests from there.
    pub dir: PathBuf,
}

impl TestBin {
    /// `cusim-sim/test:safe_everywhere`, `cusim/lib`, `cusim-sim/bin:cusim`.
    pub fn label(&self) -> String {
        match self.kind.as_str() {
            "lib" => format!("{}/lib", self.package),
            kind => format!("{}/{kind}:{}", self.package, self.name),
        }
    }
}

/// A build's executables and how long it took.
pub struct Built {
    pub bins: Vec<TestBin>,
    pub seconds: f64,
}

/// The `name = "…"` of a manifest's `[package]`.
fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let package = format!("\n{text}").split("\n[package]").nth(1)?.to_owned();
    package.lines().find_map(|line| {
        let value = line.trim().strip_prefix("name")?.trim_start().strip_prefix('=')?.trim();
        Some(value.trim_matches('"').to_owned())
    })
}

/// The test executable a `compiler-artifact` message names, if any.
fn test_bin(message: &serde_json::Value) -> Option<TestBin> {
    if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
        return None;
    }
    let exe = PathBuf::from(message["executable"].as_str()?);
    let manifest = PathBuf::from(message["manifest_path"].as_str()?);
    let target = &message["target"];
    Some(TestBin {
        package: package_name(&manifest)?,
        kind: target["kind"][0].as_str()?.to_owned(),
        name: target["name"].as_str()?.to_owned(),
        exe,
        dir: manifest.parent()?.to_path_buf(),
    })
}

/// Runs `cargo ARGS --no-run --message-format=json-render-diagnostics` in
/// `root` with `envs` (cargo's progress and diagnostics to `stderr`), and
/// returns the test executables it made, sorted by label.
pub fn build(root: &Path, args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Result<Built, String> {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO"));
    command
        .args(args)
        .args(["--no-run", "--message-format=json-render-diagnostics"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().map_err(|e| format!("could not start cargo: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut bins = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading cargo's messages: {e}"))?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if let Some(bin) = test_bin(&message) {
            bins.push(bin);
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo {} --no-run exited with {status}", args.join(" ")));
    }
    bins.sort_by_key(TestBin::label);
    bins.dedup_by(|a, b| a.exe == b.exe);
    Ok(Built { bins, seconds: started.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_test_artifact_and_skips_the_rest() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = root.join("sim/Cargo.toml");
        let message = serde_json::json!({
            "reason": "compiler-artifact",
            "manifest_path": manifest,
            "target": {"kind": ["test"], "name": "safe_everywhere"},
            "profile": {"test": true},
            "executable": "/t/release/deps/safe_everywhere-0123",
        });
        let bin = test_bin(&message).expect("a test executable");
        assert_eq!(bin.label(), "cusim-sim/test:safe_everywhere");
        assert_eq!(bin.dir, root.join("sim"));
        let mut library = message.clone();
        library["profile"]["test"] = false.into();
        assert!(test_bin(&library).is_none(), "a library built for the tests is not a test");
        let mut root_lib = message;
        root_lib["manifest_path"] = root.join("Cargo.toml").to_string_lossy().into_owned().into();
        root_lib["target"] = serde_json::json!({"kind": ["lib"], "name": "cusim"});
        assert_eq!(test_bin(&root_lib).expect("the root's unit tests").label(), "cusim/lib");
    }
}
