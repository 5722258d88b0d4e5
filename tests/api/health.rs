use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.get(&app.client, "/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
}

#[tokio::test]
async fn readyz_answers_ready_when_the_database_is_reachable() {
    let app = spawn_app().await;
    let response = app.get(&app.client, "/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({ "status": "ready" }));
}

#[tokio::test]
async fn the_stylesheet_is_served_cacheable_and_every_response_has_a_request_id() {
    let app = spawn_app().await;
    let html = app
        .get(&app.client, "/login")
        .await
        .text()
        .await
        .expect("body");
    let start = html
        .find("/static/portcullis.css?v=")
        .expect("stylesheet link");
    let end = start + html[start..].find('"').expect("end of href");
    let response = app.get(&app.client, &html[start..end]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/css; charset=utf-8"
    );
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap_or("")
            .contains("immutable")
    );
    assert_eq!(response.headers()["x-request-id"].len(), 32);
}
