//! `cargo xtask claims`: the claims ledger the tests wrote (one file per
//! claim in `target/claims/`, see `cusim_sim::claims`), printed as a
//! table. `--write` makes the docs' tables from it: the claims chapter's
//! section (one row per kind of claim) and BENCHMARKS' table of every
//! claim with its figures, each between its markers. `cargo xtask test`
//! runs [`check`] after every mode has run: the checked-in tables must be
//! what the tests wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub id: String,
    pub claim: String,
    pub scope: String,
    pub bound: String,
    /// `(name, value)`, in the order the test gave them.
    pub figures: Vec<(String, u64)>,
    pub seconds: f64,
}

impl Line {
    fn parse(text: &str) -> Result<Line, String> {
        let fields: Vec<&str> = text.trim_end_matches('\n').split('\t').collect();
        let [id, claim, scope, bound, figures, seconds] = fields[..] else {
            return Err(format!("expected 6 tab-separated fields, found {}", fields.len()));
        };
        let figures = figures
            .split_whitespace()
            .map(|pair| {
                let (name, value) = pair.split_once('=').ok_or_else(|| format!("figure {pair:?}: no ="))?;
                let value = value.parse().map_err(|_| format!("figure {pair:?}: not a count"))?;
                Ok((name.to_owned(), value))
            })
            .collect::<Result<_, String>>()?;
        let seconds = seconds.parse().map_err(|_| format!("seconds {seconds:?}: not a number"))?;
        Ok(Line {
            id: id.to_owned(),
            claim: claim.to_owned(),
            scope: scope.to_owned(),
            bound: bound.to_owned(),
            figures,
            seconds,
        })
    }

    /// The kind of claim: the id up to its first `/`.
    fn kind(&self) -> &str {
        self.id.split('/').next().unwrap_or(&self.id)
    }

    fn figures_text(&self) -> String {
        figures_text(&self.figures)
    }
}

fn figures_text(figures: &[(String, u64)]) -> String {
    figures.iter().map(|(name, value)| format!("{} {name}", thousands(*value))).collect::<Vec<_>>().join(", ")
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The ledger's folder: `CUSIM_CLAIMS_DIR`, else `target/claims`.
pub fn ledger_dir(root: &Path) -> PathBuf {
    std::env::var_os("CUSIM_CLAIMS_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target/claims"))
}

/// Every line of the ledger, by id.
pub fn read(dir: &Path) -> Result<Vec<Line>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read the ledger: {e}", dir.display()))?;
    let mut lines = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("tsv") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        lines.push(Line::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    lines.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(lines)
}

/// Empties the ledger (before a full test run).
pub fn clear(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: cannot empty the ledger: {e}", dir.display())),
    }
}

/// The ledger as a table for a terminal.
pub fn print(lines: &[Line]) {
    let rows: Vec<[String; 5]> = lines
        .iter()
        .map(|l| {
            [l.id.clone(), l.bound.clone(), l.figures_text(), format!("{:.1} s", l.seconds), l.scope.clone()]
        })
        .collect();
    let header = ["claim", "bound", "figures", "time", "scope"].map(str::to_owned);
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().chain([&header]).map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in [&header].into_iter().chain(&rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    let seconds: f64 = lines.iter().map(|l| l.seconds).sum();
    println!("{} claims, {seconds:.0} s of tests behind them", lines.len());
}

/// The claims chapter's table (docs/book/claims.md): one row per kind of claim (lines of one kind
/// share their claim), with how many cases, their bounds (samples summed)
/// and their figures summed (a figure named `…_after`, a position, by its
/// largest).
pub fn readme_table(lines: &[Line]) -> Result<String, String> {
    let mut kinds: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for line in lines {
        kinds.entry(line.kind()).or_default().push(line);
    }
    let mut out = String::from("| claim | cases | bound | figures |\n|---|---|---|---|\n");
    for (kind, of) in kinds {
        let claim = &of[0].claim;
        if let Some(other) = of.iter().find(|l| &l.claim != claim) {
            return Err(format!(
                "claims of kind {kind} must say the same thing: {} and {} differ",
                of[0].id, other.id
            ));
        }
        // Bound → (cases, cases sampled in all).
        let mut bounds: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for line in &of {
            let (bound, drawn) = match line.bound.strip_prefix("sampled ").and_then(|n| n.parse::<u64>().ok())
            {
                Some(n) => ("sampled".to_owned(), n),
                None => (line.bound.clone(), 0),
            };
            let slot = bounds.entry(bound).or_default();
            slot.0 += 1;
            slot.1 += drawn;
        }
        let bounds: Vec<String> = bounds
            .into_iter()
            .map(|(bound, (n, drawn))| {
                let bound = if bound == "sampled" { format!("sampled {}", thousands(drawn)) } else { bound };
                if n == of.len() {
                    bound
                } else {
                    format!("{bound} ({n})")
                }
            })
            .collect();
        let mut sums: Vec<(String, u64)> = Vec::new();
        for (name, value) in of.iter().flat_map(|l| &l.figures) {
            let position = name.ends_with("_after");
            match sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, sum)) if position => *sum = (*sum).max(*value),
                Some((_, sum)) => *sum += value,
                None => sums.push((name.clone(), *value)),
            }
        }
        out.push_str(&format!(
            "| {claim} | {} | {} | {} |\n",
            of.len(),
            bounds.join("; "),
            figures_text(&sums)
        ));
    }
    Ok(out)
}

/// BENCHMARKS' table: every claim with its scope, bound and figures.
pub fn benchmarks_table(lines: &[Line]) -> String {
    let mut out = String::from("| claim | scope | bound | figures |\n|---|---|---|---|\n");
    for line in lines {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            line.id,
            line.scope,
            line.bound,
            line.figures_text()
        ));
    }
    out
}

/// `doc` with the text between `<!-- NAME begin -->` and `<!-- NAME end -->`
/// replaced by `table`.
fn splice(doc: &str, name: &str, table: &str) -> Result<String, String> {
    let (begin, end) = (format!("<!-- {name} begin -->\n"), format!("<!-- {name} end -->"));
    let start = doc.find(&begin).ok_or_else(|| format!("no {begin:?} marker"))? + begin.len();
    let stop = doc[start..].find(&end).ok_or_else(|| format!("no {end:?} marker after the begin"))? + start;
    Ok(format!("{}{table}{}", &doc[..start], &doc[stop..]))
}

/// The docs that hold tables made from the ledger: (file, marker, table).
fn tables(lines: &[Line]) -> Result<Vec<(&'static str, &'static str, String)>, String> {
    Ok(vec![
        ("docs/book/claims.md", "claims", readme_table(lines)?),
        ("BENCHMARKS.md", "claims", benchmarks_table(lines)),
    ])
}

/// Whether every doc's table is what the ledger makes; the first that is
/// not, with the command that mends it.
pub fn check(root: &Path) -> Result<usize, String> {
    let lines = read(&ledger_dir(root))?;
    if lines.is_empty() {
        return Err("the ledger is empty: no claim-bearing test ran".into());
    }
    for (file, marker, table) in tables(&lines)? {
        let path = root.join(file);
        let doc = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let wanted = splice(&doc, marker, &table)?;
        if wanted != doc {
            return Err(format!(
                "{file}: the claims table differs from what the tests wrote; `cargo xtask claims --write` \
                 makes it anew (after a full `cargo xtask test`), `cargo xtask claims` prints the ledger\n{}",
                row_changes(&doc, &wanted)
            ));
        }
    }
    Ok(lines.len())
}

/// The table rows of `doc` that `wanted` lacks (`- `) and those it adds
/// (`+ `), so that a failed check says which claim moved.
fn row_changes(doc: &str, wanted: &str) -> String {
    let rows = |text: &str| -> Vec<String> {
        text.lines().filter(|l| l.starts_with("| ")).map(str::to_owned).collect()
    };
    let (old, new) = (rows(doc), rows(wanted));
    let gone = old.iter().filter(|r| !new.contains(r)).map(|r| format!("- {r}"));
    let added = new.iter().filter(|r| !old.contains(r)).map(|r| format!("+ {r}"));
    gone.chain(added).collect::<Vec<_>>().join("\n")
}

/// Writes every doc's table from the ledger.
pub fn write(root: &Path) -> Result<(), String> {
    let lines = read(&ledger_dir(root))?;
    for (file, marker, table) in tables(&lines)? {
        let path = root.join(file);
        let doc = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(&path, splice(&doc, marker, &table)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote the claims table of {file}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, bound: &str, schedules: u64) -> Line {
        Line {
            id: id.into(),
            claim: "safe holds".into(),
            scope: "s".into(),
            bound: bound.into(),
            figures: vec![("schedules".into(), schedules)],
            seconds: 1.0,
        }
    }

    #[test]
    fn lines_parse_and_kinds_sum() {
        let parsed =
            Line::parse("safe/r1\tsafe holds\tr1, safe\tcomplete\tschedules=12 faults=3\t2.5\n").unwrap();
        assert_eq!(parsed.figures, [("schedules".to_owned(), 12), ("faults".to_owned(), 3)]);
        assert!(Line::parse("safe/r1\tonly three\tfields").is_err());
        let lines = [line("safe/a", "complete", 1_200), line("safe/b", "complete within 3 preemptions", 34)];
        let table = readme_table(&lines).unwrap();
        assert!(table.contains(
            "| safe holds | 2 | complete (1); complete within 3 preemptions (1) | 1,234 schedules |"
        ));
        let sampled = [line("safe/a", "sampled 1000", 5), line("safe/b", "sampled 2000", 5)];
        assert!(readme_table(&sampled).unwrap().contains("| 2 | sampled 3,000 | 10 schedules |"));
        let mut other = line("safe/c", "complete", 1);
        other.claim = "something else".into();
        assert!(readme_table(&[lines[0].clone(), other]).is_err());
    }

    #[test]
    fn a_table_is_spliced_between_its_markers() {
        let doc = "a\n<!-- claims begin -->\nold\n<!-- claims end -->\nb\n";
        assert_eq!(
            splice(doc, "claims", "new\n").unwrap(),
            "a\n<!-- claims begin -->\nnew\n<!-- claims end -->\nb\n"
        );
        assert!(splice("no markers", "claims", "x").is_err());
    }

    #[test]
    fn a_failed_check_names_the_rows_that_moved() {
        let doc = "<!-- claims begin -->\n| a | 1 |\n| b | 2 |\n<!-- claims end -->\n";
        let wanted = "<!-- claims begin -->\n| a | 1 |\n| b | 3 |\n<!-- claims end -->\n";
        assert_eq!(row_changes(doc, wanted), "- | b | 2 |\n+ | b | 3 |");
        assert_eq!(row_changes(doc, doc), "");
    }
}
