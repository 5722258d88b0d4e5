//! `examples/native` against the real server (RFC 8252): the example's own flow module
//! listens on its loopback port, and a cookie-keeping HTTP client plays the browser — it
//! fills in the real sign-in and consent pages and follows the final redirect to the
//! example's listener.

#[path = "../../examples/native/flow.rs"]
mod flow;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow::{CallbackError, NativeApp, Session};
use oauth2::basic::BasicClient;
use oauth2::{ClientId, RefreshToken, RevocationUrl, StandardRevocableToken};
use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use reqwest::StatusCode;
use tokio::sync::oneshot;
use url::Url;

use crate::helpers::{
    PASSWORD, TestApp, assert_oauth_error, follow, query, refresh_as, rp_http, spawn_app, web_app,
};

const CLIENT_ID: &str = "acme-cli";
/// What the README registers: the port is left out, any port matches (RFC 8252 §7.3).
const REDIRECT_URI: &str = "http://127.0.0.1/callback";

async fn setup() -> TestApp {
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    app.register_client(Registration {
        client_id: Some(CLIENT_ID.into()),
        name: "Acme CLI".into(),
        kind: ClientKind::Native,
        redirect_uris: vec![REDIRECT_URI.into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        // Not first-party: the browser goes through the consent page too.
        ..web_app(false)
    })
    .await;
    app
}

async fn native(app: &TestApp) -> NativeApp {
    NativeApp::discover(&app.settings.issuer, CLIENT_ID)
        .await
        .expect("discovery")
        .with_scope("profile email")
        .with_callback_timeout(Duration::from_secs(30))
}

/// What the browser saw at the app's loopback listener.
struct Landing {
    /// The URL the app handed to the browser.
    authorization_url: Url,
    /// The loopback URL the browser was sent to (after `tamper`).
    callback: Url,
    status: StatusCode,
    page: String,
}

/// The browser: takes the URL the app opens, signs in and answers the consent page with
/// `consent`, then requests the provider's redirect — changed by `tamper` — from the
/// app's loopback listener.
async fn browse(
    app: &TestApp,
    opened: oneshot::Receiver<Url>,
    consent: &str,
    tamper: impl FnOnce(&mut Url),
) -> Landing {
    let authorization_url = opened.await.expect("the app opened a URL");
    let redirect_uri = query(&authorization_url, "redirect_uri").expect("redirect_uri");
    let browser = app.new_browser();
    let mut callback = follow(
        app,
        &browser,
        authorization_url.as_str(),
        &redirect_uri,
        consent,
    )
    .await;
    tamper(&mut callback);
    let response = browser
        .get(callback.clone())
        .send()
        .await
        .expect("the loopback listener answers");
    let status = response.status();
    let page = response.text().await.expect("page");
    Landing {
        authorization_url,
        callback,
        status,
        page,
    }
}

/// Runs the example's `login` and the browser side by side.
async fn sign_in(
    app: &TestApp,
    native: &NativeApp,
    consent: &str,
    tamper: impl FnOnce(&mut Url),
) -> (anyhow::Result<Session>, Landing) {
    let (opened, url) = oneshot::channel();
    tokio::join!(
        native.login(move |url: &Url| {
            let _ = opened.send(url.clone());
        }),
        browse(app, url, consent, tamper),
    )
}

fn set_param(url: &mut Url, name: &str, value: Option<&str>) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut query = url.query_pairs_mut();
    query.clear().extend_pairs(&pairs);
    if let Some(value) = value {
        query.append_pair(name, value);
    }
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> StatusCode {
    rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("GET /userinfo")
        .status()
}

#[tokio::test]
async fn the_native_example_signs_in_through_its_loopback_listener_refreshes_and_signs_out() {
    let app = setup().await;
    let native = native(&app).await;
    assert_eq!(
        native
            .metadata()
            .revocation_endpoint
            .as_ref()
            .map(Url::as_str),
        Some(app.url("/revoke").as_str())
    );

    let (session, landing) = sign_in(&app, &native, "allow", |_| {}).await;
    let session = session.expect("signed in");

    // The request a native app sends (RFC 8252 §7.3, §8.1; RFC 7636): a loopback IP
    // literal on an ephemeral port, PKCE S256, state and nonce, and no secret.
    let url = &landing.authorization_url;
    let redirect =
        Url::parse(&query(url, "redirect_uri").expect("redirect_uri")).expect("redirect URL");
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback");
    let port = redirect.port().expect("an explicit port");
    assert_ne!(port, app.port);
    assert_eq!(query(url, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(query(url, "response_type").as_deref(), Some("code"));
    assert_eq!(query(url, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(
        query(url, "code_challenge").map(|c| c.len()),
        Some(43),
        "a SHA-256 challenge"
    );
    for param in ["state", "nonce"] {
        assert!(query(url, param).is_some_and(|v| v.len() >= 16), "{param}");
    }
    assert_eq!(query(url, "scope").as_deref(), Some("openid profile email"));
    assert!(query(url, "client_secret").is_none());

    // The listener answered the browser with its page, then closed: one callback only.
    assert_eq!(landing.status, StatusCode::OK);
    assert!(
        landing.page.contains("You can close this window"),
        "{}",
        landing.page
    );
    assert!(
        rp_http()
            .get(landing.callback.clone())
            .send()
            .await
            .is_err(),
        "the listener is gone after its one callback"
    );

    // Tokens, with a verified ID token.
    let mut granted: Vec<&str> = session.scope.split(' ').collect();
    granted.sort_unstable();
    assert_eq!(granted, ["email", "openid", "profile"]);
    assert_eq!(session.expires_in, Some(Duration::from_secs(600)));
    assert_eq!(session.id.iss, app.settings.issuer);
    assert_eq!(session.id.preferred_username.as_deref(), Some("alice"));
    assert!(session.id.auth_time.is_some());
    let first_refresh = session
        .refresh_token
        .as_ref()
        .expect("a refresh token")
        .secret()
        .clone();

    let info = native.userinfo(&session).await.expect("userinfo");
    assert_eq!(info.sub, session.id.sub);
    assert_eq!(info.preferred_username.as_deref(), Some("alice"));
    assert_eq!(info.name.as_deref(), Some("Alice Example"));
    assert_eq!(info.email.as_deref(), Some("alice@example.com"));
    assert!(info.email_verified.is_some());

    // One refresh: new tokens, and the refresh token rotated.
    let refreshed = native.refresh(&session).await.expect("refresh");
    let second_refresh = refreshed
        .refresh_token
        .as_ref()
        .expect("a new refresh token")
        .secret()
        .clone();
    assert_ne!(second_refresh, first_refresh, "the refresh token rotated");
    assert_ne!(
        refreshed.access_token.secret(),
        session.access_token.secret()
    );
    assert_eq!(refreshed.id.sub, session.id.sub);
    native.userinfo(&refreshed).await.expect("userinfo again");

    // Sign-out: the current refresh token is revoked, and the access token with it.
    let access_token = refreshed.access_token.secret().clone();
    assert_eq!(userinfo_status(&app, &access_token).await, StatusCode::OK);
    native.revoke(refreshed).await.expect("revocation");
    assert_oauth_error(
        refresh_as(&app, CLIENT_ID, None, &second_refresh, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        userinfo_status(&app, &access_token).await,
        StatusCode::UNAUTHORIZED
    );
    let revoked = app.audit("refresh.family_revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].client_id.as_deref(), Some(CLIENT_ID));
}

#[tokio::test]
async fn a_refresh_token_the_example_rotated_is_refused_and_its_reuse_ends_the_grant() {
    let app = setup().await;
    let native = native(&app).await;
    let session = sign_in(&app, &native, "allow", |_| {})
        .await
        .0
        .expect("signed in");
    let refreshed = native.refresh(&session).await.expect("refresh");
    // Past the idempotent retry window, the rotated token is spent (RFC 9700 §4.14.2).
    app.clock.advance(time::Duration::seconds(
        app.settings.tokens.refresh_token_retry_window.as_secs() as i64 + 1,
    ));
    let old = session.refresh_token.as_ref().expect("refresh token");
    assert_oauth_error(
        refresh_as(&app, CLIENT_ID, None, old.secret(), &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(app.audit("refresh.reuse_detected").await.len(), 1);
    // The reuse revoked the grant: the example's current token is refused as well.
    let error = native
        .refresh(&refreshed)
        .await
        .expect_err("the grant is revoked");
    assert!(format!("{error:#}").contains("invalid_grant"), "{error:#}");
}

#[tokio::test]
async fn callbacks_the_example_did_not_cause_are_refused_and_their_code_is_not_redeemed() {
    let app = setup().await;
    let native = native(&app).await;
    type Tamper = fn(&mut Url);
    let cases: [(&str, Tamper, CallbackError); 4] = [
        (
            "a forged state",
            |u| set_param(u, "state", Some("forged")),
            CallbackError::StateMismatch,
        ),
        (
            "no state",
            |u| set_param(u, "state", None),
            CallbackError::StateMismatch,
        ),
        (
            "another issuer (RFC 9207 mix-up)",
            |u| set_param(u, "iss", Some("https://evil.example")),
            CallbackError::IssuerMismatch,
        ),
        (
            "a repeated code",
            |u| {
                let code = query(u, "code").expect("code");
                u.query_pairs_mut().append_pair("code", &code);
            },
            CallbackError::Malformed("a parameter is repeated"),
        ),
    ];
    for (name, tamper, expected) in cases {
        let (result, landing) = sign_in(&app, &native, "allow", tamper).await;
        let error = result.expect_err(name);
        assert_eq!(
            error.downcast_ref::<CallbackError>(),
            Some(&expected),
            "{name}"
        );
        assert_eq!(landing.status, StatusCode::BAD_REQUEST, "{name}");
        assert!(
            landing.page.contains("does not belong to a sign-in"),
            "{name}: {}",
            landing.page
        );
    }
    // Every attempt got a code from the provider, and none was redeemed.
    assert_eq!(app.audit("code.issued").await.len(), 4);
    assert!(app.audit("token.issued").await.is_empty());
}

#[tokio::test]
async fn the_example_reports_a_refused_consent_without_redeeming_anything() {
    let app = setup().await;
    let native = native(&app).await;
    let (result, landing) = sign_in(&app, &native, "deny", |_| {}).await;
    let error = result.expect_err("consent was refused");
    match error.downcast_ref::<CallbackError>() {
        Some(CallbackError::Refused { error, .. }) => assert_eq!(error, "access_denied"),
        other => panic!("expected access_denied, got {other:?}"),
    }
    assert_eq!(landing.status, StatusCode::OK);
    assert!(landing.page.contains("not completed"), "{}", landing.page);
    assert!(app.audit("token.issued").await.is_empty());
}

/// The example revokes by hand only on a loopback http provider, where the `oauth2` crate
/// refuses to send a revocation (RFC 7009 §2 asks for https); the form is the one the
/// crate sends to an https provider.
#[tokio::test]
async fn the_loopback_revocation_request_is_the_one_the_oauth2_crate_sends() {
    let sent: Arc<Mutex<Vec<oauth2::HttpRequest>>> = Arc::default();
    let capture = |request: oauth2::HttpRequest| {
        let sent = Arc::clone(&sent);
        async move {
            sent.lock().expect("lock").push(request);
            oauth2::http::Response::builder()
                .status(200)
                .body(Vec::new())
        }
    };
    let client = BasicClient::new(ClientId::new(CLIENT_ID.into())).set_revocation_url(
        RevocationUrl::new("https://id.example.com/revoke".into()).expect("URL"),
    );
    let token = StandardRevocableToken::RefreshToken(RefreshToken::new("rt-secret".into()));
    client
        .revoke_token(token.clone())
        .expect("an https endpoint")
        .request_async(&capture)
        .await
        .expect("revocation");
    let sent = sent.lock().expect("lock");
    let request = sent.first().expect("one request");
    assert_eq!(request.method(), "POST");
    assert!(
        request.headers().get("authorization").is_none(),
        "no secret"
    );
    let mut by_crate: Vec<(String, String)> =
        serde_urlencoded::from_bytes(request.body()).expect("a form");
    let mut by_hand = flow::revocation_form(&ClientId::new(CLIENT_ID.into()), &token);
    by_crate.sort();
    by_hand.sort();
    assert_eq!(by_crate, by_hand);
    assert!(by_hand.contains(&("token_type_hint".into(), "refresh_token".into())));
}
