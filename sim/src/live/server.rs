//! The server under test, as a child process: started with its store URLs
//! pointing at the proxies, waited for, and stopped (SIGTERM, then SIGKILL
//! after a grace), in a process group of its own so that nothing it
//! started is left behind.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::check::client::Target;

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    /// The program and its arguments; `{database_url}` and `{redis_url}`
    /// in them are replaced by the proxies' URLs.
    pub argv: Vec<String>,
    /// The environment variables that get the proxies' URLs.
    pub database_env: String,
    pub redis_env: String,
    /// How long it may take to answer on the target.
    pub start_timeout: Duration,
    /// How long it has to stop after SIGTERM before SIGKILL.
    pub grace: Duration,
}

/// A running server. Dropping it stops it.
pub struct Server {
    child: Option<Child>,
    grace: Duration,
    /// Where its output goes (kept for errors).
    log: std::path::PathBuf,
}

/// `text` with `{database_url}` and `{redis_url}` replaced.
pub fn substitute(text: &str, database_url: &str, redis_url: Option<&str>) -> String {
    let text = text.replace("{database_url}", database_url);
    match redis_url {
        Some(url) => text.replace("{redis_url}", url),
        None => text,
    }
}

impl Server {
    /// Starts `command` with the proxies' URLs, and waits until `target`
    /// accepts connections (the caller then speaks the API to it). Its
    /// stdout and stderr go to `log`. It waits without blocking the
    /// runtime: the proxies relay the server's startup meanwhile.
    pub async fn start(
        command: &ServerCommand,
        database_url: &str,
        redis_url: Option<&str>,
        target: &Target,
        log: &std::path::Path,
    ) -> Result<Server, String> {
        let Some((program, args)) = command.argv.split_first() else {
            return Err("no server command after `--`".into());
        };
        if command.argv.iter().any(|a| a.contains("{redis_url}")) && redis_url.is_none() {
            return Err("the server command names {redis_url}, but no --redis-url was given".into());
        }
        let addr =
            resolve(target).ok_or_else(|| format!("--target {}: the host does not resolve", target.url()))?;
        if listens(addr).await {
            return Err(format!(
                "--target {}: something already listens there before the server command starts",
                target.url()
            ));
        }
        // Appended to: a server started anew for each schedule (`--restart`)
        // keeps its earlier runs' output.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: cannot write: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(substitute(program, database_url, redis_url));
        cmd.args(args.iter().map(|a| substitute(a, database_url, redis_url)))
            .env(&command.database_env, database_url)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        if let Some(url) = redis_url {
            cmd.env(&command.redis_env, url);
        }
        let child = cmd.spawn().map_err(|e| format!("the server command {program:?} cannot start: {e}"))?;
        let mut server = Server { child: Some(child), grace: command.grace, log: log.to_owned() };
        let start = Instant::now();
        loop {
            if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                server.child = None;
                return Err(format!(
                    "the server command exited ({status}) before {} answered{}",
                    target.url(),
                    server.tail()
                ));
            }
            if listens(addr).await {
                return Ok(server);
            }
            if start.elapsed() >= command.start_timeout {
                return Err(format!(
                    "the server did not answer on {} within {} s{}",
                    target.url(),
                    command.start_timeout.as_secs(),
                    server.tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last lines of its output, for an error.
    pub fn tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(8)..];
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its last output ({}):\n  {}", self.log.display(), tail.join("\n  "))
        }
    }

    /// Stops it: SIGTERM to its process group, then SIGKILL after the
    /// grace, waiting without blocking the runtime (a server may talk to its
    /// stores through the proxies as it shuts down).
    pub async fn shutdown(&mut self) {
        let Some(child) = self.child.as_mut() else { return };
        let group = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a process group we created; no memory is shared.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < self.grace && matches!(child.try_wait(), Ok(None)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop();
    }

    /// Stops it at once: SIGTERM to its process group, then SIGKILL after
    /// the grace (for a drop, which cannot wait on the runtime).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let group = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a process group we created; no memory is shared.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < self.grace {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever of the group is left (the server, or what it started).
        // SAFETY: as above.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether something accepts connections at `addr`.
async fn listens(addr: std::net::SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

fn resolve(target: &Target) -> Option<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    (target.host.as_str(), target.port).to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_put_in_the_arguments() {
        assert_eq!(
            substitute("--db={database_url} --cache {redis_url}", "postgres://p", Some("redis://r")),
            "--db=postgres://p --cache redis://r"
        );
        assert_eq!(substitute("{redis_url}", "postgres://p", None), "{redis_url}");
    }

    #[test]
    fn a_command_that_exits_at_once_is_named_with_its_output() {
        let command = ServerCommand {
            argv: vec!["sh".into(), "-c".into(), "echo no database here >&2; exit 3".into()],
            database_env: "DATABASE_URL".into(),
            redis_env: "REDIS_URL".into(),
            start_timeout: Duration::from_secs(10),
            grace: Duration::from_millis(100),
        };
        let dir = std::env::temp_dir().join(format!("cusim-server-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = Target { host: "127.0.0.1".into(), port: 9 };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let started =
            runtime.block_on(Server::start(&command, "postgres://x", None, &target, &dir.join("log")));
        let error = started.err().expect("it exits");
        assert!(error.contains("exited") && error.contains("no database here"), "{error}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
