//! Node for the `http` mode: the machine's own, else Debian's `nodejs`
//! and `npm` packages.

use std::process::Command;

use crate::postgres::install_package;

/// The oldest Node the client tests run on (`node:test`, `fetch`).
const MIN_MAJOR: u32 = 18;

fn major_version() -> Option<u32> {
    let output = Command::new("node").arg("--version").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.trim().trim_start_matches('v').split('.').next()?.parse().ok()
}

fn has_npm() -> bool {
    Command::new("npm").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Makes sure `node` (18 or newer) and `npm` are on the PATH.
pub fn ensure() -> Result<(), String> {
    if major_version().is_none() {
        install_package("Node", "nodejs")?;
    }
    if !has_npm() {
        install_package("npm", "npm")?;
    }
    match major_version() {
        Some(major) if major >= MIN_MAJOR => Ok(()),
        Some(major) => {
            Err(format!("Node {major} is too old: the client tests need Node {MIN_MAJOR} or newer"))
        }
        None => Err("node was installed but does not run".into()),
    }
}
