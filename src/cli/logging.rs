//! Daemon logging: `tracing` to stderr, which systemd sends to the journal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

pub(super) fn init(config: &Config) {
    // RUST_LOG overrides the configured level for one-off debugging.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match (config.log_format, under_journal) {
        (LogFormat::Json, _) => builder.json().init(),
        // The journal timestamps every line itself.
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}
