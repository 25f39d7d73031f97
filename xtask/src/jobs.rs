//! Jobs run on workers side by side (one thread each), each worker taking
//! the next job of one queue, in the queue's order. A job's output goes to
//! its own log file under `target/xtask/logs/` and is printed whole only
//! when the job fails, so workers never interleave their output; a line
//! says when each job starts and how it ended.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

/// Passed and failed counts, plus whether a runner itself failed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub runner_failed: bool,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.runner_failed |= other.runner_failed;
    }

    pub fn runner_failed() -> Tally {
        Tally { runner_failed: true, ..Tally::default() }
    }

    fn ok(&self) -> bool {
        self.failed == 0 && !self.runner_failed
    }
}

/// How a command's output says what passed.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    /// libtest's `test result: ok. 12 passed; 0 failed; …`.
    Libtest,
    /// node's TAP summary: `# pass 12`, `# fail 0`.
    Tap,
    /// One passed check per `ok: ` line.
    OkLines,
}

/// Parses libtest's `test result: ok. 12 passed; 0 failed; …` line.
pub fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_status, counts) = rest.split_once(". ")?;
    let count = |word: &str| -> Option<u64> {
        counts.split(';').find_map(|part| {
            let (n, w) = part.trim().split_once(' ')?;
            (w == word).then(|| n.parse().ok()).flatten()
        })
    };
    Some((count("passed")?, count("failed")?))
}

/// Reads node's TAP summary: `# pass 12`, `# fail 0` (a cancelled test
/// counts as failed).
pub fn parse_tap_summary(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("# ")?;
    let (word, n) = rest.split_once(' ')?;
    let n: u64 = n.trim().parse().ok()?;
    match word {
        "pass" => Some((n, 0)),
        "fail" | "cancelled" => Some((0, n)),
        _ => None,
    }
}

impl Count {
    fn read(self, line: &str) -> Option<(u64, u64)> {
        match self {
            Count::Libtest => parse_result_line(line),
            Count::Tap => parse_tap_summary(line),
            Count::OkLines => line.starts_with("ok: ").then_some((1, 0)),
        }
    }
}

/// A job's log: every command it runs writes here, and the job's tally.
pub struct Log {
    path: PathBuf,
    file: File,
    pub tally: Tally,
}

impl Log {
    fn open(path: PathBuf) -> Result<Log, String> {
        let file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Log { path, file, tally: Tally::default() })
    }

    /// A line of the job's own in the log.
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.file, "{text}");
    }

    /// A failure of the job's own (a server that did not start, …).
    pub fn fail(&mut self, text: &str) {
        self.note(text);
        self.tally.runner_failed = true;
    }

    /// Runs `command` with its stdout and stderr in the log, and adds up
    /// what `count` reads off its lines. A non-zero exit is one failed
    /// check when `exit_fails_a_check`, else the runner failing. Whether
    /// it exited with success.
    pub fn run(&mut self, what: &str, mut command: Command, count: Count, exit_fails_a_check: bool) -> bool {
        self.note(&format!("==> {what}"));
        let start = self.file.seek(SeekFrom::End(0)).unwrap_or(0);
        let (Ok(out), Ok(err)) = (self.file.try_clone(), self.file.try_clone()) else {
            self.fail(&format!("{what}: cannot hand the log to it"));
            return false;
        };
        command.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
        let status = match command.status() {
            Ok(status) => status,
            Err(error) => {
                self.fail(&format!("{what}: could not start: {error}"));
                return false;
            }
        };
        if self.file.seek(SeekFrom::Start(start)).is_ok() {
            let lines = BufReader::new(&self.file).lines();
            for line in lines.map_while(Result::ok) {
                if let Some((passed, failed)) = count.read(&line) {
                    self.tally.passed += passed;
                    self.tally.failed += failed;
                }
            }
        }
        let _ = self.file.seek(SeekFrom::End(0));
        if !status.success() {
            self.note(&format!("{what} exited with {status}"));
            if exit_fails_a_check {
                self.tally.failed += 1;
            } else {
                self.tally.runner_failed = true;
            }
        }
        status.success()
    }

    /// The log as a command's stderr (for a build's progress).
    pub fn stdio(&mut self) -> Stdio {
        let _ = self.file.seek(SeekFrom::End(0));
        self.file.try_clone().map_or_else(|_| Stdio::null(), Stdio::from)
    }

    fn contents(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

type Work = Box<dyn FnOnce(&mut Log) + Send>;

/// One job: a test executable, a node file, a build and its runs.
pub struct Job {
    pub mode: &'static str,
    pub label: String,
    work: Work,
}

impl Job {
    pub fn new(
        mode: &'static str,
        label: impl Into<String>,
        work: impl FnOnce(&mut Log) + Send + 'static,
    ) -> Job {
        Job { mode, label: label.into(), work: Box::new(work) }
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub mode: &'static str,
    pub label: String,
    pub worker: String,
    pub tally: Tally,
    pub seconds: f64,
}

/// The folder of the jobs' logs.
pub fn log_dir(root: &Path) -> PathBuf {
    root.join("target/xtask/logs")
}

fn run_job(job: Job, worker: &str, logs: &Path, printing: &Mutex<()>) -> Outcome {
    let started = Instant::now();
    let file_name: String =
        job.label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    {
        let _guard = printing.lock().unwrap_or_else(|e| e.into_inner());
        println!("[{worker}] start {} ({})", job.label, job.mode);
    }
    let tally = match Log::open(logs.join(format!("{file_name}.log"))) {
        Ok(mut log) => {
            (job.work)(&mut log);
            let seconds = started.elapsed().as_secs_f64();
            let _guard = printing.lock().unwrap_or_else(|e| e.into_inner());
            let word = if log.tally.ok() { "ok  " } else { "FAIL" };
            println!(
                "[{worker}] {word} {}: {} passed, {} failed in {seconds:.0} s (log: {})",
                job.label,
                log.tally.passed,
                log.tally.failed,
                log.path.display()
            );
            if !log.tally.ok() {
                println!("---- {} ----\n{}---- end of {} ----", job.label, log.contents(), job.label);
            }
            log.tally
        }
        Err(error) => {
            eprintln!("[{worker}] {}: cannot open its log: {error}", job.label);
            Tally::runner_failed()
        }
    };
    Outcome {
        mode: job.mode,
        label: job.label,
        worker: worker.to_owned(),
        tally,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Runs `jobs` on `workers` threads, each taking the next job in order;
/// every job's outcome, in the order they ended. Workers are named
/// `name1`, `name2`, ….
pub fn run(jobs: Vec<Job>, workers: usize, name: &str, root: &Path) -> Vec<Outcome> {
    let logs = log_dir(root);
    if let Err(error) = std::fs::create_dir_all(&logs) {
        eprintln!("{}: {error}", logs.display());
    }
    let printing = Mutex::new(());
    let outcomes = Mutex::new(Vec::new());
    let queue = Mutex::new(jobs.into_iter());
    std::thread::scope(|scope| {
        for n in 1..=workers.max(1) {
            let worker = format!("{name}{n}");
            let (logs, printing, outcomes, queue) = (&logs, &printing, &outcomes, &queue);
            scope.spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(job) = next else { break };
                let outcome = run_job(job, &worker, logs, printing);
                outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
            });
        }
    });
    outcomes.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_tap_summaries() {
        assert_eq!(parse_tap_summary("# pass 12"), Some((12, 0)));
        assert_eq!(parse_tap_summary("# fail 2"), Some((0, 2)));
        assert_eq!(parse_tap_summary("# tests 14"), None);
        assert_eq!(parse_tap_summary("ok 1 - case 1"), None);
    }

    #[test]
    fn parses_libtest_result_lines() {
        let ok =
            "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.15s";
        assert_eq!(parse_result_line(ok), Some((12, 0)));
        let failed = "test result: FAILED. 14 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(parse_result_line(failed), Some((14, 1)));
        assert_eq!(parse_result_line("running 3 tests"), None);
    }

    #[test]
    fn a_job_counts_what_its_commands_print_and_fails_on_a_bad_exit() {
        let dir = std::env::temp_dir().join(format!("xtask-jobs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = Log::open(dir.join("job.log")).unwrap();
        let mut passing = Command::new("sh");
        passing.args(["-c", "echo 'ok: one'; echo 'ok: two' >&2; echo other"]);
        assert!(log.run("passing", passing, Count::OkLines, true));
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo 'ok: three'; exit 3"]);
        assert!(!log.run("failing", failing, Count::OkLines, true));
        assert_eq!((log.tally.passed, log.tally.failed), (3, 1));
        assert!(log.contents().contains("failing exited with"), "{}", log.contents());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
