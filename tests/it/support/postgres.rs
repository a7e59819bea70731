//! A throwaway PostgreSQL cluster per test: Debian's server binaries, `initdb` into a temporary
//! directory, started with `pg_ctl` on a free loopback port and stopped on drop. As root, the
//! cluster runs as the `postgres` system user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_postgres_user: bool,
    pub url: String,
    _dir: tempfile::TempDir,
}

fn server_bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|bin| bin.join("pg_ctl").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: run \
             ./scripts/test.sh, which installs Debian's postgresql package"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = server_bin_dir();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let as_postgres_user = is_root();
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(
                status.success(),
                "cannot hand {} to postgres",
                dir.path().display()
            );
        }
        let data = dir.path().join("data");
        let port = free_port();
        let pg = Postgres {
            bin,
            data: data.clone(),
            as_postgres_user,
            url: format!("postgres://tidewatch@127.0.0.1:{port}/postgres"),
            _dir: dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "tidewatch",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_server();
        pg
    }

    fn port(&self) -> &str {
        let after_host = self.url.rsplit(':').next().unwrap_or_default();
        after_host.split('/').next().unwrap_or_default()
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port(),
            path(self.data.parent().unwrap_or(Path::new("/tmp")))
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "-l",
                path(&self.data.join("log")),
                "start",
            ],
        );
    }

    /// Stops the server (an outage: connections are cut); its data stays for [`Postgres::restart`].
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", path(&self.data), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&self) {
        self.start_server();
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir("/")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", path(&self.data), "-m", "immediate", "-w", "stop"])
            .current_dir("/")
            .output();
    }
}
