//! Malformed requests get a 4xx page, never a 500, and change nothing.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
async fn malformed_login_posts_are_refused_without_side_effects() {
    let app = spawn_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    let form = app.login_form(&app.client).await;
    let valid = format!(
        "tx={}&csrf_token={}&username=alice&password=correct+horse+battery+staple",
        form.tx, form.csrf_token
    );
    let huge = format!("{valid}&pad={}", "a".repeat(1024 * 1024));
    let urlencoded = "application/x-www-form-urlencoded";

    let cases: Vec<(&str, Vec<u8>, &str, StatusCode)> = vec![
        ("empty body", vec![], urlencoded, StatusCode::BAD_REQUEST),
        (
            "missing password",
            format!(
                "tx={}&csrf_token={}&username=alice",
                form.tx, form.csrf_token
            )
            .into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing username",
            format!("tx={}&csrf_token={}&password=x", form.tx, form.csrf_token).into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing tx",
            format!("csrf_token={}&username=alice&password=x", form.csrf_token).into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "1 MB body",
            huge.into_bytes(),
            urlencoded,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "duplicated username",
            format!("{valid}&username=bob").into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "duplicated tx",
            format!("{valid}&tx={}", form.tx).into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "percent-encoded invalid UTF-8",
            format!("{valid}&x=%FF%FE").into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "raw invalid UTF-8",
            [valid.as_bytes(), b"&x=\xff\xfe"].concat(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "broken percent escape",
            format!("{valid}&x=%G1").into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "truncated percent escape",
            format!("{valid}&x=%4").into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
        (
            "JSON instead of a form",
            br#"{"username":"alice"}"#.to_vec(),
            "application/json",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "non-UTF-8 charset",
            valid.clone().into_bytes(),
            "application/x-www-form-urlencoded; charset=iso-8859-1",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "too many parameters",
            (0..100)
                .map(|i| format!("p{i}=1"))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes(),
            urlencoded,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (name, body, content_type, expected) in cases {
        let response = app
            .client
            .post(app.url("/login"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), expected, "{name}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/html"),
            "{name}"
        );
    }
    assert_eq!(app.session_count(&user).await, 0);
    let all = app
        .store
        .list_audit(&portcullis::audit::AuditQuery {
            kind: None,
            user_id: None,
            limit: 100,
        })
        .await
        .expect("audit");
    assert!(
        all.iter().all(|r| r.kind == "user.created"),
        "no decision was made: {all:?}"
    );
    // The form is still usable: nothing consumed it.
    let ok = app
        .submit_login(&app.client, &form, "alice", PASSWORD)
        .await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn oversized_credentials_fail_like_wrong_ones() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let long_name = "a".repeat(5000);
    let long_password = "p".repeat(5000);
    for (username, password) in [(long_name.as_str(), "x"), ("alice", long_password.as_str())] {
        let response = app.login(&app.client, username, password).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response
                .text()
                .await
                .expect("body")
                .contains("Incorrect username or password.")
        );
    }
}

#[tokio::test]
async fn malformed_query_strings_and_paths_are_refused() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    assert_eq!(
        app.get(&app.client, "/login?tx=a&tx=b").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get(&app.client, "/login?tx=%FF").await.status(),
        StatusCode::BAD_REQUEST
    );
    // An unknown or malformed transaction just starts a fresh sign-in.
    assert_eq!(
        app.get(&app.client, "/login?tx=nonsense").await.status(),
        StatusCode::OK
    );

    app.login_ok(&app.client, "alice", PASSWORD).await;
    let csrf = app.account_csrf(&app.client).await;
    let response = app
        .post_form(
            &app.client,
            "/account/sessions/not-a-uuid/revoke",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .client
        .post(app.url("/logout"))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(app.is_signed_in(&app.client).await);
}

#[tokio::test]
async fn a_cookie_header_with_two_session_cookies_authenticates_nobody() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let cookie = app.login_ok(&app.client, "alice", PASSWORD).await;
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/account"))
        .header(
            "cookie",
            format!("portcullis_session={cookie}; portcullis_session=x"),
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}
