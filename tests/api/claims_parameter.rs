//! The `claims` request parameter (OpenID Connect Core §5.5): individual claims asked for
//! in the ID token and at the UserInfo endpoint, through sign-in, consent, the code and
//! refreshes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::{
    PASSWORD, Pkce, TestApp, WEB_REDIRECT, authorize_path, code, cookie_value, exchange_web,
    follow, hidden_field, pkce, query, refresh_as, refreshing_app, rp_http, session_cookie_name,
    set_cookie, spawn_app, web_app,
};

async fn setup(first_party: bool) -> (TestApp, String) {
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let (_, secret) = app.register_client(web_app(first_party)).await;
    (app, secret.expect("secret"))
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("JWT payload");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

/// Signs in with `extra` (e.g. `scope` and `claims`) and redeems the code.
async fn tokens(app: &TestApp, secret: &str, extra: &[(&str, &str)]) -> Value {
    let p = pkce();
    let c = code(app, &app.client, &p, extra).await;
    redeem(app, secret, &c, &p).await
}

async fn redeem(app: &TestApp, secret: &str, code: &str, p: &Pkce) -> Value {
    let response = exchange_web(app, secret, code, &p.verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("token JSON")
}

async fn userinfo(app: &TestApp, access_token: &str) -> Value {
    let response = rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("GET /userinfo");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("userinfo JSON")
}

fn id_token(tokens: &Value) -> Value {
    payload(tokens["id_token"].as_str().expect("an ID token"))
}

/// Where `/authorize` sends the browser straight away.
async fn authorize_location(app: &TestApp, extra: &[(&str, &str)]) -> String {
    let response = app.get(&app.client, &authorize_path(&pkce(), extra)).await;
    assert_eq!(response.status(), StatusCode::FOUND, "{extra:?}");
    response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

fn absent(claims: &Value, names: &[&str]) {
    for name in names {
        assert!(claims.get(name).is_none(), "{name} released: {claims}");
    }
}

#[tokio::test]
async fn discovery_advertises_the_claims_parameter() {
    let (app, _) = setup(true).await;
    let doc: Value = rp_http()
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["claims_parameter_supported"], true);
}

#[tokio::test]
async fn an_essential_email_is_put_in_the_id_token_with_only_the_openid_scope() {
    let (app, secret) = setup(true).await;
    let claims = json!({"id_token": {"email": {"essential": true}}}).to_string();
    let t = tokens(&app, &secret, &[("scope", "openid"), ("claims", &claims)]).await;
    assert_eq!(t["scope"], "openid");
    let issued = app.audit("code.issued").await;
    assert_eq!(
        issued[0].details["claims"],
        json!({"id_token": ["email"]}),
        "the released claims are audited"
    );
    let id = id_token(&t);
    assert_eq!(id["email"], "alice@example.com");
    absent(&id, &["name", "preferred_username"]);
    // Asked for in the ID token only: the UserInfo endpoint keeps to the scope.
    let info = userinfo(&app, t["access_token"].as_str().expect("access token")).await;
    absent(&info, &["email", "email_verified", "name"]);
}

#[tokio::test]
async fn userinfo_claims_are_returned_with_only_the_openid_scope() {
    let (app, secret) = setup(true).await;
    let claims =
        json!({"userinfo": {"name": null, "email_verified": {"essential": false}}}).to_string();
    let t = tokens(&app, &secret, &[("scope", "openid"), ("claims", &claims)]).await;
    let info = userinfo(&app, t["access_token"].as_str().expect("access token")).await;
    assert_eq!(info["name"], "Alice Example");
    assert_eq!(info["email_verified"], false);
    absent(&info, &["email", "preferred_username"]);
    // Asked for at the UserInfo endpoint only: the ID token keeps to the scope.
    absent(&id_token(&t), &["name", "email_verified"]);
}

#[tokio::test]
async fn malformed_claims_requests_are_refused_with_invalid_request() {
    let (app, _) = setup(true).await;
    let long = json!({"userinfo": {"x".repeat(5000): null}}).to_string();
    let cases: [(&str, &str); 9] = [
        ("not JSON", "{userinfo"),
        ("not an object", "[\"email\"]"),
        ("a string", "\"email\""),
        ("userinfo not an object", r#"{"userinfo": ["email"]}"#),
        ("id_token not an object", r#"{"id_token": "email"}"#),
        (
            "claim neither null nor object",
            r#"{"id_token": {"email": true}}"#,
        ),
        (
            "essential not a boolean",
            r#"{"id_token": {"email": {"essential": "yes"}}}"#,
        ),
        (
            "values not an array",
            r#"{"userinfo": {"name": {"values": "Alice"}}}"#,
        ),
        ("over 4 KiB", &long),
    ];
    for (name, claims) in cases {
        let location = authorize_location(&app, &[("claims", claims)]).await;
        let location = Url::parse(&location).expect("url");
        assert!(location.as_str().starts_with(WEB_REDIRECT), "{name}");
        assert_eq!(
            query(&location, "error").as_deref(),
            Some("invalid_request"),
            "{name}"
        );
        let description = query(&location, "error_description").unwrap_or_default();
        assert!(description.contains("claims"), "{name}: {description}");
        assert_eq!(query(&location, "state").as_deref(), Some("st-123"));
        assert!(query(&location, "code").is_none(), "{name}");
    }
    assert!(app.audit("code.issued").await.is_empty());
}

#[tokio::test]
async fn claims_are_checked_only_once_the_redirect_uri_is_trusted() {
    let (app, _) = setup(true).await;
    let response = app
        .get(
            &app.client,
            &authorize_path(
                &pkce(),
                &[
                    ("redirect_uri", "https://evil.example/cb"),
                    ("claims", "{not json"),
                ],
            ),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn unknown_claims_and_members_are_ignored() {
    let (app, secret) = setup(true).await;
    let claims = json!({
        "id_token": {"shoe_size": {"essential": true}, "email": null, "acr": {"values": ["urn:gold"]}},
        "userinfo": {"https://example.com/claims/team": null, "phone_number": {"essential": true}},
        "future_member": {"x": 1},
    })
    .to_string();
    let t = tokens(&app, &secret, &[("scope", "openid"), ("claims", &claims)]).await;
    let id = id_token(&t);
    assert_eq!(id["email"], "alice@example.com");
    absent(&id, &["shoe_size"]);
    // A voluntary acr with values this provider does not assert: the ID token states the
    // level actually reached (every ID token carries `acr` since issue 12).
    assert_eq!(id["acr"], portcullis::domain::mfa::ACR_PASSWORD);
    let info = userinfo(&app, t["access_token"].as_str().expect("access token")).await;
    absent(&info, &["phone_number", "https://example.com/claims/team"]);
}

#[tokio::test]
async fn an_essential_acr_that_cannot_be_met_fails_the_request() {
    let (app, _) = setup(true).await;
    let claims =
        json!({"id_token": {"acr": {"essential": true, "values": ["urn:mace:incommon:iap:gold"]}}})
            .to_string();
    let location =
        Url::parse(&authorize_location(&app, &[("claims", &claims)]).await).expect("url");
    assert!(location.as_str().starts_with(WEB_REDIRECT));
    assert_eq!(query(&location, "error").as_deref(), Some("access_denied"));
    assert!(
        query(&location, "error_description")
            .unwrap_or_default()
            .contains("acr")
    );
}

#[tokio::test]
async fn a_sub_value_naming_another_user_is_refused() {
    let app = spawn_app().await;
    let alice = app
        .create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let secret = app.register_client(web_app(true)).await.1.expect("secret");
    let other =
        json!({"id_token": {"sub": {"value": uuid::Uuid::new_v4().to_string()}}}).to_string();

    // Without a session and prompt=none: no one is signed in as that user.
    let none = authorize_location(&app, &[("prompt", "none"), ("claims", &other)]).await;
    let none = Url::parse(&none).expect("url");
    assert_eq!(query(&none, "error").as_deref(), Some("login_required"));

    // Signing in as someone else does not make a positive answer (Core §5.5.1).
    let back = follow(
        &app,
        &app.client,
        &authorize_path(&pkce(), &[("claims", &other)]),
        WEB_REDIRECT,
        "allow",
    )
    .await;
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert!(query(&back, "code").is_none());

    // Signed in now: a request naming another user still gets no code, even silently.
    let again = authorize_location(&app, &[("prompt", "none"), ("claims", &other)]).await;
    let again = Url::parse(&again).expect("url");
    assert_eq!(query(&again, "error").as_deref(), Some("login_required"));
    assert!(query(&again, "code").is_none());
    assert!(app.audit("code.issued").await.is_empty());

    // The signed-in user's own subject is answered as usual.
    let own = json!({"id_token": {"sub": {"value": alice.id.to_string()}}}).to_string();
    let t = tokens(&app, &secret, &[("prompt", "none"), ("claims", &own)]).await;
    assert_eq!(id_token(&t)["sub"], alice.id.to_string());
}

#[tokio::test]
async fn the_consent_page_is_not_a_way_around_the_sub_check() {
    let (app, _) = setup(false).await;
    let other =
        json!({"userinfo": {"sub": {"value": uuid::Uuid::new_v4().to_string()}}}).to_string();
    let login = authorize_location(&app, &[("claims", &other)]).await;
    let tx = login
        .strip_prefix("/login?tx=")
        .expect("sent to sign in")
        .to_owned();
    let html = app
        .get(&app.client, &login)
        .await
        .text()
        .await
        .expect("login page");
    let csrf = hidden_field(&html, "csrf_token").expect("csrf field");
    let signed_in = app
        .post_form(
            &app.client,
            "/login",
            &[
                ("tx", &tx),
                ("csrf_token", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie =
        cookie_value(&set_cookie(&signed_in, session_cookie_name(&app)).expect("session cookie"));

    // Going to the consent page instead of back to the authorization endpoint...
    let consent = app.get(&app.client, &format!("/consent?tx={tx}")).await;
    assert_eq!(consent.status(), StatusCode::SEE_OTHER);
    let resume = consent.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(resume, format!("/authorize/resume?tx={tx}"));
    // ...or answering it anyway issues nothing.
    let session = portcullis::domain::secret::OpaqueToken::<
        portcullis::domain::secret::kind::SessionToken,
    >::parse(&cookie)
    .expect("cookie");
    let forged = app
        .post_form(
            &app.client,
            "/consent",
            &[
                ("tx", &tx),
                ("csrf_token", &session.derive("consent-csrf", &tx)),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    let answer = app.get(&app.client, &resume).await;
    let answer = Url::parse(answer.headers()["location"].to_str().expect("location")).expect("url");
    assert_eq!(query(&answer, "error").as_deref(), Some("access_denied"));
    assert!(app.audit("code.issued").await.is_empty());
    assert!(app.audit("consent.granted").await.is_empty());
}

#[tokio::test]
async fn requested_claims_survive_refresh() {
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let secret = app
        .register_client(refreshing_app())
        .await
        .1
        .expect("secret");
    let claims = json!({
        "id_token": {"email": {"essential": true}},
        "userinfo": {"preferred_username": null},
    })
    .to_string();
    let t = tokens(&app, &secret, &[("scope", "openid"), ("claims", &claims)]).await;
    let refresh_token = t["refresh_token"].as_str().expect("refresh token");

    let response = refresh_as(&app, "web-app", Some(&secret), refresh_token, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let refreshed: Value = response.json().await.expect("token JSON");
    let id = id_token(&refreshed);
    assert_eq!(id["email"], "alice@example.com");
    absent(&id, &["preferred_username"]);
    let info = userinfo(
        &app,
        refreshed["access_token"].as_str().expect("access token"),
    )
    .await;
    assert_eq!(info["preferred_username"], "alice");
    absent(&info, &["email"]);

    // And the refresh after that.
    let next = refreshed["refresh_token"].as_str().expect("refresh token");
    let response = refresh_as(&app, "web-app", Some(&secret), next, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let again: Value = response.json().await.expect("token JSON");
    assert_eq!(id_token(&again)["email"], "alice@example.com");
}

#[tokio::test]
async fn the_consent_page_shows_what_the_claims_request_releases() {
    let (app, secret) = setup(false).await;
    let claims = json!({"userinfo": {"email": {"essential": true}}}).to_string();
    let extra = [("scope", "openid"), ("claims", claims.as_str())];

    // Signed in, asked silently: the email was never consented to.
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let silent = authorize_location(&app, &[("prompt", "none"), extra[0], extra[1]]).await;
    let silent = Url::parse(&silent).expect("url");
    assert_eq!(query(&silent, "error").as_deref(), Some("consent_required"));

    let location = authorize_location(&app, &extra).await;
    assert!(location.starts_with("/consent?tx="), "{location}");
    let page = app
        .get(&app.client, &location)
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("See your email address"), "{page}");
    assert!(!page.contains("See your name"), "{page}");

    let p = pkce();
    let c = code(&app, &app.client, &p, &extra).await;
    let t = redeem(&app, &secret, &c, &p).await;
    let info = userinfo(&app, t["access_token"].as_str().expect("access token")).await;
    assert_eq!(info["email"], "alice@example.com");

    // Remembered: the same request goes straight back with a code.
    let again = authorize_location(&app, &extra).await;
    assert!(again.starts_with(WEB_REDIRECT), "{again}");
}

#[tokio::test]
async fn claims_of_a_scope_the_client_may_not_have_are_not_released() {
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let (_, secret) = app
        .register_client(portcullis::clients::Registration {
            scopes: vec!["openid".into(), "profile".into()],
            ..web_app(true)
        })
        .await;
    let secret = secret.expect("secret");
    let claims = json!({
        "id_token": {"email": {"essential": true}, "name": null},
        "userinfo": {"email": null, "email_verified": null},
    })
    .to_string();
    let t = tokens(&app, &secret, &[("scope", "openid"), ("claims", &claims)]).await;
    let id = id_token(&t);
    assert_eq!(id["name"], "Alice Example");
    absent(&id, &["email"]);
    let info = userinfo(&app, t["access_token"].as_str().expect("access token")).await;
    absent(&info, &["email", "email_verified"]);
}

// From a security review: claims obtained through `claims` must not outlive the client's
// registration for their scope. The scope itself would be refused at the next refresh;
// its claims are withheld the same way.
#[tokio::test]
async fn claims_stop_when_the_client_loses_their_scope() {
    use portcullis::clock::Clock as _;
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let secret = app
        .register_client(refreshing_app())
        .await
        .1
        .expect("secret");
    let claims = json!({
        "id_token": {"email": null},
        "userinfo": {"email": null},
    })
    .to_string();
    let t = tokens(
        &app,
        &secret,
        &[("scope", "openid offline_access"), ("claims", &claims)],
    )
    .await;
    assert_eq!(id_token(&t)["email"], "alice@example.com");
    let refresh_token = t["refresh_token"].as_str().expect("refresh token");

    // The administrator takes `email` away from the client.
    let id = portcullis::domain::client::ClientId::parse("web-app").expect("id");
    let now = app.clock.now();
    portcullis::clients::update(
        app.store.as_ref(),
        &id,
        portcullis::clients::ClientUpdate {
            scopes: Some(vec![
                "openid".into(),
                "profile".into(),
                "offline_access".into(),
            ]),
            ..Default::default()
        },
        now,
        &portcullis::audit::Actor::cli(),
    )
    .await
    .expect("update");

    let response = refresh_as(&app, "web-app", Some(&secret), refresh_token, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let refreshed: Value = response.json().await.expect("token JSON");
    absent(&id_token(&refreshed), &["email", "email_verified"]);
    let access_token = refreshed["access_token"].as_str().expect("access token");
    absent(&payload(access_token), &["uic"]);
    absent(
        &userinfo(&app, access_token).await,
        &["email", "email_verified"],
    );
}
