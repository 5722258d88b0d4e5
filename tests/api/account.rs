//! Every HTML response carries the security headers.

use reqwest::{Response, StatusCode};

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_security_headers(response: &Response, what: &str) {
    let h = response.headers();
    assert_eq!(h["content-security-policy"], CSP, "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["cache-control"], "no-store", "{what}");
    assert!(
        h["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html"),
        "{what} is HTML"
    );
}

#[tokio::test]
async fn every_html_response_has_the_security_headers() {
    let app = spawn_app_with(|s| s.login.max_failures = 1).await;
    app.create_user("alice", PASSWORD).await;
    let anonymous = app.new_browser();

    assert_security_headers(&app.get(&anonymous, "/login").await, "login page");
    assert_security_headers(&app.get(&anonymous, "/nowhere").await, "404 page");
    let forbidden = app
        .post_form(
            &anonymous,
            "/login",
            &[
                ("tx", "x"),
                ("csrf_token", "x"),
                ("username", "a"),
                ("password", "b"),
            ],
        )
        .await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_security_headers(&forbidden, "403 page");
    let bad = app.post_form(&anonymous, "/login", &[("tx", "x")]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_security_headers(&bad, "400 page");
    let throttled = app.login(&anonymous, "mallory", "wrong").await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_security_headers(&throttled, "429 page");
    let wrong_method = anonymous
        .delete(app.url("/login"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_security_headers(&wrong_method, "405 page");

    app.login_ok(&app.client, "alice", PASSWORD).await;
    assert_security_headers(&app.get(&app.client, "/account").await, "account page");
}

#[tokio::test]
async fn error_pages_show_the_request_id() {
    let app = spawn_app().await;
    let response = app.get(&app.client, "/nowhere").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let html = response.text().await.expect("body");
    assert!(html.contains(&id), "the page names request {id}");
}

#[tokio::test]
async fn pages_escape_what_users_typed() {
    let app = spawn_app().await;
    let response = app
        .login(&app.client, "<script>alert(1)</script>", "x")
        .await;
    let html = response.text().await.expect("body");
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"));
}
