//! `cargo xtask cycles`: import circles between the files of the
//! project's crates. A file imports another when it names it in a path
//! that starts with `crate::`, `super::` or `self::` (in a `use`, or
//! inline). A path into an ancestor module is a re-export, not an import
//! of that file, and is not counted. Circles are the strongly connected
//! components of that graph with more than one file.
//!
//! It reads the text, not the compiler's view: a path written through a
//! re-export counts against the module that re-exports it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate: the folder its modules live in, and sub-folders that belong
/// to another crate (a binary beside a library).
struct CrateDir {
    dir: &'static str,
    exclude: &'static [&'static str],
}

/// The project's crates.
const CRATES: [CrateDir; 6] = [
    CrateDir { dir: "src", exclude: &[] },
    CrateDir { dir: "sim/src", exclude: &["cli"] },
    CrateDir { dir: "sim/src/cli", exclude: &[] },
    CrateDir { dir: "pg/src", exclude: &[] },
    CrateDir { dir: "serve/src", exclude: &[] },
    CrateDir { dir: "xtask/src", exclude: &[] },
];

/// A file, named by its crate folder and its module path.
type Node = (&'static str, Vec<String>);

/// Every import circle under `root`, each as its files (sorted).
pub fn find(root: &Path) -> Vec<Vec<PathBuf>> {
    let mut files: BTreeMap<Node, PathBuf> = BTreeMap::new();
    for krate in &CRATES {
        let base = root.join(krate.dir);
        for file in rust_files(&base, krate.exclude) {
            files.insert((krate.dir, module_path(&base, &file)), file);
        }
    }
    let mut edges: BTreeMap<Node, BTreeSet<Node>> = BTreeMap::new();
    for ((krate, module), file) in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let here: Vec<String> = module.clone();
        let mut targets = BTreeSet::new();
        for path in paths(&strip_tests(&text)) {
            let (head, rest) = (path[0].as_str(), &path[1..]);
            let mut full: Vec<String> = match head {
                "crate" => Vec::new(),
                "super" => here[..here.len().saturating_sub(1)].to_vec(),
                _ => here.clone(),
            };
            full.extend(rest.iter().cloned());
            let Some(target) = resolve(&files, krate, &full) else { continue };
            if target.1.is_empty() || target.1 == here || here.starts_with(&target.1) {
                continue;
            }
            targets.insert(target);
        }
        edges.insert((krate, module.clone()), targets);
    }
    strongly_connected(&edges)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let mut paths: Vec<PathBuf> = component.iter().map(|n| files[n].clone()).collect();
            paths.sort();
            paths
        })
        .collect()
}

fn rust_files(dir: &Path, exclude: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() {
            if !exclude.contains(&name.as_str()) {
                out.extend(rust_files(&path, &[]));
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    out
}

/// `a/b/mod.rs` and `a/b.rs` are module `a::b`; `lib.rs` and `main.rs` the root.
fn module_path(base: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(base).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> =
        relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts
}

/// The text without a trailing `#[cfg(test)] mod tests { … }`.
fn strip_tests(text: &str) -> String {
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// Every path that starts with `crate`, `super` or `self`: from `use`
/// trees (expanded) and from inline paths.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("use ") {
        let before_ok =
            at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric() && rest.as_bytes()[at - 1] != b'_';
        let after = &rest[at + 4..];
        let Some(end) = after.find(';') else { break };
        let tree = after[..end].trim();
        if before_ok && ["crate", "super", "self"].iter().any(|h| tree.starts_with(&format!("{h}::"))) {
            out.extend(expand(tree));
        }
        rest = &after[end..];
    }
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let boundary =
            i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if boundary {
            for head in ["crate::", "super::", "self::"] {
                let word: String = bytes[i..(i + head.len()).min(bytes.len())].iter().collect();
                if word == head {
                    let mut path = vec![head.trim_end_matches(':').to_owned()];
                    let mut j = i + head.len();
                    loop {
                        let start = j;
                        while j < bytes.len() && (bytes[j].is_alphanumeric() || bytes[j] == '_') {
                            j += 1;
                        }
                        if j == start {
                            break;
                        }
                        path.push(bytes[start..j].iter().collect());
                        if bytes.get(j) == Some(&':') && bytes.get(j + 1) == Some(&':') {
                            j += 2;
                        } else {
                            break;
                        }
                    }
                    out.push(path);
                }
            }
        }
        i += 1;
    }
    out
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (aliases dropped).
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or_default();
        return vec![path.split("::").map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()];
    };
    let prefix: Vec<String> =
        tree[..open].split("::").map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    let mut out = Vec::new();
    for part in parts.iter().filter(|p| !p.trim().is_empty()) {
        for tail in expand(part) {
            out.push(prefix.iter().cloned().chain(tail).collect());
        }
    }
    out
}

/// The file of the longest known module that `path` starts with.
fn resolve(files: &BTreeMap<Node, PathBuf>, krate: &'static str, path: &[String]) -> Option<Node> {
    (0..=path.len()).rev().map(|k| (krate, path[..k].to_vec())).find(|node| files.contains_key(node))
}

/// Tarjan's strongly connected components.
fn strongly_connected(edges: &BTreeMap<Node, BTreeSet<Node>>) -> Vec<Vec<Node>> {
    struct State<'e> {
        edges: &'e BTreeMap<Node, BTreeSet<Node>>,
        index: BTreeMap<Node, usize>,
        low: BTreeMap<Node, usize>,
        stack: Vec<Node>,
        on_stack: BTreeSet<Node>,
        next: usize,
        out: Vec<Vec<Node>>,
    }
    fn visit(s: &mut State<'_>, v: &Node) {
        s.index.insert(v.clone(), s.next);
        s.low.insert(v.clone(), s.next);
        s.next += 1;
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v.clone(), low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = w == *v;
                component.push(w);
                if done {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn the_project_has_no_import_circle() {
        let circles = find(&root());
        assert!(circles.is_empty(), "import circles: {circles:?}");
    }

    #[test]
    fn a_circle_is_found() {
        let dir = std::env::temp_dir().join(format!("cusim-cycles-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
        std::fs::write(src.join("a/mod.rs"), "mod c;\nuse crate::b::{X, y::{Z}};\n").unwrap();
        std::fs::write(src.join("a/c.rs"), "use super::Q; // the parent: a re-export\n").unwrap();
        std::fs::write(src.join("b.rs"), "fn f() { crate::a::g(); }\n").unwrap();
        let circles = find(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(circles.len(), 1, "{circles:?}");
        let names: Vec<String> =
            circles[0].iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
        assert_eq!(names, ["src/a/mod.rs", "src/b.rs"]);
    }

    #[test]
    fn use_trees_expand() {
        assert_eq!(
            expand("crate::a::{b, c::{d, e as f}}"),
            vec![vec!["crate", "a", "b"], vec!["crate", "a", "c", "d"], vec!["crate", "a", "c", "e"]]
        );
    }
}
