//! Supervision and freshness against a real broker: the lag monitor reports how current the
//! view is on every resolve answer, and a view applier that fails makes `app::run` return
//! an error (so `mpr serve` exits non-zero and its supervisor restarts it).

use std::time::Duration;

use mpr::log::Topics;

use crate::harness::*;

/// The `MPR-View-Lag` header of a resolve answer (a 404 NO_ACTIVE_BUNDLE here).
fn resolve_lag(url: &str) -> Option<String> {
    let r = ureq::get(&format!(
        "{url}/v1/resolve?environment=prod&bundle_id=fraud"
    ))
    .set("Authorization", "Bearer tok-reader")
    .call();
    let resp = match r {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(_) => return None,
    };
    resp.header("mpr-view-lag").map(str::to_owned)
}

#[test]
fn a_failed_applier_stops_the_registry_with_an_error() {
    init_logs();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&broker.addr(), dir.path(), "superv.");
    cfg.view.lag_check_ms = 100;
    let topics = Topics::new("superv.");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let r = rt().block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            mpr::app::run(cfg, l, async move {
                let _ = stop_rx.await;
            })
            .await
        });
        let _ = done_tx.send(r.map_err(|e| e.to_string()));
    });
    wait_for("readiness", Duration::from_secs(60), || {
        ureq::get(&format!("{url}/readyz")).call().ok()
    });
    let lag = wait_for("a measured lag", Duration::from_secs(30), || {
        resolve_lag(&url)
    });
    assert_eq!(lag, "0", "an idle registry's view is current");

    // Garbage on `events` is skipped (not the registry's), so it cannot stop the applier.
    let p = producer(&broker.addr());
    rt().block_on(produce_raw(
        &p,
        &topics.events,
        "fraud",
        b"not an event",
        None,
    ));
    // An event the registry signed but that leaves a gap (seq 3 first): the applier fails.
    let gap = {
        let state = mpr::domain::PartitionState::new(1);
        let input = mpr::testkit::input(mpr::testkit::publish("mf", "fraud", "1.0.0"), 0);
        let mpr::domain::Decision::Append(mut e) =
            state.decide(&Default::default(), &Default::default(), &input)
        else {
            panic!("a publish appends")
        };
        e.partition = 1;
        e.seq = 3;
        e.hash = e.compute_hash();
        e.sign(&mpr::testkit::registry_signer());
        mpr::codec::encode_event(&e)
    };
    rt().block_on(async {
        let rec = rdkafka::producer::FutureRecord::to(&topics.events)
            .partition(1)
            .key("fraud")
            .payload(&gap);
        p.send(rec, Duration::from_secs(30)).await.unwrap();
    });
    let outcome = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("app::run returns once the applier failed, without a shutdown signal");
    let err = outcome.expect_err("a failed component is an error");
    assert!(err.contains("view applier failed"), "{err}");
    drop(stop_tx);
    thread.join().unwrap();
}
