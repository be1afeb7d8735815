//! The audit log: one JSON line for every CRI call that changes the node
//! (pods, containers, exec/attach/port-forward, images, resources,
//! runtime config, checkpoints), naming who called (the socket peer's
//! uid, gid and pid from `SO_PEERCRED`), what it acted on, how it ended
//! and how long it took. Nothing secret goes in: no registry credentials,
//! no environment values, no container config beyond its name and image.
//!
//! Lines go to the systemd journal (`SYSLOG_IDENTIFIER=pvecri-audit`), to
//! an append-only file, or nowhere (`[audit] output`); see
//! docs/configuration.md.

mod entry;
mod sink;

use std::sync::Arc;
use std::time::Instant;

pub(crate) use entry::Entry;
pub(crate) use sink::{AuditError, Sink};

use crate::config::AuditConfig;

/// Where audit lines go; shared by the CRI services.
#[derive(Debug)]
pub(crate) struct AuditLog {
    sink: Option<Sink>,
}

impl AuditLog {
    /// The log `config` asks for.
    pub(crate) fn open(config: &AuditConfig) -> Result<Arc<Self>, AuditError> {
        Ok(Arc::new(Self {
            sink: Sink::open(config)?,
        }))
    }

    /// A log that records nothing (services built without one).
    pub(crate) fn disabled() -> Arc<Self> {
        Arc::new(Self { sink: None })
    }

    /// Starts the record of one call; [`Scope::finish`] writes it.
    pub(crate) fn scope<T>(
        self: &Arc<Self>,
        method: &'static str,
        request: &tonic::Request<T>,
    ) -> Scope {
        let mut entry = Entry::new(method);
        if let Some(cred) = request
            .extensions()
            .get::<tonic::transport::server::UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
        {
            entry.uid = Some(cred.uid());
            entry.gid = Some(cred.gid());
            entry.pid = cred.pid();
        }
        Scope {
            log: self.clone(),
            entry,
            started: Instant::now(),
        }
    }
}

/// One call being recorded.
#[must_use = "a scope writes its line only when finished"]
pub(crate) struct Scope {
    log: Arc<AuditLog>,
    entry: Entry,
    started: Instant,
}

impl Scope {
    pub(crate) fn pod(mut self, id: &str) -> Self {
        self.entry.set_pod(id);
        self
    }

    pub(crate) fn container(mut self, id: &str) -> Self {
        self.entry.set_container(id);
        self
    }

    pub(crate) fn image(mut self, image: &str) -> Self {
        self.entry.set_image(image);
        self
    }

    /// The command an exec runs (its arguments, never its environment).
    pub(crate) fn command(mut self, cmd: &[String]) -> Self {
        self.entry.set_command(cmd);
        self
    }

    /// A name the call acted on besides its IDs (a container's or pod's
    /// metadata name at creation).
    pub(crate) fn name(mut self, name: &str) -> Self {
        self.entry.set_name(name);
        self
    }

    /// Writes the line for `result` and hands `result` back.
    pub(crate) fn finish<T>(
        mut self,
        result: Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<tonic::Response<T>, tonic::Status> {
        self.entry.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(_) => self.entry.set_outcome(tonic::Code::Ok, ""),
            Err(status) => self.entry.set_outcome(status.code(), status.message()),
        }
        if let Some(sink) = &self.log.sink {
            sink.write(&self.entry);
        }
        result
    }
}
