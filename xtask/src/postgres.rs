//! A throwaway PostgreSQL server for the tests: installed from the
//! machine's packages when missing, a fresh cluster in a temporary folder,
//! listening on 127.0.0.1 on a free port, stopped (and its folder removed)
//! when dropped, also when the tests fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Server {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    pub url: String,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The newest installed server's bin folder (Debian's layout).
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn run(what: &str, command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{what}: cannot run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Installs Debian package `package` (which provides `what`), as root.
pub fn install_package(what: &str, package: &str) -> Result<(), String> {
    if !is_root() {
        return Err(format!(
            "{what} is not installed; install it (Debian: `apt-get install {package}`) or run as root"
        ));
    }
    eprintln!("==> installing {what} from the machine's packages ({package})");
    run("apt-get update", Command::new("apt-get").args(["update", "-q"]))?;
    run(
        &format!("apt-get install {package}"),
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The throwaway cluster's superuser password (it listens on loopback only).
const PASSWORD: &str = "cusim";

pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Server {
    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    pub fn start() -> Result<Server, String> {
        let bin = match find_bin() {
            Some(bin) => bin,
            None => {
                install_package("PostgreSQL", "postgresql")?;
                find_bin()
                    .ok_or("PostgreSQL was installed but no initdb was found under /usr/lib/postgresql")?
            }
        };
        let as_postgres = is_root();
        let data = std::env::temp_dir().join(format!("cusim-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let port = free_port()?;
        // TCP connections need a password, as on a real server: the tests
        // check what a wrong one gives.
        let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres");
        let server = Server { bin, data, as_postgres, url };
        let password_file = server.data.join("password");
        std::fs::write(&password_file, PASSWORD).map_err(|e| format!("{}: {e}", password_file.display()))?;
        if as_postgres {
            // initdb refuses root: the cluster belongs to the postgres user.
            run("chown", Command::new("chown").args(["-R", "postgres"]).arg(&server.data))?;
        }
        let cluster = server.data.join("cluster");
        run(
            "initdb",
            server.command("initdb").arg("-D").arg(&cluster).args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                password_file.to_str().ok_or("the temporary directory's path is not UTF-8")?,
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]),
        )?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c deadlock_timeout=100ms",
            server.data.display()
        );
        run(
            "pg_ctl start",
            server
                .command("pg_ctl")
                .arg("-D")
                .arg(&cluster)
                .arg("-l")
                .arg(server.data.join("log"))
                .args(["-o", &options, "-w", "-t", "60", "start"]),
        )
        .map_err(|e| format!("{e}\nserver log: {}", read_log(&server.data)))?;
        eprintln!("==> postgres: server on 127.0.0.1:{port} (cluster in {})", server.data.display());
        Ok(server)
    }
}

fn read_log(data: &Path) -> String {
    std::fs::read_to_string(data.join("log")).unwrap_or_default()
}

impl Drop for Server {
    fn drop(&mut self) {
        let cluster = self.data.join("cluster");
        let _ =
            self.command("pg_ctl").arg("-D").arg(&cluster).args(["-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.data);
        eprintln!("==> postgres: server stopped");
    }
}
