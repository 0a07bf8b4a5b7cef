//! `tsrs-probe`: Tailscale's own Rust client (the `tailscale` crate, tailscale-rs) joining a
//! tenscale namespace, for the real-client tests (`tests/realclient/test_tsrs.py`).
//!
//! ```text
//! tsrs-probe --control-url URL --auth-key KEY [--hostname NAME] [--state-dir DIR] MODE
//!   MODE = dial IP:PORT MESSAGE   write MESSAGE + "\n", print what comes back until EOF
//!                                 (escaped into one line)
//!        | listen PORT            accept on the tailnet, echo every line
//! ```
//! Prints `tailnet-ipv4 ADDR` once joined, then `reply TEXT` (dial) or `listening ADDR` and
//! `got LINE` (listen) on stdout; logs go to stderr (`RUST_LOG`, default `warn`). Exits 1
//! with a message on any failure; every wait has a deadline.

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tailscale::{AuthState, Config, Device};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::{sleep, timeout, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// tailscale-rs 0.6 does not retry a failed first control connection (its control task
/// ends and later calls wait forever), so joining is bounded.
const JOIN_DEADLINE: Duration = Duration::from_secs(90);
/// How long a peer may take to appear in the netmap, and a dial to connect.
const PEER_DEADLINE: Duration = Duration::from_secs(60);
const REPLY_DEADLINE: Duration = Duration::from_secs(30);

const USAGE: &str = "usage: tsrs-probe --control-url URL --auth-key KEY [--hostname NAME] \
                     [--state-dir DIR] (dial IP:PORT MESSAGE | listen PORT)";

enum Mode {
    Dial { to: SocketAddr, message: String },
    Listen { port: u16 },
}

struct Args {
    control_url: url::Url,
    auth_key: String,
    hostname: Option<String>,
    state_dir: Option<PathBuf>,
    mode: Mode,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args> {
    let (mut control_url, mut auth_key, mut hostname, mut state_dir) = (None, None, None, None);
    let mut rest = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--control-url" => control_url = Some(value()?.parse()?),
            "--auth-key" => auth_key = Some(value()?),
            "--hostname" => hostname = Some(value()?),
            "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            _ => rest.push(arg),
        }
    }
    let mode = match rest.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["dial", to, message] => Mode::Dial { to: to.parse()?, message: message.to_owned() },
        ["listen", port] => Mode::Listen { port: port.parse()? },
        _ => return Err(USAGE.into()),
    };
    Ok(Args {
        control_url: control_url.ok_or("--control-url is required")?,
        auth_key: auth_key.ok_or("--auth-key is required")?,
        hostname,
        state_dir,
        mode,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    // Built in the workspace, rustls has two providers and picks neither by itself.
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        eprintln!("tsrs-probe: a rustls crypto provider was already installed");
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    match run(parse_args(std::env::args().skip(1))).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tsrs-probe: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Result<Args>) -> Result<()> {
    let args = args?;
    let mut config = match &args.state_dir {
        Some(dir) => Config::default_with_key_file(dir.join("tsrs_keys.json")).await?,
        None => Config::default(),
    };
    config.control_server_url = args.control_url;
    config.requested_hostname = args.hostname;

    let (device, ipv4) = timeout(JOIN_DEADLINE, join(&config, args.auth_key))
        .await
        .map_err(|_| format!("not joined within {JOIN_DEADLINE:?}"))??;
    println!("tailnet-ipv4 {ipv4}");
    match args.mode {
        Mode::Dial { to, message } => dial(&device, to, &message).await?,
        Mode::Listen { port } => listen(&device, SocketAddr::from((ipv4, port))).await?,
    }
    device.shutdown(Some(Duration::from_secs(2))).await;
    Ok(())
}

async fn join(config: &Config, auth_key: String) -> Result<(Device, Ipv4Addr)> {
    let device = Device::new(config, Some(auth_key)).await?;
    if let AuthState::NotAuthorized(url) = device.is_authorized().await? {
        return Err(format!("the control server wants an interactive login at {url}").into());
    }
    let ipv4 = device.ipv4_addr().await?;
    Ok((device, ipv4))
}

/// Connects once the peer is in the netmap (retrying a dial that times out or fails while
/// paths come up), writes the message, and prints the whole answer.
async fn dial(device: &Device, to: SocketAddr, message: &str) -> Result<()> {
    let deadline = Instant::now() + PEER_DEADLINE;
    while device.peer_by_tailnet_ip(to.ip()).await?.is_none() {
        if Instant::now() >= deadline {
            return Err(format!("{} never appeared in the netmap", to.ip()).into());
        }
        sleep(Duration::from_millis(250)).await;
    }
    let mut stream = loop {
        match timeout(Duration::from_secs(10), device.tcp_connect(to)).await {
            Ok(Ok(stream)) => break stream,
            Ok(Err(err)) if Instant::now() < deadline => eprintln!("tsrs-probe: dial {to}: {err}; again"),
            Err(_) if Instant::now() < deadline => eprintln!("tsrs-probe: dial {to} timed out; again"),
            Ok(Err(err)) => return Err(format!("dial {to}: {err}").into()),
            Err(_) => return Err(format!("dial {to}: no connection within {PEER_DEADLINE:?}").into()),
        }
        sleep(Duration::from_millis(500)).await;
    };
    stream.write_all(format!("{message}\n").as_bytes()).await?;
    stream.flush().await?;
    let mut reply = Vec::new();
    timeout(REPLY_DEADLINE, stream.read_to_end(&mut reply))
        .await
        .map_err(|_| format!("no end of the reply within {REPLY_DEADLINE:?}"))??;
    // One line, whatever the reply holds (`\r\n` becomes the four characters `\r\n`).
    println!("reply {}", String::from_utf8_lossy(&reply).escape_debug());
    Ok(())
}

/// Echoes every line of every connection until the process is stopped.
async fn listen(device: &Device, on: SocketAddr) -> Result<()> {
    let listener = device.tcp_listen(on).await?;
    println!("listening {on}");
    loop {
        let conn = listener.accept().await?;
        tokio::spawn(async move {
            let (read, mut write) = tokio::io::split(conn);
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("got {line}");
                if write.write_all(format!("{line}\n").as_bytes()).await.is_err() || write.flush().await.is_err() {
                    break;
                }
            }
        });
    }
}
