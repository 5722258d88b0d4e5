//! `/metrics` (Prometheus text format) on its own listener, `server.metrics_bind`.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, rp_http, spawn_app, spawn_app_with};

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_listener_and_count_requests() {
    let app = spawn_app_with(|s| s.server.metrics_bind = "127.0.0.1:0".into()).await;
    let port = app.metrics_port.expect("a metrics listener");
    let scrape = || async move {
        let r = rp_http()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("text/plain; version=0.0.4"))
        );
        r.text().await.expect("text")
    };

    // Never on the public listener.
    let public = app.get(&app.client, "/metrics").await;
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    // Nothing else on the metrics listener.
    let other = rp_http()
        .get(format!(
            "http://127.0.0.1:{port}/.well-known/openid-configuration"
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    app.create_user("alice", PASSWORD).await;
    for _ in 0..3 {
        let r = app
            .get(&app.client, "/.well-known/openid-configuration")
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let text = scrape().await;
    assert_eq!(
        sample(
            &text,
            "portcullis_http_requests_total{route=\"/.well-known/openid-configuration\",method=\"GET\",status=\"200\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_http_request_duration_seconds_count{route=\"/.well-known/openid-configuration\",method=\"GET\"}"
        ),
        Some(3.0)
    );
    // Unmatched paths share one label: no unbounded series from scanners.
    assert_eq!(
        sample(
            &text,
            "portcullis_http_requests_total{route=\"(unmatched)\",method=\"GET\",status=\"404\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("route=\"/metrics\""));
    assert!(
        text.lines()
            .any(|l| l
                .starts_with("portcullis_http_requests_total{route=\"/login\",method=\"POST\""))
    );
    assert_eq!(
        sample(&text, "portcullis_signing_key_current{alg=\"RS256\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "portcullis_signing_keys_published{alg=\"RS256\"}"),
        Some(2.0)
    );
    assert!(
        sample(
            &text,
            "portcullis_signing_key_current_age_seconds{alg=\"RS256\"}"
        )
        .is_some()
    );
    assert!(sample(&text, "portcullis_password_hashing_slots").is_some_and(|n| n >= 1.0));
    assert_eq!(
        sample(&text, "portcullis_password_hashing_in_flight"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "portcullis_password_hashing_rejected_total"),
        Some(0.0)
    );
    assert!(sample(&text, "portcullis_db_connections{state=\"idle\"}").is_some());
    // Every sample line belongs to a declared family.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{name} has no TYPE line"
        );
    }
}

#[tokio::test]
async fn without_metrics_bind_there_is_no_metrics_listener() {
    let app = spawn_app().await;
    assert_eq!(app.metrics_port, None);
    assert_eq!(
        app.get(&app.client, "/metrics").await.status(),
        StatusCode::NOT_FOUND
    );
}
