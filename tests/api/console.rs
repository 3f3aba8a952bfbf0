//! The console's security and its command path, in process: sign-in and its cookie,
//! CSRF on every form, controls offered by role and refused when posted anyway, escaped
//! output, refusals in words, and actions that reach the log as commands. The real-browser
//! walk is `scripts/console_check.sh`.

use super::*;

/// Sends a console request: an optional cookie and an optional form body.
async fn raw(
    h: &Harness,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    let req = match form {
        Some(f) => b
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(f.to_owned()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    )
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF field")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// The `Set-Cookie` header that sets `name`, whole.
fn set_cookie(h: &axum::http::HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// A signed-in browser: its session cookie and the session's CSRF token.
struct Browser<'a> {
    h: &'a Harness,
    cookie: String,
    csrf: String,
}

impl Browser<'_> {
    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let (s, body, _) = raw(self.h, "GET", uri, Some(&self.cookie), None).await;
        (s, body)
    }

    async fn post(&self, uri: &str, form: &str) -> (StatusCode, String, axum::http::HeaderMap) {
        raw(self.h, "POST", uri, Some(&self.cookie), Some(form)).await
    }
}

async fn sign_in<'a>(h: &'a Harness, token: &str) -> Browser<'a> {
    let (s, body, hd) = raw(h, "GET", "/ui/login", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let login = cookie_value(&set_cookie(&hd, "mpr_console_login").unwrap());
    let form = format!("token={token}&csrf={}", csrf_of(&body));
    let (s, body, hd) = raw(h, "POST", "/ui/login", Some(&login), Some(&form)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "sign-in: {body}");
    let session = set_cookie(&hd, "mpr_console").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    let cookie = cookie_value(&session);
    let (s, body, _) = raw(h, "GET", "/ui/bundles", Some(&cookie), None).await;
    assert_eq!(s, StatusCode::OK);
    Browser {
        h,
        csrf: csrf_of(&body),
        cookie,
    }
}

/// Publishes `id@1.0.0` as carol (publisher and approver) and has alice nominate it.
async fn candidate_by_carol(h: &Harness, id: &str) {
    h.ok(
        "POST",
        "/v1/bundles",
        "t-pubappr",
        publish_body(id, "1.0.0"),
    )
    .await;
    h.ok(
        "POST",
        &format!("/v1/bundles/{id}/versions/1.0.0/nominate"),
        "t-appr",
        json!({}),
    )
    .await;
}

async fn state_of(h: &Harness, id: &str) -> String {
    let (_, v, _) = h
        .call(
            "GET",
            &format!("/v1/bundles/{id}/versions/1.0.0"),
            Some("t-read"),
            None,
        )
        .await;
    v["state"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn pages_need_a_session_and_sign_in_is_protected() {
    let h = harness_with(true);
    let (s, _, hd) = raw(&h, "GET", "/ui/bundles", None, None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(hd[header::LOCATION], "/ui/login");
    // A sign-in post without the login CSRF cookie and field is refused (login CSRF).
    let (s, body, hd) = raw(&h, "POST", "/ui/login", None, Some("token=t-admin")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("FORBIDDEN"), "{body}");
    assert!(set_cookie(&hd, "mpr_console").is_none());
    // A wrong token is refused in words.
    let (_, page, hd) = raw(&h, "GET", "/ui/login", None, None).await;
    let login = cookie_value(&set_cookie(&hd, "mpr_console_login").unwrap());
    let form = format!("token=nope&csrf={}", csrf_of(&page));
    let (s, body, hd) = raw(&h, "POST", "/ui/login", Some(&login), Some(&form)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("UNAUTHENTICATED"), "{body}");
    assert!(set_cookie(&hd, "mpr_console").is_none());
    // Pages forbid framing and scripts, and are not cached.
    let b = sign_in(&h, "t-read").await;
    let (_, _, hd) = raw(&h, "GET", "/ui/bundles", Some(&b.cookie), None).await;
    let csp = hd["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert_eq!(hd[header::CACHE_CONTROL], "no-store");
    // Sign-out ends the session on the server, not only in the browser.
    let (s, _, _) = b.post("/ui/logout", &format!("csrf={}", b.csrf)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _) = b.get("/ui/bundles").await;
    assert_eq!(
        s,
        StatusCode::SEE_OTHER,
        "the old cookie no longer signs in"
    );
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_is_refused() {
    let h = harness_with(true);
    candidate_by_carol(&h, "csrf-fam").await;
    let alice = sign_in(&h, "t-appr").await;
    let url = "/ui/bundles/csrf-fam/versions/1.0.0/approve";
    for form in ["reason=ok", "reason=ok&csrf=", "reason=ok&csrf=0123abcd"] {
        let (s, body, _) = alice.post(url, form).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{form}");
        assert!(
            body.contains("CSRF") && body.contains("FORBIDDEN"),
            "{body}"
        );
    }
    // A body that is not a form is refused in words, as a page, and does nothing.
    let (s, body, _) = raw(&h, "POST", url, Some(&alice.cookie), None).await;
    assert!(s.is_client_error(), "{s}");
    assert!(
        body.contains(r#"id="form-refusal""#) && body.contains("(INVALID_PAYLOAD)."),
        "{body}"
    );
    // Another session's token does not pass either.
    let other = sign_in(&h, "t-appr").await;
    let (s, _, _) = alice
        .post(url, &format!("reason=ok&csrf={}", other.csrf))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        state_of(&h, "csrf-fam").await,
        "CANDIDATE",
        "nothing was done"
    );
    // With its own token the same post approves, through the log.
    let (s, body, hd) = alice
        .post(url, &format!("reason=looks+good&csrf={}", alice.csrf))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert!(
        hd[header::LOCATION]
            .to_str()
            .unwrap()
            .ends_with("?done=approve")
    );
    assert_eq!(state_of(&h, "csrf-fam").await, "APPROVED");
    let (_, events, _) = h
        .call(
            "GET",
            "/v1/events?bundle_id=csrf-fam&event_type=BUNDLE_APPROVED",
            Some("t-audit"),
            None,
        )
        .await;
    let e = &events["items"][0];
    assert_eq!(e["actor"], "alice");
    assert_eq!(e["reason"], "looks good");
    assert!(
        e["via"].is_string(),
        "signed by the API gateway for alice: {e}"
    );
}

#[tokio::test]
async fn controls_the_roles_do_not_allow_are_not_offered_and_refused_if_posted() {
    let h = harness_with(true);
    candidate_by_carol(&h, "role-fam").await;
    let page = "/ui/bundles/role-fam/versions/1.0.0";
    let alice = sign_in(&h, "t-appr").await;
    let (_, body) = alice.get(page).await;
    assert!(body.contains(r#"id="form-approve""#) && body.contains(r#"id="form-reject""#));
    assert!(
        !body.contains(r#"id="form-retire""#),
        "retire is an admin's"
    );
    let bob = sign_in(&h, "t-dep").await;
    let (_, body) = bob.get(page).await;
    for control in [
        "form-approve",
        "form-reject",
        "form-nominate",
        "form-retire",
        "form-promote",
    ] {
        assert!(
            !body.contains(&format!(r#"id="{control}""#)),
            "{control} offered to a deployer"
        );
    }
    let (s, body, _) = bob
        .post(
            &format!("{page}/approve"),
            &format!("reason=sneaky&csrf={}", bob.csrf),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains(r#"id="refusal-approve""#), "{body}");
    assert!(body.contains("(FORBIDDEN)."), "{body}");
    assert_eq!(state_of(&h, "role-fam").await, "CANDIDATE");
    // A reader is offered nothing and refused likewise.
    let reader = sign_in(&h, "t-read").await;
    let (_, body) = reader.get(page).await;
    assert!(body.contains(r#"id="no-actions""#), "{body}");
    let (s, _, _) = reader
        .post(
            &format!("{page}/reject"),
            &format!("reason=x&csrf={}", reader.csrf),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn separation_of_duties_is_explained_in_words() {
    let h = harness_with(true);
    candidate_by_carol(&h, "sod-fam").await;
    let carol = sign_in(&h, "t-pubappr").await;
    let page = "/ui/bundles/sod-fam/versions/1.0.0";
    let (_, body) = carol.get(page).await;
    assert!(
        body.contains(r#"id="form-approve""#),
        "carol holds approver: offered"
    );
    let (s, body, _) = carol
        .post(
            &format!("{page}/approve"),
            &format!("reason=mine&csrf={}", carol.csrf),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains(
            "You published this bundle, so another approver must approve it (SEPARATION_OF_DUTIES)."
        ),
        "{body}"
    );
    assert!(body.contains(r#"id="refusal-approve""#));
    assert_eq!(state_of(&h, "sod-fam").await, "CANDIDATE");
}

#[tokio::test]
async fn output_is_escaped() {
    let h = harness_with(true);
    let mut b = mpr::testkit::bundle("xss-fam", "1.0.0");
    b.metadata
        .insert("note".into(), "<script>alert('x')</script>".into());
    b.provenance.evaluation_report_ref = "javascript:alert(1)".into();
    let r = mpr::testkit::signed_receipt(&b, &mpr::testkit::gate_signer());
    let body = json!({"command_id": uuid::Uuid::new_v4(), "submitted_at_utc": "2026-11-20T09:00:00.000Z", "bundle": b, "gate_receipt": r});
    h.ok("POST", "/v1/bundles", "t-pub", body).await;
    let reader = sign_in(&h, "t-read").await;
    for page in ["/ui/bundles/xss-fam/versions/1.0.0", "/ui/bundles?q=script"] {
        let (s, html) = reader.get(page).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            !html.contains("<script"),
            "{page} carries a live script tag"
        );
        assert!(
            html.contains("&lt;script&gt;"),
            "{page} shows the value as text"
        );
    }
    let (_, html) = reader.get("/ui/bundles/xss-fam/versions/1.0.0").await;
    assert!(
        !html.contains(r#"href="javascript:"#),
        "a javascript: reference is never a link"
    );
    // A query value is escaped too.
    let (s, html) = reader.get("/ui/bundles?q=%22%3E%3Cscript%3E").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains("<script"));
}

#[tokio::test]
async fn promotion_goes_through_a_dry_run_then_the_log_and_rollback_is_marked() {
    let h = harness_with(true);
    // prod's catalog lacks the feature group the test bundles need.
    let lacking = json!({"feature_groups": [{"name": "other", "version": "1"}], "schema_versions": ["decision-input/v1"], "posture": "fail_closed"});
    h.ok("PUT", "/v1/catalog/prod", "t-admin", lacking).await;
    for v in ["1.0.0", "1.1.0"] {
        h.ok("POST", "/v1/bundles", "t-pub", publish_body("promo-fam", v))
            .await;
        for step in ["nominate", "approve"] {
            h.ok(
                "POST",
                &format!("/v1/bundles/promo-fam/versions/{v}/{step}"),
                "t-appr",
                json!({}),
            )
            .await;
        }
    }
    let bob = sign_in(&h, "t-dep").await;
    let dry = "/ui/bundles/promo-fam/versions/1.0.0/dry-run";
    let form =
        |csrf: &str| format!("environment=prod&tenant_id=*&slot=PRIMARY&reason=go&csrf={csrf}");
    let (s, body, _) = bob.post(dry, &form(&bob.csrf)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains(r#"id="dry-run-result""#) && body.contains("(INCOMPATIBLE)."),
        "{body}"
    );
    assert!(
        body.contains("features"),
        "names the missing feature group: {body}"
    );
    assert!(
        !body.contains(r#"id="do-promote""#),
        "no confirm button for a refusal"
    );
    // The API and the dry run agree, and neither wrote anything.
    let (_, api, _) = h
        .call(
            "POST",
            "/v1/promotions/dry-run",
            Some("t-dep"),
            Some(
                json!({"bundle_id": "promo-fam", "bundle_version": "1.0.0", "environment": "prod"}),
            ),
        )
        .await;
    assert_eq!(api["outcome"], "REJECTED");
    assert_eq!(api["error"]["code"], "INCOMPATIBLE");
    let (_, events, _) = h
        .call(
            "GET",
            "/v1/events?bundle_id=promo-fam&event_type=COMMAND_REJECTED",
            Some("t-audit"),
            None,
        )
        .await;
    assert_eq!(
        events["items"].as_array().unwrap().len(),
        0,
        "a dry run records nothing"
    );
    // With the catalog fixed, the dry run would accept, and confirming promotes.
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    for v in ["1.0.0", "1.1.0"] {
        let (_, body, _) = bob
            .post(
                &format!("/ui/bundles/promo-fam/versions/{v}/dry-run"),
                &form(&bob.csrf),
            )
            .await;
        assert!(
            body.contains("would be accepted") && body.contains(r#"id="do-promote""#),
            "{body}"
        );
        let (s, body, hd) = bob
            .post(
                &format!("/ui/bundles/promo-fam/versions/{v}/promote"),
                &form(&bob.csrf),
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(
            hd[header::LOCATION],
            "/ui/scopes/prod/*/promo-fam?done=promote"
        );
    }
    let (_, scope) = bob.get("/ui/scopes/prod/*/promo-fam").await;
    assert!(scope.contains("promo-fam@1.1.0 (rule GLOBAL"), "{scope}");
    let (s, _, hd) = bob
        .post(
            "/ui/scopes/prod/*/promo-fam/rollback",
            &format!("slot=PRIMARY&reason=p99&csrf={}", bob.csrf),
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        hd[header::LOCATION]
            .to_str()
            .unwrap()
            .ends_with("?done=rollback")
    );
    let (_, scope) = bob.get("/ui/scopes/prod/*/promo-fam").await;
    assert!(scope.contains("promo-fam@1.0.0 (rule GLOBAL"), "{scope}");
    assert!(
        scope.contains(r#"class="rollback""#) && scope.contains("ROLLBACK"),
        "{scope}"
    );
    // A second rollback has nothing before 1.0.0: refused in words next to the control.
    let (s, body, _) = bob
        .post(
            "/ui/scopes/prod/*/promo-fam/rollback",
            &format!("slot=PRIMARY&reason=again&csrf={}", bob.csrf),
        )
        .await;
    assert_ne!(s, StatusCode::SEE_OTHER);
    assert!(
        body.contains(r#"id="refusal-rollback""#) && body.contains("(NOTHING_TO_ROLL_BACK)."),
        "{body}"
    );
    // The timeline and the audit page show it all (lifecycle events are tied to no
    // environment, so bob, limited to prod, sees only the prod ones); the audit page
    // verifies what it shows.
    let auditor = sign_in(&h, "t-audit").await;
    let (_, page) = auditor.get("/ui/bundles/promo-fam/versions/1.1.0").await;
    for t in ["BUNDLE_APPROVED", "BUNDLE_PROMOTED", "BUNDLE_ROLLED_BACK"] {
        assert!(page.contains(t), "timeline lacks {t}");
    }
    let (_, page) = bob.get("/ui/bundles/promo-fam/versions/1.1.0").await;
    assert!(page.contains("BUNDLE_PROMOTED") && !page.contains("BUNDLE_APPROVED"));
    let (_, audit) = auditor.get("/ui/audit?bundle_id=promo-fam").await;
    assert!(
        audit.contains(r#"id="audit-verification""#) && audit.contains("Verified: "),
        "{audit}"
    );
}

#[tokio::test]
async fn bundle_filters_are_api_queries() {
    let h = harness_with(true);
    h.ok(
        "POST",
        "/v1/bundles",
        "t-pub",
        publish_body("filt-a", "1.0.0"),
    )
    .await;
    h.ok(
        "POST",
        "/v1/bundles",
        "t-pub",
        publish_body("filt-a", "2.0.0"),
    )
    .await;
    h.ok(
        "POST",
        "/v1/bundles",
        "t-pub",
        publish_body("filt-b", "1.0.0"),
    )
    .await;
    h.ok(
        "POST",
        "/v1/bundles/filt-a/versions/2.0.0/nominate",
        "t-appr",
        json!({}),
    )
    .await;
    let hr = &h;
    let list = |q: &'static str| async move {
        let (s, v, _) = hr
            .call("GET", &format!("/v1/bundles?{q}"), Some("t-read"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{q}: {v}");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}@{}",
                    r["bundle"]["bundle_id"].as_str().unwrap(),
                    r["bundle"]["bundle_version"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(list("awaiting_approval=true").await, ["filt-a@2.0.0"]);
    assert_eq!(
        list("state=REGISTERED").await,
        ["filt-a@1.0.0", "filt-b@1.0.0"]
    );
    assert_eq!(list("q=FILT-B").await, ["filt-b@1.0.0"]);
    assert_eq!(list("kind=POLICY").await, Vec::<String>::new());
    assert_eq!(
        list("bundle_id=filt-a&state=CANDIDATE").await,
        ["filt-a@2.0.0"]
    );
    assert_eq!(list("environment=prod").await, Vec::<String>::new());
    let (s, v, _) = h
        .call("GET", "/v1/bundles?state=LIVE", Some("t-read"), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // The console's page uses the same filter.
    let reader = sign_in(&h, "t-read").await;
    let (_, html) = reader.get("/ui/bundles?awaiting=1").await;
    assert!(
        html.contains("filt-a@2.0.0") && !html.contains("filt-b@1.0.0"),
        "{html}"
    );
}

#[tokio::test]
async fn compare_shows_the_manifest_diff_and_a_dry_run() {
    let h = harness_with(true);
    h.ok("PUT", "/v1/catalog/prod", "t-admin", catalog_body())
        .await;
    for v in ["1.0.0", "2.0.0"] {
        h.ok("POST", "/v1/bundles", "t-pub", publish_body("cmp-fam", v))
            .await;
    }
    let bob = sign_in(&h, "t-dep").await;
    let (s, html) = bob
        .get("/ui/compare?bundle_id=cmp-fam&a=1.0.0&b=2.0.0&environment=prod")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(r#"id="diff""#), "{html}");
    // The artifact URI and digest differ between the versions; the kind does not.
    assert!(
        html.contains("artifact.model.onnx<span class=\"muted\"> (changed)"),
        "{html}"
    );
    assert!(
        !html.contains("kind<span class=\"muted\"> (changed)"),
        "{html}"
    );
    assert!(html.contains(r#"id="catalog-check""#));
    // 2.0.0 is only REGISTERED: the dry run says a promotion would be refused, and why.
    assert!(
        html.contains(r#"id="dry-run-result""#) && html.contains("(ILLEGAL_TRANSITION)."),
        "{html}"
    );
}
