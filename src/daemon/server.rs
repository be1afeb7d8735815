//! The gRPC server loop and its shutdown.

use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;

use tracing::{info, info_span, warn};

use super::socket;
use crate::cri::{ImageService, RuntimeService};
use crate::runtime::Runtime;

/// How long in-flight calls may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(super) async fn serve(runtime: Arc<Runtime>) -> anyhow::Result<()> {
    let config = runtime.config().clone();
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let streaming = crate::streaming::StreamingServer::start(runtime.clone()).await?;

    let _watcher = AbortOnDrop(crate::runtime::spawn_watcher(&runtime));
    runtime.start_spares();
    let _metrics = match config.metrics_address {
        Some(addr) => {
            let (bound, task) = crate::metrics::serve(addr, runtime.clone())
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            info!(address = %bound, "serving Prometheus metrics on /metrics");
            Some(AbortOnDrop(task))
        }
        None => None,
    };

    // The socket last: a client that sees it finds the streaming server and
    // the metrics endpoint already listening (the VM stage's slow CPU
    // showed a test scraping metrics before they were bound).
    let audit = crate::audit::AuditLog::open(&config.audit).context("cannot open the audit log")?;
    let listener = socket::bind(&config.socket, config.socket_group.as_deref())?;
    let server = tonic::transport::Server::builder()
        .trace_fn(|req| info_span!("cri", method = %req.uri().path()))
        .layer(crate::metrics::MetricsLayer)
        .layer(super::deadline::DeadlineLayer)
        .add_service(
            RuntimeService::new(runtime.clone())
                .with_streaming(streaming)
                .with_audit(audit.clone())
                .into_server(),
        )
        .add_service(
            ImageService::new(runtime.clone())
                .with_audit(audit)
                .into_server(),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    let mut server = tokio::spawn(server);

    info!(socket = %config.socket.display(), version = %crate::version::runtime_version(), "serving CRI");
    notify(&[sd_notify::NotifyState::Ready]);

    let name = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
        result = &mut server => {
            result.context("CRI server task panicked")?.context("CRI server failed")?;
            anyhow::bail!("CRI server stopped on its own");
        }
    };
    info!(signal = name, "shutting down; containers keep running");
    notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(());
    // Event streams never end by themselves; close them with the server.
    runtime.events().close();
    // In-flight calls get a grace period; idle client connections (the
    // kubelet keeps one open) must not hold the daemon up.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result
            .context("CRI server task panicked")?
            .context("CRI server failed")?,
        Err(_) => {
            warn!(grace = ?SHUTDOWN_GRACE, "calls still in flight after the grace period; exiting anyway")
        }
    }

    runtime.stop_spares().await;
    runtime.shutdown_network().await;
    // Writes still waiting for their sync (`Store::put_soon`) are synced
    // before the daemon says it stopped.
    let store = runtime.store().clone();
    match tokio::task::spawn_blocking(move || store.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %crate::errors::chain(&e), "cannot sync the state store"),
        Err(e) => warn!(error = %e, "cannot sync the state store"),
    }
    let _ = std::fs::remove_file(&config.socket);
    info!("stopped");
    Ok(())
}

/// A background task that ends with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Tells systemd about state changes when run as a `Type=notify` unit; a
/// no-op elsewhere.
fn notify(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(err) = sd_notify::notify(state) {
            tracing::warn!(error = %err, "sd_notify failed");
        }
    }
}
