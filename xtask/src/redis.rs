//! A throwaway Redis server for the tests: installed from the machine's
//! packages when missing, listening on 127.0.0.1 on a free port, with no
//! persistence and a password, in a temporary folder; stopped (and its
//! folder removed) when dropped, also when the tests fail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::postgres::{free_port, install_package};

pub struct Server {
    child: Child,
    dir: PathBuf,
    pub url: String,
}

/// `redis-server` on the PATH, or where Debian puts it.
fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("redis-server")).find(|path| path.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|path| path.is_file()))
}

/// How long the server may take to answer after it starts.
const READY_WITHIN: Duration = Duration::from_secs(20);

impl Server {
    pub fn start() -> Result<Server, String> {
        let binary = match find_binary() {
            Some(binary) => binary,
            None => {
                install_package("Redis", "redis-server")?;
                find_binary().ok_or("redis-server was installed but is not on the PATH or in /usr/bin")?
            }
        };
        // The free port may be taken before the server binds it: a few tries.
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            match Server::start_once(&binary, attempt) {
                Ok(server) => return Ok(server),
                Err(error) => failures.push(error),
            }
        }
        Err(failures.join("\n"))
    }

    fn start_once(binary: &std::path::Path, attempt: u32) -> Result<Server, String> {
        let dir = std::env::temp_dir().join(format!("cusim-redis-{}-{attempt}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port()?;
        let password = format!("cusim-{}", std::process::id());
        let stderr =
            std::fs::File::create(dir.join("stderr")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let spawned = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--protected-mode", "yes"])
            // No persistence: nothing of a run outlives the server.
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", &password])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // What it says before its log file is open (a bad option, say).
            .stderr(stderr)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("cannot run {}: {error}", binary.display()));
            }
        };
        let url = format!("redis://:{password}@127.0.0.1:{port}");
        // From here on, dropping the server stops it and removes its folder.
        let mut server = Server { child, dir, url };
        server.wait_ready(port, &password)?;
        eprintln!("==> redis: server on 127.0.0.1:{port} (folder {})", server.dir.display());
        Ok(server)
    }

    /// Waits until the server answers `PING` after `AUTH`.
    fn wait_ready(&mut self, port: u16, password: &str) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("redis-server exited ({status}):\n{}", self.log()));
            }
            if ping(port, password).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server did not answer within {} s:\n{}",
                    READY_WITHIN.as_secs(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("stderr"), read("log"))
    }
}

/// `AUTH` and `PING` on a fresh connection; `Ok` when both succeed.
fn ping(port: u16, password: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let command = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n", password.len());
    stream.write_all(command.as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 64];
    while !String::from_utf8_lossy(&reply).contains("PONG") {
        let n = stream.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed after {:?}", String::from_utf8_lossy(&reply)));
        }
        reply.extend_from_slice(&buffer[..n]);
        if reply.starts_with(b"-") {
            return Err(String::from_utf8_lossy(&reply).into_owned());
        }
    }
    Ok(())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        eprintln!("==> redis: server stopped");
    }
}
