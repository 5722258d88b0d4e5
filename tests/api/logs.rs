//! Logs never carry passwords, cookies or tokens.

use uuid::Uuid;

use crate::helpers::{captured_logs, spawn_app};

#[tokio::test]
async fn no_log_line_contains_the_password_or_the_session_cookie() {
    let app = spawn_app().await;
    let password = format!("pw-{}", Uuid::new_v4());
    let wrong = format!("wrong-{}", Uuid::new_v4());
    app.create_user("alice", &password).await;
    let form = app.login_form(&app.client).await;
    app.submit_login(&app.client, &form, "alice", &wrong).await;
    let cookie = app.login_ok(&app.client, "alice", &password).await;
    let csrf = app.account_csrf(&app.client).await;
    app.get(&app.client, &format!("/login?tx={}", form.tx))
        .await;
    app.post_form(&app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;

    let logs = captured_logs();
    assert!(logs.contains("request completed"), "the capture works");
    assert!(logs.contains(&format!("127.0.0.1:{}", app.port)) || logs.contains("/login"));
    for (what, secret) in [
        ("password", password.as_str()),
        ("wrong password", wrong.as_str()),
        ("session cookie", cookie.as_str()),
        ("sign-in transaction", form.tx.as_str()),
        ("login CSRF token", form.csrf_token.as_str()),
        ("session CSRF token", csrf.as_str()),
    ] {
        assert!(!logs.contains(secret), "the logs contain the {what}");
    }
}
