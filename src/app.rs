//! Wires the service: topics, view, view applier, lag monitor, processor and HTTP server,
//! all stopped by one shutdown signal. Tests call [`run`] with a listener on port 0.
//!
//! Supervision: the applier thread and the processor task must run as long as the server
//! does. When either ends before shutdown (an error, a panic, or a return), [`run`] stops
//! the rest and returns an error naming it, so that the process exits non-zero and its
//! supervisor restarts it; meanwhile `/readyz` already reports not ready.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use crate::api::{self, AppParts, AppState, KafkaSink};
use crate::config::{Config, TrustMode};
use crate::log::applier::{ApplierStatus, run_applier, run_lag_monitor};
use crate::log::catalog::new_catalog;
use crate::log::processor::Processor;
use crate::log::topics;
use crate::metrics::Metrics;
use crate::view::View;

/// Marks the applier stopped and reports how it ended, however the thread ends (a panic
/// drops it without a report: the receiver sees the sender go).
struct ApplierExit {
    status: Arc<ApplierStatus>,
    report: Option<oneshot::Sender<String>>,
}

impl ApplierExit {
    fn report(mut self, how: String) {
        if let Some(tx) = self.report.take() {
            let _ = tx.send(how);
        }
    }
}

impl Drop for ApplierExit {
    fn drop(&mut self) {
        self.status.mark_stopped();
    }
}

/// Runs the registry until `shutdown` resolves; an error if a component ended first.
/// `cfg` comes ready to serve ([`Config::prepare_serve`]: principals loaded); a config
/// without any principal token is refused.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    cfg.check_serve()?;
    let keys = cfg.trust.load()?.for_serving()?;
    let grants = cfg.grants_with_roots(keys.roots.clone());
    match cfg.trust.mode {
        TrustMode::Signed => info!(
            registry_key = keys.registry.key_id(),
            gateway_key = keys.gateway.key_id(),
            trust_roots = keys.roots.fingerprint(),
            "trust mode signed: every command must be signed"
        ),
        TrustMode::UnsignedDev => warn!(
            registry_key = keys.registry.key_id(),
            gateway_key = keys.gateway.key_id(),
            trust_roots = keys.roots.fingerprint(),
            "trust mode unsigned-dev: unsigned commands and gate receipts are ACCEPTED; local experiments only"
        ),
    }
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

    let (applier_tx, applier_rx) = oneshot::channel::<String>();
    let applier = {
        let accepted = keys.registry_accepted.clone();
        let (k, v, c, s, m, r) = (
            cfg.kafka.clone(),
            view.clone(),
            catalog.clone(),
            status.clone(),
            metrics.clone(),
            stop_rx.clone(),
        );
        let exit = ApplierExit {
            status: s.clone(),
            report: Some(applier_tx),
        };
        std::thread::Builder::new()
            .name("mpr-view-applier".into())
            .spawn(move || {
                let how = match run_applier(&k, &accepted, v, c, s, m, r) {
                    Ok(()) => "returned".to_owned(),
                    Err(e) => format!("failed: {e}"),
                };
                exit.report(how);
            })?
    };
    let monitor = {
        let (k, s, m, r) = (
            cfg.kafka.clone(),
            status.clone(),
            metrics.clone(),
            stop_rx.clone(),
        );
        let every = Duration::from_millis(cfg.view.lag_check_ms);
        std::thread::Builder::new()
            .name("mpr-view-lag".into())
            .spawn(move || {
                if let Err(e) = run_lag_monitor(&k, s, m, every, r) {
                    // Without checks the view's age grows; readiness bounds it if configured.
                    error!(error = %e, "view lag monitor failed");
                }
            })?
    };
    let processor = Processor::new(
        &cfg.kafka,
        &cfg.processor,
        grants.clone(),
        keys.registry.clone(),
        keys.registry_accepted.clone(),
        catalog,
        metrics.clone(),
    )?;
    let proc_task = tokio::spawn(processor.run(stop_rx.clone()));
    let intake_task = tokio::spawn(crate::log::signals::run(
        cfg.kafka.clone(),
        keys.registry.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));

    let view_at_close = view.clone();
    let state = AppState::from(AppParts {
        view,
        status,
        sink: Arc::new(KafkaSink::new(&cfg.kafka, keys.gateway.clone())?),
        auth: Arc::new(api::auth::Auth::new(&cfg.auth.principals)),
        grants: Arc::new(grants),
        trust_mode: cfg.trust.mode,
        checkpoints: Arc::new(api::audit::CheckpointSigner {
            registry: keys.registry.clone(),
            events_topic: crate::log::Topics::new(&cfg.kafka.topic_prefix).events,
            catalog_topic: crate::log::Topics::new(&cfg.kafka.topic_prefix).catalog,
        }),
        console: Arc::new(crate::console::Console::new(keys.registry_accepted.clone())),
        metrics,
        http: Arc::new(cfg.http.clone()),
        resolve_cache: Arc::new(api::resolve::ResolveCache::new(cfg.http.resolve_cache_mib)),
    });
    info!(addr = %listener.local_addr()?, "serving HTTP");
    let mut rx = stop_rx.clone();
    let server = axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .into_future();
    let applier_ended = async move {
        let how = applier_rx.await.unwrap_or_else(|_| "panicked".to_owned());
        anyhow!("the view applier {how}")
    };
    let processor_ended = async move {
        match proc_task.await {
            Ok(Ok(())) => anyhow!("the processor returned"),
            Ok(Err(e)) => anyhow!("the processor failed: {e}"),
            Err(e) => anyhow!("the processor panicked: {e}"),
        }
    };
    let intake_ended = async move {
        match intake_task.await {
            Ok(Ok(())) => anyhow!("the signal intake returned"),
            Ok(Err(e)) => anyhow!("the signal intake failed: {e}"),
            Err(e) => anyhow!("the signal intake panicked: {e}"),
        }
    };
    let outcome = supervise(
        server,
        shutdown,
        [
            Box::pin(applier_ended) as Component,
            Box::pin(processor_ended) as Component,
            Box::pin(intake_ended) as Component,
        ],
        stop_tx,
    )
    .await;
    let _ = tokio::task::spawn_blocking(move || {
        let _ = applier.join();
        let _ = monitor.join();
    })
    .await;
    // The view writes without a WAL: flush what the applier applied, so that a restart
    // resumes from here instead of re-applying it from the log.
    if let Err(e) = view_at_close.flush() {
        warn!(error = %e, "flushing the view at shutdown failed; a restart re-applies from the log");
    }
    match &outcome {
        Ok(()) => info!("stopped"),
        Err(e) => error!(error = %e, "stopped because a component ended"),
    }
    outcome
}

/// A component that must run until shutdown; it resolves to why it ended.
type Component = std::pin::Pin<Box<dyn Future<Output = anyhow::Error> + Send>>;

/// Serves until `shutdown` resolves, the server fails, or a component ends. Then sends
/// stop on `stop` (the server drains, the components stop) and waits for the server and
/// for the components that have not ended. A component that ended first is the error.
async fn supervise<S>(
    server: S,
    shutdown: impl Future<Output = ()>,
    components: impl IntoIterator<Item = Component>,
    stop: watch::Sender<bool>,
) -> anyhow::Result<()>
where
    S: Future<Output = std::io::Result<()>>,
{
    let mut server = std::pin::pin!(server);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ended = futures::future::select_all(components);
    let first = tokio::select! {
        r = &mut server => First::Server(r),
        () = &mut shutdown => First::Shutdown,
        (err, _, rest) = &mut ended => First::Ended(err, rest),
    };
    let _ = stop.send(true);
    // Components that end because of the stop are expected to.
    match first {
        First::Server(r) => {
            futures::future::join_all(ended.into_inner()).await;
            r.map_err(|e| anyhow!("the HTTP server failed: {e}"))
        }
        First::Shutdown => {
            let r = server.await;
            futures::future::join_all(ended.into_inner()).await;
            r.map_err(|e| anyhow!("the HTTP server failed: {e}"))
        }
        First::Ended(err, rest) => {
            let _ = server.await;
            futures::future::join_all(rest).await;
            Err(err)
        }
    }
}

/// What [`supervise`] saw first.
enum First {
    Server(std::io::Result<()>),
    Shutdown,
    Ended(anyhow::Error, Vec<Component>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for `stop`, then ends.
    fn until_stop(mut stop: watch::Receiver<bool>) -> Component {
        Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
            anyhow!("stopped")
        })
    }

    /// A server that drains when `stop` turns true.
    async fn server(mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
        let _ = stop.wait_for(|s| *s).await;
        Ok(())
    }

    #[tokio::test]
    async fn a_component_that_ends_early_stops_everything_with_an_error() {
        let (tx, rx) = watch::channel(false);
        let failing: Component = Box::pin(async { anyhow!("the view applier failed: boom") });
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            supervise(
                server(rx.clone()),
                std::future::pending(),
                [failing, until_stop(rx.clone())],
                tx,
            ),
        )
        .await
        .expect("supervise returns once a component ended");
        let err = r.unwrap_err().to_string();
        assert!(err.contains("view applier failed: boom"), "{err}");
        assert!(*rx.borrow(), "the others were told to stop");
    }

    #[tokio::test]
    async fn a_panicking_task_is_a_failure() {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async { panic!("processor bug") });
        let panicked: Component = Box::pin(async move {
            match task.await {
                Ok(()) => anyhow!("the processor returned"),
                Err(e) => anyhow!("the processor panicked: {e}"),
            }
        });
        let r = supervise(
            server(rx.clone()),
            std::future::pending(),
            [until_stop(rx.clone()), panicked],
            tx,
        )
        .await;
        assert!(r.unwrap_err().to_string().contains("panicked"));
    }

    #[tokio::test]
    async fn shutdown_is_not_a_failure() {
        let (tx, rx) = watch::channel(false);
        let r = supervise(
            server(rx.clone()),
            async {},
            [until_stop(rx.clone()), until_stop(rx.clone())],
            tx,
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
    }
}
