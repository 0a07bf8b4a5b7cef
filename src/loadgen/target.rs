//! The server under load: started in this process, started as a child process, or already
//! running. In every case the load generator seeds the namespaces and pre-auth keys straight
//! into the server's database through [`crate::state::store`] before (or, for a running server,
//! while) the nodes join.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use super::machine::{self, ProcSample};
use crate::state::store::Store;

/// Where the server comes from.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    /// `tenscale::app::start` on a thread of this process. Memory figures then include the
    /// simulated clients, which live in the same process.
    InProcess { database_url: Option<String> },
    /// `<binary> serve` as a child process; memory is read from its own `/proc/<pid>`.
    Child { binary: PathBuf, database_url: Option<String> },
    /// A server already running at `url` on `database_url`; memory only with `pid`.
    External { url: String, database_url: String, pid: Option<u32> },
}

/// A server that is up and answering.
pub struct Target {
    pub addr: SocketAddr,
    pub database_url: String,
    /// Whose `/proc` to read: `None` = this process.
    pub pid: Option<u32>,
    /// Whether `pid`'s figures include the load generator's own clients.
    pub shares_process: bool,
    /// Whether `pid` is known at all (not for an external server without `--server-pid`).
    pub measurable: bool,
    pub description: String,
    running: Running,
    _dir: Option<TempDir>,
}

enum Running {
    InProcess { stop: Option<tokio::sync::oneshot::Sender<()>>, thread: Option<std::thread::JoinHandle<()>> },
    Child(Child),
    External,
}

impl Target {
    /// Prepares the database (migrations) and returns a store on it for seeding, then
    /// [`Target::start`] brings the server up. Split so that seeding happens before a
    /// server we own starts, and its memory baseline excludes it.
    pub async fn prepare(spec: &TargetSpec) -> anyhow::Result<(Option<TempDir>, String, Store)> {
        let (dir, url) = match spec {
            TargetSpec::InProcess { database_url: Some(url) } | TargetSpec::Child { database_url: Some(url), .. } => {
                (None, url.clone())
            }
            TargetSpec::InProcess { database_url: None } | TargetSpec::Child { database_url: None, .. } => {
                let dir = TempDir::new()?;
                let url = format!("sqlite://{}/loadgen.db?mode=rwc", dir.0.display());
                (Some(dir), url)
            }
            TargetSpec::External { database_url, .. } => (None, database_url.clone()),
        };
        let store = Store::connect(&url).await.context("connecting to the database")?;
        store.migrate().await.context("applying migrations")?;
        Ok((dir, url, store))
    }

    pub async fn start(spec: &TargetSpec, dir: Option<TempDir>, database_url: String) -> anyhow::Result<Self> {
        match spec {
            TargetSpec::InProcess { .. } => Self::start_in_process(dir, database_url).await,
            TargetSpec::Child { binary, .. } => Self::start_child(binary, dir, database_url).await,
            TargetSpec::External { url, pid, .. } => {
                let addr = url
                    .strip_prefix("http://")
                    .context("only http:// server URLs are supported")?
                    .trim_end_matches('/')
                    .parse()
                    .context("the server URL must be http://<ip>:<port>")?;
                Ok(Self {
                    addr,
                    database_url,
                    pid: *pid,
                    shares_process: false,
                    measurable: pid.is_some(),
                    description: format!("running server at {url}"),
                    running: Running::External,
                    _dir: dir,
                })
            }
        }
    }

    async fn start_in_process(dir: Option<TempDir>, database_url: String) -> anyhow::Result<Self> {
        let settings = settings(&database_url, "127.0.0.1:0")?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // actix needs its own System (a LocalSet); the clients run on the caller's runtime.
        let thread = std::thread::Builder::new().name("tenscale-server".into()).spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                match crate::app::start(settings).await {
                    Ok(app) => {
                        let _ = ready_tx.send(Ok(app.addr));
                        let _ = stop_rx.await;
                        app.handle.stop(false).await;
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            });
        })?;
        let addr = ready_rx.await.context("server thread ended")??;
        Ok(Self {
            addr,
            database_url,
            pid: None,
            shares_process: true,
            measurable: true,
            description: "in-process server (tenscale::app::start), same process as the clients".into(),
            running: Running::InProcess { stop: Some(stop_tx), thread: Some(thread) },
            _dir: dir,
        })
    }

    async fn start_child(binary: &PathBuf, dir: Option<TempDir>, database_url: String) -> anyhow::Result<Self> {
        let addr = free_port()?;
        let log_path = match &dir {
            Some(d) => d.0.join("server.log"),
            None => std::env::temp_dir().join(format!("tenscale-loadgen-{}.log", std::process::id())),
        };
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .arg("serve")
            .env("TENSCALE_LISTEN_ADDR", addr.to_string())
            .env("TENSCALE_DATABASE_URL", &database_url)
            .env("TENSCALE_STUN_ADDR", "off")
            // Every simulated node connects from loopback.
            .env("TENSCALE_MAX_CONNECTIONS_PER_IP", "0")
            .env("TENSCALE_HANDSHAKE_RATE_PER_IP", "0")
            .env("TENSCALE_LOG", std::env::var("TENSCALE_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let mut target = Self {
            addr,
            database_url,
            pid: Some(pid),
            shares_process: false,
            measurable: true,
            description: format!("child process `{} serve` (pid {pid}, log {})", binary.display(), log_path.display()),
            running: Running::Child(child),
            _dir: dir,
        };
        target.wait_ready().await?;
        Ok(target)
    }

    /// Polls `GET /key` until the server answers.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = self.base_url();
        for _ in 0..300 {
            if crate::control::client::fetch_server_key(&url).await.is_ok() {
                return Ok(());
            }
            if let Running::Child(child) = &mut self.running {
                if let Some(status) = child.try_wait()? {
                    bail!("server exited during start-up: {status}; see {}", self.description);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("server did not answer GET /key within 30 s")
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's memory and CPU now (this process's, when it runs in-process).
    pub fn sample(&self) -> ProcSample {
        machine::sample(self.pid)
    }

    pub async fn stop(mut self) {
        match &mut self.running {
            Running::InProcess { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
            }
            Running::Child(child) => {
                // SIGTERM for a graceful stop, then make sure it is gone.
                let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
                for _ in 0..50 {
                    if child.try_wait().ok().flatten().is_some() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::External => {}
        }
    }
}

fn settings(database_url: &str, listen: &str) -> anyhow::Result<crate::config::Settings> {
    let env: Vec<(String, String)> = vec![
        ("TENSCALE_LISTEN_ADDR".into(), listen.into()),
        ("TENSCALE_DATABASE_URL".into(), database_url.into()),
        ("TENSCALE_STUN_ADDR".into(), "off".into()),
        ("TENSCALE_MAX_CONNECTIONS_PER_IP".into(), "0".into()),
        ("TENSCALE_HANDSHAKE_RATE_PER_IP".into(), "0".into()),
    ];
    Ok(crate::config::Settings::load_from(None, &env)?)
}

/// A loopback port that was free a moment ago (the child binds it).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> anyhow::Result<Self> {
        use rand::RngCore;
        let mut tag = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut tag);
        let path = std::env::temp_dir().join(format!("tenscale-loadgen-{}", hex::encode(tag)));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
