//! The HTTP limits (tower layers on the `/v1` routes): a request over
//! `http.request_timeout_ms` answers 504 `TIMEOUT`, one over
//! `http.max_concurrent_requests` answers 503 `UNAVAILABLE` at once; both in the API's JSON
//! error shape. With a valid config the API's own bounded waits (long-polled results, read
//! barriers, command submission) answer before the request timeout.

use std::time::{Duration, Instant};

use super::*;

/// A request on a clone of `router`, from any task.
async fn get_on(router: axum::Router, uri: String) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri(uri)
        .header(header::AUTHORIZATION, "Bearer t-read")
        .body(Body::empty())
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_timeout_answers_timeout() {
    // Shorter than the route's own wait on purpose (validate would refuse it).
    let h = harness_config(false, |c| {
        c.http.request_timeout_ms = 100;
        c.http.command_timeout_ms = 2000;
    });
    let id = uuid::Uuid::new_v4();
    let started = Instant::now();
    let (s, v, hdr) = h
        .call(
            "GET",
            &format!("/v1/commands/{id}?wait_ms=2000"),
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_error_body("request timeout", &v, &hdr, "TIMEOUT");
    assert_eq!(v["retryable"], true);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("http.request_timeout_ms"),
        "{v}"
    );
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(100)..Duration::from_millis(1500)).contains(&took),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_s_own_waits_answer_before_a_valid_request_timeout() {
    let h = harness_config(false, |c| {
        c.http.command_timeout_ms = 300;
        c.http.read_barrier_timeout_ms = 200;
        c.http.request_timeout_ms = 300 + mpr::config::REQUEST_TIMEOUT_MARGIN_MS;
        c.validate().expect("the smallest valid request timeout");
    });
    // A long-polled result: the route's own TIMEOUT, with its details.
    let id = uuid::Uuid::new_v4();
    let (s, v, _) = h
        .call(
            "GET",
            &format!("/v1/commands/{id}?wait_ms=60000"),
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v), v["details"]["waited_ms"].as_u64()),
        (StatusCode::GATEWAY_TIMEOUT, "TIMEOUT", Some(300)),
        "{v}"
    );
    // A read barrier: the route's own 503.
    let (s, v, _) = h
        .call(
            "GET",
            "/v1/resolve?environment=prod&bundle_id=fraud&min_view_version=v1.99.99",
            Some("t-read"),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
    );
    assert!(
        v["message"].as_str().unwrap().contains("has not reached"),
        "{v}"
    );
    // A command with no result in time: 202 with the command_id to poll.
    let (s, v, _) = h
        .call(
            "POST",
            "/v1/bundles",
            Some("t-pub"),
            Some(publish_body("fraud", "1.0.0")),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("PENDING")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_answers_unavailable_at_once() {
    let h = harness_config(false, |c| {
        c.http.max_concurrent_requests = 1;
        c.http.command_timeout_ms = 1000;
    });
    let long_poll = || {
        let id = uuid::Uuid::new_v4();
        tokio::spawn(get_on(
            h.router.clone(),
            format!("/v1/commands/{id}?wait_ms=1000"),
        ))
    };
    // While the long poll holds the only slot, another request is shed. (A probe that
    // takes the slot first makes the long poll the one shed: start another.)
    let mut slow = long_poll();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    let shed = loop {
        if slow.is_finished() {
            let (s, v) = (&mut slow).await.unwrap();
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
            slow = long_poll();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (s, v, hdr) = h.call("GET", "/v1/bundles", Some("t-read"), None).await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            break (v, hdr);
        }
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no request was ever shed"
        );
    };
    assert_error_body("shed", &shed.0, &shed.1, "UNAVAILABLE");
    assert_eq!(shed.0["retryable"], true);
    assert!(
        shed.0["message"]
            .as_str()
            .unwrap()
            .contains("http.max_concurrent_requests (1)"),
        "{}",
        shed.0
    );
    assert!(!slow.is_finished(), "shed while the slot was held");
    // Operations routes are not limited.
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let (s, _, _) = h.call("GET", probe, None, None).await;
        assert_eq!(s, StatusCode::OK, "{probe}");
    }
    let (s, v) = slow.await.unwrap();
    assert_eq!((s, code(&v)), (StatusCode::GATEWAY_TIMEOUT, "TIMEOUT"));
    // The slot is free again.
    let (s, _, _) = h.call("GET", "/v1/bundles", Some("t-read"), None).await;
    assert_eq!(s, StatusCode::OK);
}
