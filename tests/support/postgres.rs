//! A PostgreSQL server of the test's own, on a free port, that the test can stop (an
//! immediate shutdown, as a crash or a failover would) and start again on the same data.
//! Needs Debian's `postgresql` package (tests/services.sh) and root, to run it as `postgres`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, TempDir};

pub struct PrivatePostgres {
    dir: TempDir,
    pub port: u16,
    child: Option<Child>,
    uid: u32,
    gid: u32,
}

impl PrivatePostgres {
    /// A new cluster (trust authentication, no fsync), started.
    pub async fn start() -> Self {
        let dir = TempDir::new();
        let (uid, gid) = (id("-u"), id("-g"));
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir.0));
        let data = dir.0.join("data");
        let initdb = Command::new(bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .uid(uid)
            .gid(gid)
            .stdout(Stdio::null())
            .status()
            .expect("initdb");
        assert!(initdb.success(), "initdb failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut pg = PrivatePostgres { dir, port, child: None, uid, gid };
        pg.restart().await;
        pg
    }

    /// The URL of database `postgres` on this server.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) on the same data and port, and waits until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new(bin("postgres"))
            .arg("-D")
            .arg(self.dir.0.join("data"))
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-k")
            .arg(&self.dir.0)
            .uid(self.uid)
            .gid(self.gid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        self.child = Some(child);
        let port = self.port.to_string();
        eventually(Duration::from_secs(30), "the private PostgreSQL answers", || {
            let port = port.clone();
            async move {
                Command::new(bin("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port])
                    .status()
                    .is_ok_and(|s| s.success())
            }
        })
        .await;
    }

    /// Immediate shutdown (SIGQUIT): every connection drops at once, nothing is flushed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            run(Command::new("kill").args(["-QUIT", &child.id().to_string()]));
            let _ = child.wait();
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A binary of the newest PostgreSQL Debian installed.
fn bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql (tests/services.sh installs PostgreSQL)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions.last().expect("a PostgreSQL version").join("bin").join(name)
}

fn id(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("the postgres user exists")
}

fn run(command: &mut Command) {
    let status = command.status().expect("command runs");
    assert!(status.success(), "{command:?} failed");
}
