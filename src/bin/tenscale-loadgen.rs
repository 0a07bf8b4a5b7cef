//! `tenscale-loadgen`: joins simulated nodes to a tenscale server through the real protocol
//! and prints registrations/s, time to first netmap, fan-out latency and memory per node.
//! The work is in [`tenscale::loadgen`]; this is only its command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tenscale::loadgen::{self, Options, TargetSpec};

#[derive(Parser)]
#[command(name = "tenscale-loadgen", about = "Load generator for a tenscale server (see BENCHMARKS.md)")]
struct Cli {
    /// Simulated nodes to join.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Namespaces to spread them over (contiguous blocks of nodes).
    #[arg(long, default_value_t = 1)]
    namespaces: usize,
    /// A running server (`http://ip:port`); needs `--database-url` of that server's database,
    /// where the namespaces and keys are created. All nodes connect from one address, so start
    /// it with `TENSCALE_MAX_CONNECTIONS_PER_IP=0 TENSCALE_HANDSHAKE_RATE_PER_IP=0`.
    /// Default: start a server in this process.
    #[arg(long, requires = "database_url", conflicts_with = "spawn")]
    url: Option<String>,
    /// Start `<binary> serve` as a child process and measure its memory alone
    /// (e.g. target/release/tenscale).
    #[arg(long)]
    spawn: Option<PathBuf>,
    /// Database for the server (default: a fresh SQLite file in a temp dir).
    #[arg(long)]
    database_url: Option<String>,
    /// PID of the running server given by `--url`, to read its memory.
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
    /// Joins in flight at once during the ramp.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Start at most this many joins per second during the ramp (default: as fast as
    /// `--concurrency` allows, which saturates the machine and measures queueing).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Sequential joins after the ramp, each measured on a quiet server.
    #[arg(long, default_value_t = 50)]
    probes: usize,
    /// Most map streams held at once (file-descriptor limits); older namespaces disconnect.
    #[arg(long)]
    max_connected: Option<usize>,
    /// Only register; hold no map streams.
    #[arg(long)]
    no_stream: bool,
    /// Afterwards, open one idle DERP connection per registered node and weigh them.
    #[arg(long)]
    derp: bool,
    /// Seconds of quiet before each memory sample.
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// Seconds to wait for a fan-out to reach everyone before counting it incomplete.
    #[arg(long, default_value_t = 30)]
    fanout_timeout_secs: u64,
}

fn main() -> anyhow::Result<()> {
    tenscale::telemetry::init_with_default("warn");
    let cli = Cli::parse();
    let target = match (cli.url, cli.spawn) {
        (Some(url), _) => {
            TargetSpec::External { url, database_url: cli.database_url.unwrap_or_default(), pid: cli.server_pid }
        }
        (None, Some(binary)) => TargetSpec::Child { binary, database_url: cli.database_url },
        (None, None) => TargetSpec::InProcess { database_url: cli.database_url },
    };
    let options = Options {
        nodes: cli.nodes,
        namespaces: cli.namespaces,
        target,
        concurrency: cli.concurrency,
        rate: cli.rate,
        probes: cli.probes,
        max_connected: cli.max_connected,
        stream: !cli.no_stream,
        derp: cli.derp,
        settle: Duration::from_secs(cli.settle_secs),
        fanout_timeout: Duration::from_secs(cli.fanout_timeout_secs),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let command: Vec<String> = std::env::args().collect();
    let report = runtime.block_on(loadgen::run(options))?;
    println!("command: {}", command.join(" "));
    println!("{report}");
    Ok(())
}

/// Joins per second: a finite number from 0.001 (one every 1,000 s) to 1,000,000.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|err| format!("{text:?} is not a number: {err}"))?;
    if !(0.001..=1_000_000.0).contains(&rate) {
        return Err(format!("{text} joins per second is outside 0.001..=1000000"));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_outside_the_range_or_not_numbers_are_refused() {
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "1e-300", "NaN", "inf", "2e6", "abc", ""] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }
}
