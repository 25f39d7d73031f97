//! The example pages under `docs/` are what `cusim replay --html` makes of
//! the R1 and R2 legacy minimal schedules of the regression corpus, byte
//! for byte, and `docs/README.md` gives the commands that made them.

use std::path::Path;
use std::process::Command;

use cusim_sim::corpus::regression::Regression;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// (page, built-in scenario, regression case whose minimal schedule it shows)
const PAGES: [(&str, &str, &str); 2] = [
    (
        "docs/r1-minimal-trace.html",
        "r1-same-id-create",
        "r1-same-id-create--legacy--no_internal_error--r1.json",
    ),
    ("docs/r2-minimal-trace.html", "r2-stale-cache", "r2-stale-cache--legacy--fresh_cache--r2.json"),
];

#[test]
fn the_docs_pages_are_up_to_date() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("docs/README.md")).expect("docs/README.md");
    let out_dir = std::env::temp_dir().join(format!("cusim-docs-html-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    for (page, scenario, case) in PAGES {
        let regression = Regression::load(&Path::new(ROOT).join("fixtures/regressions").join(case))
            .unwrap_or_else(|e| panic!("{e}"));
        let schedule = regression.schedule;
        let command = format!(
            "cusim replay --scenario {scenario} --strategy legacy --schedule {schedule} --html {page}"
        );
        assert!(
            readme.contains(&command),
            "docs/README.md must give the command that makes {page} from the minimal schedule of \
             fixtures/regressions/{case}:\n  {command}"
        );
        let fresh = out_dir.join(Path::new(page).file_name().unwrap());
        let output = Command::new(env!("CARGO_BIN_EXE_cusim"))
            .args(["replay", "--scenario", scenario, "--strategy", "legacy", "--schedule", &schedule])
            .arg("--html")
            .arg(&fresh)
            .current_dir(ROOT)
            .output()
            .expect("the cusim binary runs");
        assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
        let fresh = std::fs::read(&fresh).expect("the page was written");
        let committed = std::fs::read(Path::new(ROOT).join(page)).unwrap_or_default();
        assert!(
            fresh == committed,
            "{page} is stale. Regenerate it from the workspace root with\n  \
             cargo run --release -p cusim-sim --bin cusim -- replay --scenario {scenario} --strategy legacy \
             --schedule {schedule} --html {page}"
        );
    }
}
