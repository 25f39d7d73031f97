//! The docs cannot rot: every command shown in README.md and the book
//! (`docs/book/*.md`) runs here with its output checked, and every
//! relative link in the docs leads to a file (and a heading) that exists.
//!
//! A ```` ```console ```` block holds commands (`$ cusim …`, `\` continues
//! a line) each followed by its expected output: stdout then stderr, as
//! printed when not on a terminal. In an expected line `[..]` matches any
//! text; a line `...` matches any number of lines; a last line `[exit N]`
//! is the exit status (else 0). A command ending in ` &` is a server: it
//! is started, the lines shown match the first lines of its stdout, and it
//! is stopped at the block's end. Commands run from a scratch folder that
//! holds a copy of the repository's `fixtures`. Blocks marked
//! ```` ```console postgres ```` need `DATABASE_URL` and `REDIS_URL`
//! (`$DATABASE_URL` and `$REDIS_URL` in a command are expanded): their
//! test is ignored by a plain `cargo test` and run by `cargo xtask test
//! postgres`. A line of a ```` ```sh ```` block that runs the tool from
//! the source tree (`cargo run --release -p cusim-sim --bin cusim -- …`)
//! runs here as `cusim …` and must exit 0.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CUSIM: &str = env!("CARGO_BIN_EXE_cusim");

/// The longest a shown command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One command of a block and what it must print.
#[derive(Debug, Clone)]
struct Example {
    /// Where it is: `README.md:42`.
    at: String,
    command: String,
    expected: Vec<String>,
    exit: i32,
    background: bool,
}

#[derive(Debug)]
struct Block {
    at: String,
    postgres: bool,
    examples: Vec<Example>,
}

/// How the docs run the tool from the source tree, in ```` ```sh ````
/// blocks: such a line runs as `cusim …` and must exit 0 (its output is
/// not shown).
const FROM_SOURCE: &str = "cargo run --release -p cusim-sim --bin cusim -- ";

/// The ```` ```console ```` blocks of `text` (from file `name`), and each
/// line of a ```` ```sh ```` block that runs the tool from the source tree
/// as a block of its own.
fn console_blocks(name: &str, text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else { continue };
        let mut words = info.split_whitespace();
        let kind = words.next();
        let postgres = words.any(|w| w == "postgres");
        let mut body = Vec::new();
        for (j, line) in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            body.push((j + 1, line));
        }
        match kind {
            Some("console") => blocks.push(Block {
                at: format!("{name}:{}", i + 1),
                postgres,
                examples: examples(name, &body)?,
            }),
            Some("sh") => {
                for (n, line) in body {
                    if let Some(args) = line.trim().strip_prefix(FROM_SOURCE) {
                        let at = format!("{name}:{n}");
                        let example = Example {
                            at: at.clone(),
                            command: format!("cusim {}", args.trim()),
                            expected: vec!["...".into()],
                            exit: 0,
                            background: false,
                        };
                        blocks.push(Block { at, postgres, examples: vec![example] });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(blocks)
}

/// A block's commands and their expected output.
fn examples(name: &str, body: &[(usize, &str)]) -> Result<Vec<Example>, String> {
    let mut examples: Vec<Example> = Vec::new();
    let mut continuing = false;
    for &(n, line) in body {
        if continuing {
            let example = examples.last_mut().expect("a command continues");
            continuing = line.ends_with('\\');
            example.command.push(' ');
            example.command.push_str(line.trim_end_matches('\\').trim());
        } else if let Some(command) = line.strip_prefix("$ ") {
            continuing = command.ends_with('\\');
            examples.push(Example {
                at: format!("{name}:{n}"),
                command: command.trim_end_matches('\\').trim().to_owned(),
                expected: Vec::new(),
                exit: 0,
                background: false,
            });
        } else {
            let Some(example) = examples.last_mut() else {
                return Err(format!("{name}:{n}: output before any `$ ` command"));
            };
            example.expected.push(line.trim_end().to_owned());
        }
    }
    for example in &mut examples {
        if let Some(command) = example.command.strip_suffix(" &") {
            example.command = command.trim_end().to_owned();
            example.background = true;
        }
        while example.expected.last().is_some_and(|l| l.is_empty()) {
            example.expected.pop();
        }
        if let Some(last) = example.expected.last() {
            if let Some(code) = last.strip_prefix("[exit ").and_then(|r| r.strip_suffix(']')) {
                example.exit = code.parse().map_err(|_| format!("{}: bad exit line {last:?}", example.at))?;
                example.expected.pop();
            }
        }
    }
    Ok(examples)
}

/// A command line's words, as a POSIX shell splits them: single and
/// double quotes, backslash escapes, `$NAME` expanded from `env`.
fn words(command: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars().peekable();
    let expand =
        |chars: &mut std::iter::Peekable<std::str::Chars>, word: &mut String| -> Result<(), String> {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                word.push('$');
                return Ok(());
            }
            word.push_str(&env(&name).ok_or_else(|| format!("${name} is not set"))?);
            Ok(())
        };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed ' in {command}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unclosed \" in {command}")),
                        },
                        Some('$') => expand(&mut chars, &mut word)?,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed \" in {command}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            '$' => {
                in_word = true;
                expand(&mut chars, &mut word)?;
            }
            '|' | '>' | '<' | ';' | '&' | '`' => {
                return Err(format!("`{c}`: a shown command is one command, with no shell syntax: {command}"))
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Whether `text` matches `pattern`, where `[..]` matches any text.
fn line_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `lines` match `expected`, where a line `...` matches any number
/// of lines.
fn lines_match(expected: &[String], lines: &[String]) -> bool {
    match expected.split_first() {
        None => lines.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=lines.len()).any(|skip| lines_match(rest, &lines[skip..]))
        }
        Some((first, rest)) => lines
            .split_first()
            .is_some_and(|(line, others)| line_matches(first, line) && lines_match(rest, others)),
    }
}

/// A scratch folder to run a block's commands in, with a copy of the
/// repository's `fixtures` (so no example can change the repository);
/// removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cusim-docs-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        copy_dir(&root().join("fixtures"), &dir.join("fixtures"));
        Scratch(dir)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Servers a block started, stopped when dropped.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The `cusim` arguments of `example`'s command.
fn arguments(example: &Example) -> Result<Vec<String>, String> {
    let words = words(&example.command, &env_var).map_err(|e| format!("{}: {e}", example.at))?;
    match words.split_first() {
        Some((first, rest)) if first == "cusim" => Ok(rest.to_vec()),
        _ => Err(format!("{}: a console block's command must be `cusim …`: {}", example.at, example.command)),
    }
}

/// Runs `example` in `dir`: `Err` says how it differs from the docs.
fn run_one(example: &Example, dir: &Path, servers: &mut Servers) -> Result<(), String> {
    let args = arguments(example)?;
    let mut command = Command::new(CUSIM);
    command.args(&args).current_dir(dir).stdin(Stdio::null()).env_remove("CI");
    // A command may start `cusim` itself (`cusim drive … -- cusim serve …`).
    let bin = Path::new(CUSIM).parent().expect("the binary is in a folder");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path));
    command.env("PATH", std::env::join_paths(paths).expect("a PATH"));
    if example.background {
        return start_server(example, command, servers);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().map_err(|e| format!("{}: cannot run cusim: {e}", example.at))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(COMMAND_LIMIT) {
        Ok(output) => output.map_err(|e| format!("{}: {e}", example.at))?,
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            return Err(format!("{}: `{}` took longer than {COMMAND_LIMIT:?}", example.at, example.command));
        }
    };
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let code = output.status.code().unwrap_or(-1);
    if code != example.exit || !lines_match(&example.expected, &lines) {
        return Err(format!(
            "{}: `{}`\n-- the docs show (exit {}):\n{}\n-- it printed (exit {code}):\n{}",
            example.at,
            example.command,
            example.exit,
            example.expected.join("\n"),
            lines.join("\n")
        ));
    }
    Ok(())
}

/// Starts a server and matches its first lines of stdout.
fn start_server(example: &Example, mut command: Command, servers: &mut Servers) -> Result<(), String> {
    if example.expected.iter().any(|l| l == "...") {
        return Err(format!("{}: a server's lines cannot elide with `...`", example.at));
    }
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command.spawn().map_err(|e| format!("{}: cannot start cusim: {e}", example.at))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    servers.0.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < example.expected.len() {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => lines.push(line.trim_end().to_owned()),
            Err(_) => break,
        }
    }
    if !lines_match(&example.expected, &lines) {
        return Err(format!(
            "{}: `{}`\n-- the docs show:\n{}\n-- it printed:\n{}",
            example.at,
            example.command,
            example.expected.join("\n"),
            lines.join("\n")
        ));
    }
    Ok(())
}

/// Runs every command of `block`; the first difference, if any.
fn run_block(block: &Block) -> Result<(), String> {
    let scratch = Scratch::new(if block.postgres { "pg" } else { "mem" });
    let mut servers = Servers(Vec::new());
    for example in &block.examples {
        run_one(example, &scratch.0, &mut servers).map_err(|e| format!("(block at {}) {e}", block.at))?;
    }
    Ok(())
}

/// README.md and the book's chapters.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let book = root().join("docs/book");
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(&book)
        .unwrap_or_else(|e| panic!("{}: {e}", book.display()))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    files.extend(chapters);
    files
}

fn every_block() -> Vec<Block> {
    let mut blocks = Vec::new();
    for path in documents() {
        let name = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        blocks.extend(console_blocks(&name, &text).unwrap_or_else(|e| panic!("{e}")));
    }
    blocks
}

/// Runs `blocks` two at a time (each server block listens on a port of
/// its own); every difference, in the docs' order.
fn run_blocks(blocks: &[&Block]) -> Vec<String> {
    support::on_threads(blocks, 2, |block| run_block(block)).into_iter().filter_map(Result::err).collect()
}

fn check_examples(postgres: bool) -> usize {
    let blocks = every_block();
    let chosen: Vec<&Block> = blocks.iter().filter(|b| b.postgres == postgres).collect();
    let commands: usize = chosen.iter().map(|b| b.examples.len()).sum();
    assert!(commands > 0, "no command examples found (postgres: {postgres})");
    let failures = run_blocks(&chosen);
    assert!(
        failures.is_empty(),
        "{} of {commands} shown commands differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{commands} shown commands in {} blocks ran as the docs show", chosen.len());
    commands
}

#[test]
fn every_command_shown_in_memory_runs_as_shown() {
    check_examples(false);
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn every_command_shown_on_postgres_runs_as_shown() {
    check_examples(true);
}

/// A stale example fails: a flag renamed, an output line changed, an exit
/// status changed.
#[test]
fn a_stale_example_fails() {
    let good = "```console\n$ cusim replay --scenario r1-same-id-create --strategy legacy --schedule 1.1\n...\n[..]no_internal_error[..]\n...\n[exit 1]\n```\n";
    let run = |text: &str| {
        let blocks = console_blocks("planted.md", text).unwrap();
        assert_eq!(blocks.len(), 1);
        run_block(&blocks[0])
    };
    run(good).unwrap_or_else(|e| panic!("the planted example itself must pass: {e}"));
    let renamed = good.replace("--schedule", "--schedul");
    assert!(run(&renamed).is_err(), "a renamed flag was not caught");
    let changed = good.replace("no_internal_error", "no_internal_errors");
    assert!(run(&changed).is_err(), "a changed output was not caught");
    let exit = good.replace("[exit 1]", "");
    assert!(run(&exit).is_err(), "a changed exit status was not caught");
}

#[test]
fn the_example_format_reads_as_documented() {
    let text = "```console\n$ cusim replay --scenario x \\\n    --schedule '1.1'\nline [..] here\n...\n[exit 1]\n$ cusim serve --port 1 &\nlistening\n```\n```sh\n$ cusim not-a-console-block\ncargo run --release -p cusim-sim --bin cusim -- explore --all\n```\n";
    let blocks = console_blocks("t.md", text).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1].examples[0].command, "cusim explore --all");
    assert_eq!(
        (blocks[1].examples[0].exit, &blocks[1].examples[0].expected[..]),
        (0, &["...".to_owned()][..])
    );
    let [first, second] = &blocks[0].examples[..] else { panic!("{:?}", blocks[0].examples) };
    assert_eq!(first.command, "cusim replay --scenario x --schedule '1.1'");
    assert_eq!((first.exit, first.background), (1, false));
    assert_eq!(first.expected, ["line [..] here", "..."]);
    assert_eq!((second.command.as_str(), second.background), ("cusim serve --port 1", true));
    let env = |name: &str| (name == "DATABASE_URL").then(|| "postgres://x".to_owned());
    assert_eq!(
        words(r#"cusim a 'b c' "d $DATABASE_URL" e\ f $DATABASE_URL"#, &env).unwrap(),
        ["cusim", "a", "b c", "d postgres://x", "e f", "postgres://x"]
    );
    assert!(words("cusim a | head", &env).is_err());
    assert!(words("cusim $UNSET_NAME", &env).is_err());
    assert!(line_matches("a [..] c", "a b b c"));
    assert!(!line_matches("a [..] c", "a b b d"));
    assert!(line_matches("[..]", ""));
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(lines_match(&lines(&["a", "...", "d"]), &lines(&["a", "b", "c", "d"])));
    assert!(lines_match(&lines(&["a", "...", "d"]), &lines(&["a", "d"])));
    assert!(!lines_match(&lines(&["a", "...", "d"]), &lines(&["a", "b"])));
    assert!(!lines_match(&lines(&["a"]), &lines(&["a", "b"])));
}

// ---- links ----

/// GitHub's anchor of a heading: lowercase, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings (a repeated heading gets
/// `-1`, `-2`, … as on GitHub).
fn anchors(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let heading = heading.replace('`', "");
        let base = slug(&heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while found.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        found.push(anchor);
    }
    found
}

/// The link targets of a Markdown text outside code: `](target)` and
/// reference definitions `[x]: target`, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code is not a link.
        let mut plain = String::new();
        for (j, part) in line.split('`').enumerate() {
            if j % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                let target = rest[..end].split_whitespace().next().unwrap_or("");
                found.push((i + 1, target.to_owned()));
                rest = &rest[end..];
            }
        }
        let trimmed = plain.trim_start();
        if trimmed.starts_with('[') {
            if let Some((_, target)) = trimmed.split_once("]: ") {
                found.push((i + 1, target.split_whitespace().next().unwrap_or("").to_owned()));
            }
        }
    }
    found
}

/// Every broken relative link of the Markdown file `path`.
fn broken_links(path: &Path, text: &str) -> Vec<String> {
    let name = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    let mut broken = Vec::new();
    for (line, target) in links(text) {
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.as_str(), None),
        };
        let resolved = if file.is_empty() { path.to_path_buf() } else { path.parent().unwrap().join(file) };
        if !resolved.exists() {
            broken.push(format!("{name}:{line}: {target}: no such file"));
            continue;
        }
        if let Some(anchor) = anchor {
            if resolved.extension().is_some_and(|e| e == "md") {
                let target_text = if file.is_empty() {
                    text.to_owned()
                } else {
                    std::fs::read_to_string(&resolved).unwrap_or_default()
                };
                if !anchors(&target_text).iter().any(|a| a == anchor) {
                    broken.push(format!("{name}:{line}: {target}: no heading with that anchor"));
                }
            }
        }
    }
    broken
}

/// Every Markdown file of the project's docs.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    for name in ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md", "client-tests/README.md"] {
        files.push(root().join(name));
    }
    files.sort();
    files
}

#[test]
fn every_relative_link_in_the_docs_leads_somewhere() {
    let files = markdown_files();
    let mut broken = Vec::new();
    let mut checked = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += links(&text).len();
        broken.extend(broken_links(path, &text));
    }
    assert!(checked > 0, "no links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    eprintln!("{checked} links in {} files", files.len());
}

#[test]
fn a_broken_link_is_reported() {
    let here = root().join("README.md");
    let text = "See [the spec](docs/SPEC.md), [nothing](docs/nothing.md), [a heading](#no-such-heading), \
                `[code](not/a/link.md)` and [the web](https://example.com).\n\n# A Heading, with `code`\n\n[ok](#a-heading-with-code)\n";
    let broken = broken_links(&here, text);
    assert_eq!(broken.len(), 2, "{broken:#?}");
    assert!(broken[0].contains("docs/nothing.md") && broken[1].contains("#no-such-heading"), "{broken:#?}");
}
