//! Logging set-up, done once at start. `TENSCALE_LOG` (or `RUST_LOG`) picks the filter;
//! logs go to stderr so that CLI commands keep stdout for their JSON.

use tracing_subscriber::EnvFilter;

pub fn init() {
    init_with_default("info");
}

/// Like [`init`], with `default` as the filter when neither variable is set.
pub fn init_with_default(default: &str) {
    let filter = std::env::var("TENSCALE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
