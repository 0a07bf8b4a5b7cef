//! Typed settings, loaded once: built-in defaults, then an optional TOML file (`--config`),
//! then `TENSCALE_*` environment variables, which win.
//!
//! Secrets (database and Redis URLs may carry passwords) are wrapped in [`Secret`], whose
//! `Debug` and `Display` never show the value, so a logged `Settings` leaks nothing.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Redis pub/sub channel for events unless `TENSCALE_REDIS_CHANNEL` names another.
pub const DEFAULT_REDIS_CHANNEL: &str = "tenscale:events";

use serde::Deserialize;

/// A value that must never reach a log line.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Everything the service can be told at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the single listener (API, control, DERP) binds.
    pub listen_addr: SocketAddr,
    /// The public URL clients use to reach us.
    pub server_url: String,
    pub database_url: Secret,
    pub redis_url: Option<Secret>,
    /// Redis pub/sub channel for tailnet events. Instances that serve the same database must
    /// share it; separate deployments (or test runs) on one Redis must not.
    pub redis_channel: String,
    /// MagicDNS names are `<node>.<namespace>.<base_domain>`.
    pub base_domain: String,
    /// The longest lifetime a pre-auth key may be given.
    pub max_key_expiry: Duration,
    pub rate_limit: RateLimitSettings,
    /// Upper bound on a REST request body.
    pub body_limit_bytes: usize,
    /// How long a REST request body may take to arrive once its head has (a stalled body is
    /// answered 408 and the connection freed).
    pub body_timeout: Duration,
    /// Time a new connection has for its TLS handshake and first request head.
    pub header_timeout: Duration,
    /// Time a control (ts2021) client has, after the 101, to take the Noise response and send
    /// the HTTP/2 preface and SETTINGS; and a DERP client to send its ClientInfo.
    pub handshake_timeout: Duration,
    /// How long a control (ts2021) client may leave our writes unread: a write to its socket,
    /// or an HTTP/2 stream's body held back by its flow-control window (that stream is reset).
    pub write_timeout: Duration,
    /// Open connections in all; over it new ones are closed on accept (0: no cap).
    pub max_connections: usize,
    /// Open connections from one client address; over it new ones are closed on accept
    /// (0: no cap). Behind a load balancer every connection comes from its address.
    pub max_connections_per_ip: usize,
    /// Handshakes (control and DERP upgrades, raw or WebSocket) one client address may start
    /// per second, after a burst of `handshake_burst_per_ip`; over it they are answered 429
    /// (0: no limit). Behind a load balancer every handshake comes from its address.
    pub handshake_rate_per_ip: u32,
    pub handshake_burst_per_ip: u32,
    /// How long an HTTP/1 connection may sit idle between REST requests.
    pub keep_alive: Duration,
    /// PEM files; when both are set the main listener speaks TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// UDP STUN listener; `None` disables STUN.
    pub stun_addr: Option<SocketAddr>,
    pub derp: DerpSettings,
    /// An ephemeral node that has been offline this long is deleted.
    pub ephemeral_timeout: Duration,
    /// How long an instance's lease lasts without renewal: the longest a crashed instance's
    /// nodes stay online to their peers (`presence_lease`, default 15 s).
    pub presence_lease: Duration,
    /// How long change events stay in the outbox (`events` table) before they are pruned.
    pub event_retention: Duration,
    /// Interval between map-stream keep-alives.
    pub keepalive_interval: Duration,
    /// Number of actix worker threads (0 = one per core).
    pub workers: usize,
    /// 64 hex digits sealing stored secrets (see `secrets`); unset = a key file beside a
    /// SQLite database, none for PostgreSQL.
    pub secrets_key: Option<Secret>,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// Browser-key exchanges allowed per minute, per namespace and per client address.
    pub browser_key_rate_per_minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub per_second: u32,
    pub burst: u32,
}

/// How the DERP map sent to clients describes this server's region.
#[derive(Debug, Clone)]
pub struct DerpSettings {
    pub region_id: u32,
    pub region_code: String,
    pub region_name: String,
    /// Host clients dial for DERP; derived from `server_url` when unset.
    pub host: Option<String>,
    /// Port clients dial for DERP; derived from `server_url` when unset.
    pub port: Option<u16>,
    /// Skip certificate checks in clients (self-signed test certificates only).
    pub insecure_for_tests: bool,
    /// Packet bytes per second one DERP client connection may send (0: no limit); over it the
    /// relay stops reading that connection for a while.
    pub send_rate_bytes_per_second: u64,
    /// Extra regions, as DERPMap region JSON objects, appended verbatim.
    pub extra_regions: Vec<serde_json::Value>,
    /// The deployment's shared DERP mesh key (64 hex digits); without it the instances of a
    /// deployment do not relay to each other's clients.
    pub mesh_key: Option<Secret>,
    /// Where the other instances reach this one's relay (`http://host:port`, not the load
    /// balancer); `http://<listen address>` when unset.
    pub mesh_url: Option<String>,
}

/// Raw, all-optional view of a TOML file or the environment; merged onto the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    listen_addr: Option<String>,
    server_url: Option<String>,
    database_url: Option<Secret>,
    redis_url: Option<Secret>,
    redis_channel: Option<String>,
    base_domain: Option<String>,
    max_key_expiry: Option<String>,
    rate_limit_per_second: Option<u32>,
    rate_limit_burst: Option<u32>,
    body_limit_bytes: Option<usize>,
    body_timeout: Option<String>,
    header_timeout: Option<String>,
    handshake_timeout: Option<String>,
    write_timeout: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    handshake_rate_per_ip: Option<u32>,
    handshake_burst_per_ip: Option<u32>,
    keep_alive: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    stun_addr: Option<String>,
    derp_region_id: Option<u32>,
    derp_region_code: Option<String>,
    derp_region_name: Option<String>,
    derp_host: Option<String>,
    derp_port: Option<u16>,
    derp_insecure_for_tests: Option<bool>,
    derp_send_rate_bytes_per_second: Option<u64>,
    derp_extra_regions: Option<Vec<serde_json::Value>>,
    derp_mesh_key: Option<Secret>,
    derp_mesh_url: Option<String>,
    ephemeral_timeout: Option<String>,
    presence_lease: Option<String>,
    event_retention: Option<String>,
    keepalive_interval: Option<String>,
    workers: Option<usize>,
    secrets_key: Option<Secret>,
    metrics_token: Option<Secret>,
    browser_key_rate_per_minute: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

const ENV_PREFIX: &str = "TENSCALE_";

impl Settings {
    /// Loads defaults, then `file` (if any), then the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Like [`Settings::load`] but with an explicit environment, for tests.
    pub fn load_from(file: Option<&std::path::Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut overrides = match file {
            Some(path) => read_file(path)?,
            None => Overrides::default(),
        };
        apply_env(&mut overrides, env)?;
        Self::from_overrides(overrides)
    }

    fn from_overrides(o: Overrides) -> Result<Self, ConfigError> {
        let listen_addr: SocketAddr =
            o.listen_addr.as_deref().unwrap_or("127.0.0.1:8080").parse().map_err(|e| invalid("listen_addr", e))?;
        let server_url =
            o.server_url.unwrap_or_else(|| format!("http://{listen_addr}")).trim_end_matches('/').to_string();
        if !(server_url.starts_with("http://") || server_url.starts_with("https://")) {
            return Err(invalid("server_url", "must start with http:// or https://"));
        }
        let stun_addr = match o.stun_addr.as_deref() {
            None => Some("0.0.0.0:3478".parse().expect("valid literal")),
            Some("" | "off" | "none" | "disabled") => None,
            Some(text) => Some(text.parse().map_err(|e| invalid("stun_addr", e))?),
        };
        let rate_limit = RateLimitSettings {
            per_second: o.rate_limit_per_second.unwrap_or(20),
            burst: o.rate_limit_burst.unwrap_or(100),
        };
        if rate_limit.per_second == 0 || rate_limit.burst == 0 {
            return Err(invalid("rate_limit", "per_second and burst must be positive"));
        }
        if o.tls_cert.is_some() != o.tls_key.is_some() {
            return Err(invalid("tls_cert", "tls_cert and tls_key must be set together"));
        }
        Ok(Settings {
            listen_addr,
            server_url,
            database_url: o.database_url.unwrap_or_else(|| Secret::new("sqlite://tenscale.db?mode=rwc")),
            redis_url: o.redis_url.filter(|url| !url.expose().is_empty()),
            redis_channel: match o.redis_channel {
                None => DEFAULT_REDIS_CHANNEL.to_string(),
                Some(c) if c.trim().is_empty() => return Err(invalid("redis_channel", "must not be empty")),
                Some(c) => c,
            },
            base_domain: o.base_domain.unwrap_or_else(|| "tenscale.internal".to_string()),
            max_key_expiry: duration_or("max_key_expiry", o.max_key_expiry, "366d")?,
            rate_limit,
            body_limit_bytes: o.body_limit_bytes.unwrap_or(256 * 1024),
            body_timeout: duration_or("body_timeout", o.body_timeout, "10s")?,
            header_timeout: positive_duration_or("header_timeout", o.header_timeout, "10s")?,
            handshake_timeout: positive_duration_or("handshake_timeout", o.handshake_timeout, "10s")?,
            write_timeout: positive_duration_or("write_timeout", o.write_timeout, "120s")?,
            max_connections: o.max_connections.unwrap_or(100_000),
            max_connections_per_ip: o.max_connections_per_ip.unwrap_or(1024),
            handshake_rate_per_ip: o.handshake_rate_per_ip.unwrap_or(50),
            handshake_burst_per_ip: o.handshake_burst_per_ip.unwrap_or(500),
            keep_alive: duration_or("keep_alive", o.keep_alive, "5s")?,
            tls_cert: o.tls_cert,
            tls_key: o.tls_key,
            stun_addr,
            derp: DerpSettings {
                region_id: o.derp_region_id.unwrap_or(900),
                region_code: o.derp_region_code.unwrap_or_else(|| "tenscale".to_string()),
                region_name: o.derp_region_name.unwrap_or_else(|| "tenscale".to_string()),
                host: o.derp_host,
                port: o.derp_port,
                insecure_for_tests: o.derp_insecure_for_tests.unwrap_or(false),
                send_rate_bytes_per_second: o.derp_send_rate_bytes_per_second.unwrap_or(0),
                extra_regions: o.derp_extra_regions.unwrap_or_default(),
                mesh_key: mesh_key(o.derp_mesh_key)?,
                mesh_url: mesh_url(o.derp_mesh_url)?,
            },
            ephemeral_timeout: duration_or("ephemeral_timeout", o.ephemeral_timeout, "5m")?,
            presence_lease: match duration_or("presence_lease", o.presence_lease, "15s")? {
                lease if lease < Duration::from_secs(1) => {
                    return Err(invalid("presence_lease", "must be at least 1s"))
                }
                lease => lease,
            },
            event_retention: duration_or("event_retention", o.event_retention, "7d")?,
            keepalive_interval: duration_or("keepalive_interval", o.keepalive_interval, "50s")?,
            workers: o.workers.unwrap_or(0),
            secrets_key: o.secrets_key.filter(|key| !key.expose().is_empty()),
            metrics_token: o.metrics_token.filter(|token| !token.expose().is_empty()),
            browser_key_rate_per_minute: match o.browser_key_rate_per_minute.unwrap_or(30) {
                0 => return Err(invalid("browser_key_rate_per_minute", "must be positive")),
                n => n,
            },
        })
    }

    /// Whether the database is PostgreSQL (rather than SQLite).
    pub fn is_postgres(&self) -> bool {
        self.database_url.expose().starts_with("postgres")
    }
}

/// An empty key is no key; anything else must be 64 hex digits.
fn mesh_key(key: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    match key {
        Some(key) if key.expose().trim().is_empty() => Ok(None),
        Some(key) if !is_32_bytes_of_hex(key.expose().trim()) => {
            Err(invalid("derp_mesh_key", "must be 64 hex digits (32 random bytes)"))
        }
        key => Ok(key),
    }
}

fn is_32_bytes_of_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn mesh_url(url: Option<String>) -> Result<Option<String>, ConfigError> {
    match url.map(|u| u.trim().trim_end_matches('/').to_string()) {
        Some(url) if url.is_empty() => Ok(None),
        Some(url) if !url.starts_with("http://") => {
            Err(invalid("derp_mesh_url", "must be http://host:port (instances mesh on the private network)"))
        }
        url => Ok(url),
    }
}

fn read_file(path: &std::path::Path) -> Result<Overrides, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Toml { path: path.to_path_buf(), message: e.to_string() })
}

/// Applies every `TENSCALE_<FIELD>` variable onto `o`. Unknown `TENSCALE_*` names are
/// logged as warnings, so that a typo does not silently fall back to a default unnoticed
/// (they are not refused: tools around the server use the same prefix).
fn apply_env(o: &mut Overrides, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(field) = name.strip_prefix(ENV_PREFIX) else { continue };
        let value = value.clone();
        match field {
            "LISTEN_ADDR" => o.listen_addr = Some(value),
            "SERVER_URL" => o.server_url = Some(value),
            "DATABASE_URL" => o.database_url = Some(Secret::new(value)),
            "REDIS_URL" => o.redis_url = Some(Secret::new(value)),
            "REDIS_CHANNEL" => o.redis_channel = Some(value),
            "BASE_DOMAIN" => o.base_domain = Some(value),
            "MAX_KEY_EXPIRY" => o.max_key_expiry = Some(value),
            "RATE_LIMIT_PER_SECOND" => o.rate_limit_per_second = Some(number("RATE_LIMIT_PER_SECOND", &value)?),
            "RATE_LIMIT_BURST" => o.rate_limit_burst = Some(number("RATE_LIMIT_BURST", &value)?),
            "BODY_LIMIT_BYTES" => o.body_limit_bytes = Some(number("BODY_LIMIT_BYTES", &value)?),
            "BODY_TIMEOUT" => o.body_timeout = Some(value),
            "HEADER_TIMEOUT" => o.header_timeout = Some(value),
            "HANDSHAKE_TIMEOUT" => o.handshake_timeout = Some(value),
            "WRITE_TIMEOUT" => o.write_timeout = Some(value),
            "MAX_CONNECTIONS" => o.max_connections = Some(number("MAX_CONNECTIONS", &value)?),
            "MAX_CONNECTIONS_PER_IP" => o.max_connections_per_ip = Some(number("MAX_CONNECTIONS_PER_IP", &value)?),
            "HANDSHAKE_RATE_PER_IP" => o.handshake_rate_per_ip = Some(number("HANDSHAKE_RATE_PER_IP", &value)?),
            "HANDSHAKE_BURST_PER_IP" => o.handshake_burst_per_ip = Some(number("HANDSHAKE_BURST_PER_IP", &value)?),
            "KEEP_ALIVE" => o.keep_alive = Some(value),
            "TLS_CERT" => o.tls_cert = Some(value.into()),
            "TLS_KEY" => o.tls_key = Some(value.into()),
            "STUN_ADDR" => o.stun_addr = Some(value),
            "DERP_REGION_ID" => o.derp_region_id = Some(number("DERP_REGION_ID", &value)?),
            "DERP_REGION_CODE" => o.derp_region_code = Some(value),
            "DERP_REGION_NAME" => o.derp_region_name = Some(value),
            "DERP_HOST" => o.derp_host = Some(value),
            "DERP_PORT" => o.derp_port = Some(number("DERP_PORT", &value)?),
            "DERP_INSECURE_FOR_TESTS" => o.derp_insecure_for_tests = Some(boolean("DERP_INSECURE_FOR_TESTS", &value)?),
            "DERP_SEND_RATE_BYTES_PER_SECOND" => {
                o.derp_send_rate_bytes_per_second = Some(number("DERP_SEND_RATE_BYTES_PER_SECOND", &value)?)
            }
            "DERP_EXTRA_REGIONS" => {
                o.derp_extra_regions = Some(
                    serde_json::from_str(&value)
                        .map_err(|e| invalid("TENSCALE_DERP_EXTRA_REGIONS", format!("must be a JSON array: {e}")))?,
                )
            }
            "DERP_MESH_KEY" => o.derp_mesh_key = Some(Secret::new(value)),
            "DERP_MESH_URL" => o.derp_mesh_url = Some(value),
            "EPHEMERAL_TIMEOUT" => o.ephemeral_timeout = Some(value),
            "PRESENCE_LEASE" => o.presence_lease = Some(value),
            "EVENT_RETENTION" => o.event_retention = Some(value),
            "KEEPALIVE_INTERVAL" => o.keepalive_interval = Some(value),
            "WORKERS" => o.workers = Some(number("WORKERS", &value)?),
            "SECRETS_KEY" => o.secrets_key = Some(Secret::new(value)),
            "METRICS_TOKEN" => o.metrics_token = Some(Secret::new(value)),
            "BROWSER_KEY_RATE_PER_MINUTE" => {
                o.browser_key_rate_per_minute = Some(number("BROWSER_KEY_RATE_PER_MINUTE", &value)?)
            }
            // Read by the log set-up, not a setting of the service.
            "LOG" => {}
            _ => tracing::warn!(variable = %name, "ignoring unknown TENSCALE_* variable"),
        }
    }
    Ok(())
}

fn number<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    value.trim().parse().map_err(|e| invalid(key, e))
}

fn boolean(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(invalid(key, format!("not a boolean: {other:?}"))),
    }
}

fn invalid(key: &'static str, message: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid { key, message: message.to_string() }
}

fn duration_or(key: &'static str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    parse_duration(value.as_deref().unwrap_or(default)).map_err(|m| invalid(key, m))
}

/// Like [`duration_or`], refusing zero (a timeout of zero would close every connection).
fn positive_duration_or(key: &'static str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    match duration_or(key, value, default)? {
        d if d.is_zero() => Err(invalid(key, "must be more than 0")),
        d => Ok(d),
    }
}

/// Parses `"90"` (seconds), `"500ms"`, `"5s"`, `"5m"`, `"2h"`, `"90d"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("not a duration: {text:?}"))?;
    let secs = |mult: u64| Duration::from_secs(n.saturating_mul(mult));
    match unit {
        "" | "s" => Ok(secs(1)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(secs(60)),
        "h" => Ok(secs(3600)),
        "d" => Ok(secs(86_400)),
        _ => Err(format!("unknown unit in duration {text:?} (use ms, s, m, h or d)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_follow_the_listen_address() {
        let s = Settings::load_from(None, &env(&[("TENSCALE_LISTEN_ADDR", "127.0.0.1:9999")])).unwrap();
        assert_eq!(s.server_url, "http://127.0.0.1:9999");
        assert_eq!(s.database_url.expose(), "sqlite://tenscale.db?mode=rwc");
        assert_eq!(s.rate_limit, RateLimitSettings { per_second: 20, burst: 100 });
        assert_eq!(s.max_key_expiry, Duration::from_secs(366 * 86_400));
        assert_eq!(s.ephemeral_timeout, Duration::from_secs(300));
        assert_eq!(s.event_retention, Duration::from_secs(7 * 86400));
        assert_eq!(s.redis_channel, "tenscale:events");
        let c = Settings::load_from(None, &env(&[("TENSCALE_REDIS_CHANNEL", "t:1")])).unwrap();
        assert_eq!(c.redis_channel, "t:1");
        assert!(Settings::load_from(None, &env(&[("TENSCALE_REDIS_CHANNEL", " ")])).is_err());
    }

    #[test]
    fn environment_overrides_file() {
        let dir = std::env::temp_dir().join(format!("tenscale-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.toml");
        std::fs::write(&path, "base_domain = \"file.example\"\nrate_limit_burst = 7\n").unwrap();
        let s = Settings::load_from(Some(&path), &env(&[("TENSCALE_BASE_DOMAIN", "env.example")])).unwrap();
        assert_eq!(s.base_domain, "env.example");
        assert_eq!(s.rate_limit.burst, 7);
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("TENSCALE_DATABASE_URL", "postgres://u:hunter2@db/x"),
                ("TENSCALE_REDIS_URL", "redis://:pw-secret@r"),
            ]),
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("pw-secret"), "{shown}");
        assert!(s.is_postgres());
    }

    #[test]
    fn bad_values_are_refused_unknown_variables_ignored() {
        assert!(Settings::load_from(None, &env(&[("TENSCALE_LISTEN_ADR", "x")])).is_ok());
        assert!(Settings::load_from(None, &env(&[("TENSCALE_LISTEN_ADDR", "nope")])).is_err());
        assert!(Settings::load_from(None, &env(&[("TENSCALE_EPHEMERAL_TIMEOUT", "5 fortnights")])).is_err());
        let off = Settings::load_from(None, &env(&[("TENSCALE_STUN_ADDR", "off")])).unwrap();
        assert_eq!(off.stun_addr, None);
        assert!(Settings::load_from(None, &env(&[("TENSCALE_HEADER_TIMEOUT", "0s")])).is_err());
        assert!(Settings::load_from(None, &env(&[("TENSCALE_MAX_CONNECTIONS_PER_IP", "-1")])).is_err());
    }

    #[test]
    fn connection_limits_load() {
        let d = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!((d.header_timeout, d.handshake_timeout), (Duration::from_secs(10), Duration::from_secs(10)));
        assert_eq!(d.write_timeout, Duration::from_secs(120));
        assert_eq!((d.max_connections, d.max_connections_per_ip), (100_000, 1024));
        assert_eq!(
            (d.handshake_rate_per_ip, d.handshake_burst_per_ip, d.keep_alive),
            (50, 500, Duration::from_secs(5))
        );
        let s = Settings::load_from(
            None,
            &env(&[
                ("TENSCALE_HEADER_TIMEOUT", "2s"),
                ("TENSCALE_HANDSHAKE_TIMEOUT", "1500ms"),
                ("TENSCALE_WRITE_TIMEOUT", "3s"),
                ("TENSCALE_MAX_CONNECTIONS", "0"),
                ("TENSCALE_MAX_CONNECTIONS_PER_IP", "64"),
                ("TENSCALE_HANDSHAKE_RATE_PER_IP", "0"),
                ("TENSCALE_HANDSHAKE_BURST_PER_IP", "7"),
                ("TENSCALE_KEEP_ALIVE", "30s"),
            ]),
        )
        .unwrap();
        assert_eq!((s.handshake_rate_per_ip, s.handshake_burst_per_ip, s.keep_alive), (0, 7, Duration::from_secs(30)));
        assert_eq!((s.header_timeout, s.handshake_timeout), (Duration::from_secs(2), Duration::from_millis(1500)));
        assert_eq!(s.write_timeout, Duration::from_secs(3));
        assert_eq!((s.max_connections, s.max_connections_per_ip), (0, 64));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("s").is_err());
    }
}
