//! The test browser: a cookie-keeping client on the shared sign-in flow
//! ([`super::flow`]), cookie inspection, and `TestApp`'s page helpers.

use std::time::Duration;

use reqwest::{Client, Response, StatusCode};

use super::TestApp;
use super::flow::{self, LoginForm, hidden_field};

/// A cookie-keeping client that behaves like a browser posting forms from our pages.
pub fn browser(origin: &str) -> Client {
    flow::browser(origin, Duration::from_secs(120)).expect("http client")
}

pub fn session_cookie_name(app: &TestApp) -> &'static str {
    if app.settings.is_https() {
        "__Host-portcullis_session"
    } else {
        "portcullis_session"
    }
}

/// The `Set-Cookie` header for `name` in a response, if any.
pub fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value part of a `Set-Cookie` header.
pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

impl TestApp {
    /// Another browser (own cookie jar) on the same server.
    pub fn new_browser(&self) -> Client {
        browser(&self.settings.issuer_origin())
    }

    pub async fn get(&self, client: &Client, path: &str) -> Response {
        client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post_form(&self, client: &Client, path: &str, form: &[(&str, &str)]) -> Response {
        client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// Loads `/login` in `client` and returns its hidden fields.
    pub async fn login_form(&self, client: &Client) -> LoginForm {
        flow::login_form(client, &self.address)
            .await
            .expect("GET /login")
    }

    /// Submits the sign-in form with these credentials.
    pub async fn submit_login(
        &self,
        client: &Client,
        form: &LoginForm,
        username: &str,
        password: &str,
    ) -> Response {
        flow::login_request(client, &self.address, form, username, password)
            .send()
            .await
            .expect("POST")
    }

    /// A full sign-in in `client`; returns the response to the form post.
    pub async fn login(&self, client: &Client, username: &str, password: &str) -> Response {
        let form = self.login_form(client).await;
        self.submit_login(client, &form, username, password).await
    }

    /// Signs in and asserts that it worked; returns the session cookie's value.
    pub async fn login_ok(&self, client: &Client, username: &str, password: &str) -> String {
        let response = flow::sign_in(client, &self.address, username, password)
            .await
            .expect("sign-in should succeed");
        let cookie = set_cookie(&response, session_cookie_name(self)).expect("session cookie");
        cookie_value(&cookie)
    }

    /// The account page's CSRF token for a signed-in client.
    pub async fn account_csrf(&self, client: &Client) -> String {
        let response = self.get(client, "/account").await;
        assert_eq!(response.status(), StatusCode::OK, "GET /account");
        let html = response.text().await.expect("body");
        hidden_field(&html, "csrf_token").expect("csrf_token on /account")
    }

    /// Whether `client` is signed in (GET /account does not redirect).
    pub async fn is_signed_in(&self, client: &Client) -> bool {
        self.get(client, "/account").await.status() == StatusCode::OK
    }
}
