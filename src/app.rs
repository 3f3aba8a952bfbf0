//! Wires the service: topics, view, view applier, processor and HTTP server, all stopped by
//! one shutdown signal. Tests call [`run`] with a listener on port 0.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{self, AppState, KafkaSink};
use crate::config::Config;
use crate::log::applier::{ApplierStatus, run_applier};
use crate::log::catalog::new_catalog;
use crate::log::processor::Processor;
use crate::log::topics;
use crate::metrics::Metrics;
use crate::view::View;

/// Runs the registry until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let created = topics::ensure(&cfg.kafka).await?;
    if !created.is_empty() {
        info!(?created, "created topics");
    }
    std::fs::create_dir_all(&cfg.view.path)?;
    let view = Arc::new(View::open(&cfg.view.path, cfg.kafka.partitions)?);
    let status = ApplierStatus::new(view.version());
    let catalog = new_catalog();
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let applier = {
        let (k, v, c, s, m, r) = (
            cfg.kafka.clone(),
            view.clone(),
            catalog.clone(),
            status.clone(),
            metrics.clone(),
            stop_rx.clone(),
        );
        std::thread::Builder::new()
            .name("mpr-view-applier".into())
            .spawn(move || {
                if let Err(e) = run_applier(&k, v, c, s, m, r) {
                    error!(error = %e, "view applier failed");
                }
            })?
    };
    let processor = Processor::new(
        &cfg.kafka,
        &cfg.processor,
        cfg.grants(),
        catalog,
        metrics.clone(),
    )?;
    let proc_task = tokio::spawn(processor.run(stop_rx.clone()));

    let view_at_close = view.clone();
    let state = AppState {
        view,
        status,
        sink: Arc::new(KafkaSink::new(&cfg.kafka)?),
        auth: Arc::new(api::auth::Auth::new(&cfg.auth.principals)),
        grants: Arc::new(cfg.grants()),
        metrics,
        http: Arc::new(cfg.http.clone()),
        resolve_cache: Arc::new(api::resolve::ResolveCache::new(cfg.http.resolve_cache_mib)),
    };
    info!(addr = %listener.local_addr()?, "serving HTTP");
    let mut rx = stop_rx.clone();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {},
                _ = rx.changed() => {},
            }
        })
        .await?;
    let _ = stop_tx.send(true);
    let _ = proc_task.await;
    let _ = tokio::task::spawn_blocking(move || applier.join()).await;
    // The view writes without a WAL: flush what the applier applied, so that a restart
    // resumes from here instead of re-applying it from the log.
    if let Err(e) = view_at_close.flush() {
        warn!(error = %e, "flushing the view at shutdown failed; a restart re-applies from the log");
    }
    info!("stopped");
    Ok(())
}
