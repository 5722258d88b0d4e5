//! The authorization code flow with PKCE and the OpenID Connect core, driven by real
//! client libraries (`openidconnect`, `oauth2`) and a cookie-keeping "browser" that fills
//! in the real sign-in and consent pages.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use reqwest::StatusCode;
use url::Url;

use crate::helpers::{
    PASSWORD, TestApp, WEB_REDIRECT, assert_oauth_error, authorize_path, code, exchange,
    exchange_web, follow, hidden_field, pkce, query, rp_http, spawn_app, web_app,
};

#[tokio::test]
async fn a_certified_library_logs_in_with_code_and_pkce() {
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let (registered, secret) = app.register_client(web_app(false)).await;
    let http = rp_http();

    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.settings.issuer.clone()).expect("issuer"),
        &http,
    )
    .await
    .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(registered.id.to_string()),
        secret.map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(WEB_REDIRECT.into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    let back = follow(&app, &app.client, auth_url.as_str(), WEB_REDIRECT, "allow").await;
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(
        query(&back, "iss").as_deref(),
        Some(app.settings.issuer.as_str())
    );
    let code = query(&back, "code").expect("code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint known")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("a valid ID token");
    let expected = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&verifier).expect("key"),
    )
    .expect("hash");
    assert_eq!(&actual, expected);
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    assert!(claims.auth_time().is_some());

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint known")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.subject(), claims.subject());
    assert_eq!(
        userinfo.email().map(|e| e.as_str()),
        Some("alice@example.com")
    );

    for kind in ["code.issued", "consent.granted", "token.issued"] {
        assert_eq!(app.audit(kind).await.len(), 1, "{kind}");
    }
}
async fn setup() -> (TestApp, String) {
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let (_, secret) = app.register_client(web_app(false)).await;
    (app, secret.expect("secret"))
}

#[tokio::test]
async fn requests_that_cannot_be_trusted_get_an_error_page_and_never_a_redirect() {
    let (app, _) = setup().await;
    let p = pkce();
    let cases = [
        (
            "unknown client",
            authorize_path(&p, &[("client_id", "nobody")]),
        ),
        (
            "missing client_id",
            authorize_path(&p, &[("client_id", "")]),
        ),
        (
            "unregistered redirect_uri",
            authorize_path(&p, &[("redirect_uri", "https://evil.example/cb")]),
        ),
        (
            "redirect_uri with extra path",
            authorize_path(
                &p,
                &[("redirect_uri", "https://app.example.com/callback/x")],
            ),
        ),
        (
            "missing redirect_uri",
            authorize_path(&p, &[("redirect_uri", "")]),
        ),
        (
            "duplicated client_id",
            format!("{}&client_id=web-app", authorize_path(&p, &[])),
        ),
    ];
    for (name, path) in cases {
        let response = app.get(&app.client, &path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert!(
            response.headers().get("location").is_none(),
            "{name}: never redirects"
        );
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/html"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn invalid_requests_are_reported_to_the_client_with_state_and_iss() {
    let (app, _) = setup().await;
    let p = pkce();
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        &'static str,
    );
    let cases: [Case; 11] = [
        (
            "missing PKCE",
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (
            "plain PKCE",
            vec![("code_challenge_method", "plain")],
            "invalid_request",
        ),
        (
            "PKCE method missing (plain by default)",
            vec![("code_challenge_method", "")],
            "invalid_request",
        ),
        (
            "malformed challenge",
            vec![("code_challenge", "abc")],
            "invalid_request",
        ),
        (
            "implicit flow",
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            "hybrid flow",
            vec![("response_type", "code id_token")],
            "unsupported_response_type",
        ),
        (
            "missing response_type",
            vec![("response_type", "")],
            "invalid_request",
        ),
        (
            "no allowed scope at all",
            vec![("scope", "admin phone")],
            "invalid_scope",
        ),
        (
            "request object",
            vec![("request", "eyJhbGciOiJub25lIn0.e30.")],
            "request_not_supported",
        ),
        (
            "request_uri",
            vec![("request_uri", "https://evil.example/r")],
            "request_uri_not_supported",
        ),
        (
            "bad prompt",
            vec![("prompt", "none login")],
            "invalid_request",
        ),
    ];
    for (name, extra, error) in cases {
        let response = app.get(&app.client, &authorize_path(&p, &extra)).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{name}");
        let location =
            Url::parse(response.headers()["location"].to_str().expect("location")).expect("url");
        assert!(location.as_str().starts_with(WEB_REDIRECT), "{name}");
        assert_eq!(query(&location, "error").as_deref(), Some(error), "{name}");
        assert_eq!(
            query(&location, "state").as_deref(),
            Some("st-123"),
            "{name}"
        );
        assert_eq!(
            query(&location, "iss").as_deref(),
            Some(app.settings.issuer.as_str()),
            "{name}"
        );
        assert!(query(&location, "code").is_none(), "{name}");
    }
    assert!(app.audit("code.issued").await.is_empty());
}

#[tokio::test]
async fn prompt_none_without_a_session_returns_login_required() {
    let (app, _) = setup().await;
    let response = app
        .get(&app.client, &authorize_path(&pkce(), &[("prompt", "none")]))
        .await;
    let location =
        Url::parse(response.headers()["location"].to_str().expect("location")).expect("url");
    assert_eq!(query(&location, "error").as_deref(), Some("login_required"));
    assert_eq!(query(&location, "state").as_deref(), Some("st-123"));
}

#[tokio::test]
async fn prompt_none_without_consent_returns_consent_required() {
    let (app, _) = setup().await;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let response = app
        .get(&app.client, &authorize_path(&pkce(), &[("prompt", "none")]))
        .await;
    let location =
        Url::parse(response.headers()["location"].to_str().expect("location")).expect("url");
    assert_eq!(
        query(&location, "error").as_deref(),
        Some("consent_required")
    );
}

#[tokio::test]
async fn denied_consent_returns_access_denied_and_no_code() {
    let (app, _) = setup().await;
    let back = follow(
        &app,
        &app.client,
        &authorize_path(&pkce(), &[]),
        WEB_REDIRECT,
        "deny",
    )
    .await;
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some("st-123"));
    assert!(query(&back, "code").is_none());
    assert_eq!(app.audit("consent.denied").await.len(), 1);
    assert!(app.audit("code.issued").await.is_empty());
}

#[tokio::test]
async fn consent_is_remembered_and_a_new_scope_asks_again() {
    let (app, _) = setup().await;
    let p = pkce();
    code(&app, &app.client, &p, &[("scope", "openid profile")]).await;
    // Same scopes again: straight back with a code.
    let again = app
        .get(
            &app.client,
            &authorize_path(&p, &[("scope", "openid profile")]),
        )
        .await;
    let location = again.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(location.starts_with(WEB_REDIRECT), "{location}");
    // A new scope: the consent page again.
    let more = app
        .get(
            &app.client,
            &authorize_path(&p, &[("scope", "openid email")]),
        )
        .await;
    let location = more.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(location.starts_with("/consent?tx="), "{location}");
    let page = app
        .get(&app.client, &location)
        .await
        .text()
        .await
        .expect("body");
    assert!(page.contains("See your email address"));
    assert!(page.contains("Acme Tracker"));
}

#[tokio::test]
async fn first_party_clients_skip_consent() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.register_client(web_app(true)).await;
    let back = follow(
        &app,
        &app.client,
        &authorize_path(&pkce(), &[]),
        WEB_REDIRECT,
        "deny",
    )
    .await;
    assert!(query(&back, "code").is_some());
    assert!(app.audit("consent.granted").await.is_empty());
}

#[tokio::test]
async fn code_exchange_failures_issue_no_tokens() {
    let (app, secret) = setup().await;
    let other = app
        .register_client(Registration {
            client_id: Some("other-app".into()),
            redirect_uris: vec![WEB_REDIRECT.into()],
            ..web_app(true)
        })
        .await
        .1
        .expect("secret");
    let p = pkce();
    let c = code(&app, &app.client, &p, &[]).await;

    let wrong_verifier = pkce().verifier;
    assert_oauth_error(
        exchange_web(&app, &secret, &c, &wrong_verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(
        exchange(
            &app,
            "web-app",
            Some(&secret),
            &c,
            "https://app.example.com/other",
            &p.verifier,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(
        exchange(
            &app,
            "other-app",
            Some(&other),
            &c,
            WEB_REDIRECT,
            &p.verifier,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(
        exchange_web(&app, "wrong-secret", &c, &p.verifier).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    let unauthenticated = exchange(
        &app,
        "web-app",
        Some(&"x".repeat(43)),
        &c,
        WEB_REDIRECT,
        &p.verifier,
    )
    .await;
    assert_eq!(
        unauthenticated.headers()["www-authenticate"],
        "Basic realm=\"portcullis\""
    );
    assert_oauth_error(unauthenticated, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_oauth_error(
        exchange(&app, "web-app", None, &c, WEB_REDIRECT, &p.verifier).await,
        StatusCode::BAD_REQUEST,
        "invalid_client",
    )
    .await;
    assert_oauth_error(
        exchange_web(&app, &secret, &c, "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(app.audit("token.issued").await.is_empty());

    // None of that burned the code: the right request still works, once.
    let ok = exchange_web(&app, &secret, &c, &p.verifier).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_the_first_access_token() {
    let (app, secret) = setup().await;
    let p = pkce();
    let c = code(&app, &app.client, &p, &[]).await;
    let first = exchange_web(&app, &secret, &c, &p.verifier).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["cache-control"], "no-store");
    let tokens: serde_json::Value = first.json().await.expect("json");
    let access = tokens["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 600);
    let userinfo = |token: String| {
        let http = rp_http();
        let url = app.url("/userinfo");
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("userinfo")
        }
    };
    assert_eq!(userinfo(access.clone()).await.status(), StatusCode::OK);

    let second = exchange_web(&app, &secret, &c, &p.verifier).await;
    assert_oauth_error(second, StatusCode::BAD_REQUEST, "invalid_grant").await;

    let revoked = userinfo(access).await;
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert!(
        revoked.headers()["www-authenticate"]
            .to_str()
            .unwrap_or("")
            .contains("invalid_token")
    );
    assert_eq!(app.audit("code.reused").await.len(), 1);
}

#[tokio::test]
async fn codes_expire_after_sixty_seconds() {
    let (app, secret) = setup().await;
    let p = pkce();
    let c = code(&app, &app.client, &p, &[]).await;
    app.clock.advance(time::Duration::seconds(61));
    let late = exchange_web(&app, &secret, &c, &p.verifier).await;
    assert_oauth_error(late, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn client_secret_post_and_unsupported_grants() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let (_, secret) = app
        .register_client(Registration {
            auth_method: Some(portcullis::domain::client::AuthMethod::ClientSecretPost),
            ..web_app(true)
        })
        .await;
    let secret = secret.expect("secret");
    let p = pkce();
    let c = code(&app, &app.client, &p, &[]).await;
    // Basic is not this client's method.
    let basic = exchange_web(&app, &secret, &c, &p.verifier).await;
    assert_oauth_error(basic, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let post = rp_http()
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", c.as_str()),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", p.verifier.as_str()),
            ("client_id", "web-app"),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), StatusCode::OK);

    let password_grant = rp_http()
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "web-app"),
            ("client_secret", secret.as_str()),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("POST");
    assert_oauth_error(
        password_grant,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    )
    .await;
    let duplicated = rp_http()
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=authorization_code&grant_type=authorization_code&client_id=web-app&client_secret={secret}"))
        .send()
        .await
        .expect("POST");
    assert_oauth_error(duplicated, StatusCode::BAD_REQUEST, "invalid_request").await;
}

async fn set_require_pkce(app: &TestApp, client_id: &str, required: bool) {
    portcullis::clients::update(
        app.store.as_ref(),
        &portcullis::domain::client::ClientId::parse(client_id).expect("id"),
        portcullis::clients::ClientUpdate {
            require_pkce: Some(required),
            ..Default::default()
        },
        time::OffsetDateTime::now_utc(),
        &portcullis::audit::Actor::cli(),
    )
    .await
    .expect("update");
}

/// A token request of `client_id` (client_secret_basic) with the given code_verifier, or
/// none at all.
async fn exchange_maybe_verifier(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    code: &str,
    verifier: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", WEB_REDIRECT),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    rp_http()
        .post(app.url("/token"))
        .basic_auth(client_id, Some(secret))
        .form(&form)
        .send()
        .await
        .expect("POST /token")
}

#[tokio::test]
async fn a_confidential_client_registered_without_pkce_logs_in_as_the_certification_suite_does() {
    let (app, strict_secret) = setup().await;
    let (client, secret) = app
        .register_client(Registration {
            client_id: Some("cert-rp".into()),
            require_pkce: false,
            ..web_app(true)
        })
        .await;
    assert!(!client.require_pkce);
    let secret = secret.expect("secret");
    // As the OpenID Foundation suite's oidcc-server and
    // oidcc-ensure-request-without-nonce-succeeds-for-code-flow send it: no PKCE, no nonce.
    let bare = [
        ("client_id", "cert-rp"),
        ("code_challenge", ""),
        ("code_challenge_method", ""),
        ("nonce", ""),
    ];
    let unused = pkce();
    let c = code(&app, &app.client, &unused, &bare).await;
    let ok = exchange_maybe_verifier(&app, "cert-rp", &secret, &c, None).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let tokens: serde_json::Value = ok.json().await.expect("tokens");
    assert!(tokens["id_token"].is_string() && tokens["access_token"].is_string());

    // RFC 9700 §4.8.2: a code issued without a challenge is not redeemed with a verifier
    // (and the refusal does not burn it).
    let c = code(&app, &app.client, &unused, &bare).await;
    assert_oauth_error(
        exchange_maybe_verifier(&app, "cert-rp", &secret, &c, Some(&pkce().verifier)).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        exchange_maybe_verifier(&app, "cert-rp", &secret, &c, None)
            .await
            .status(),
        StatusCode::OK
    );

    // A challenge it does send is enforced: no verifier or a wrong one gets nothing.
    let p = pkce();
    let c = code(&app, &app.client, &p, &[("client_id", "cert-rp")]).await;
    for verifier in [None, Some(pkce().verifier)] {
        assert_oauth_error(
            exchange_maybe_verifier(&app, "cert-rp", &secret, &c, verifier.as_deref()).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
    }
    assert_eq!(
        exchange_maybe_verifier(&app, "cert-rp", &secret, &c, Some(&p.verifier))
            .await
            .status(),
        StatusCode::OK
    );

    // Without PKCE only an OpenID Connect request is accepted: the nonce stands in for it.
    let back = follow(
        &app,
        &app.client,
        &authorize_path(
            &unused,
            &[bare.as_slice(), &[("scope", "profile")]].concat(),
        ),
        WEB_REDIRECT,
        "allow",
    )
    .await;
    assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"));
    assert!(query(&back, "code").is_none());

    // A request parked at the sign-in page while the client is switched to PKCE is not
    // completed: the user gets no (dead) code.
    let fresh = crate::helpers::browser(&app.settings.issuer_origin());
    let parked = fresh
        .get(app.url(&authorize_path(&unused, &bare)))
        .send()
        .await
        .expect("authorize");
    assert!(parked.status().is_redirection(), "{}", parked.status());
    let login = parked.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let page = fresh.get(app.url(&login)).send().await.expect("login page");
    let html = page.text().await.expect("html");
    set_require_pkce(&app, "cert-rp", true).await;
    let updated = app.audit("client.updated").await;
    assert_eq!(updated[0].details["require_pkce"], true);
    let posted = fresh
        .post(app.url("/login"))
        .form(&[
            ("tx", hidden_field(&html, "tx").expect("tx").as_str()),
            (
                "csrf_token",
                &hidden_field(&html, "csrf_token").expect("csrf"),
            ),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("sign in");
    // Follow the browser from the sign-in: it must never reach the client with a code.
    let mut response = posted;
    let mut hops = 0;
    while let Some(next) = response.headers().get("location") {
        let next = next.to_str().expect("location").to_owned();
        assert!(
            !next.starts_with(WEB_REDIRECT) || !next.contains("code="),
            "no code for a parked request: {next}"
        );
        if next.starts_with(WEB_REDIRECT) {
            break;
        }
        hops += 1;
        assert!(hops < 10, "too many redirects");
        let url = if next.starts_with('/') {
            app.url(&next)
        } else {
            next
        };
        response = fresh.get(url).send().await.expect("follow");
    }
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "an error page, not a code"
    );
    set_require_pkce(&app, "cert-rp", false).await;

    // A method without a challenge is a malformed request, not a request without PKCE.
    let back = follow(
        &app,
        &app.client,
        &authorize_path(&p, &[("client_id", "cert-rp"), ("code_challenge", "")]),
        WEB_REDIRECT,
        "allow",
    )
    .await;
    assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"));

    // Clients registered the default way still must use PKCE at both ends.
    let back = follow(
        &app,
        &app.client,
        &authorize_path(&p, &[("code_challenge", ""), ("code_challenge_method", "")]),
        WEB_REDIRECT,
        "allow",
    )
    .await;
    assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"));
    assert!(query(&back, "code").is_none());
    let p = pkce();
    let c = code(&app, &app.client, &p, &[]).await;
    assert_oauth_error(
        exchange_maybe_verifier(&app, "web-app", &strict_secret, &c, None).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;

    // Nor can a row say otherwise, whatever writes it.
    {
        use sqlx::Connection as _;
        let spa = app
            .register_client(Registration {
                client_id: Some("some-spa".into()),
                kind: ClientKind::Spa,
                redirect_uris: vec!["https://spa.example.com/cb".into()],
                ..web_app(false)
            })
            .await
            .0;
        assert!(spa.require_pkce);
        let sql = "update clients set require_pkce = (1 = 0) where client_id = 'some-spa'";
        let refused = if app.db.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&app.db.url)
                .await
                .expect("db");
            sqlx::query(sql).execute(&mut c).await.map(drop)
        } else {
            let mut c = sqlx::PgConnection::connect(&app.db.url).await.expect("db");
            sqlx::query(sql).execute(&mut c).await.map(drop)
        };
        assert!(refused.is_err(), "the constraint holds");
    }

    // Public clients cannot be registered without PKCE (RFC 9700 §2.1.1).
    for kind in [ClientKind::Spa, ClientKind::Native] {
        let refused = portcullis::clients::register(
            app.store.as_ref(),
            Registration {
                client_id: Some(format!("public-{}", kind.as_str())),
                kind,
                redirect_uris: vec!["http://127.0.0.1/cb".into()],
                require_pkce: false,
                ..web_app(false)
            },
            time::OffsetDateTime::now_utc(),
            &portcullis::audit::Actor::cli(),
        )
        .await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("must use PKCE")),
            "{kind:?}: {:?}",
            refused.map(|(c, _)| c.id)
        );
    }
}

#[tokio::test]
async fn scopes_the_client_may_not_have_are_ignored_not_refused() {
    // OpenID Connect Core §3.1.2.1: an RP asking for more than it may have (here
    // `address`, `phone` and a custom scope) still signs its user in, with what it may have.
    let (app, secret) = setup().await;
    let p = pkce();
    let c = code(
        &app,
        &app.client,
        &p,
        &[("scope", "openid profile address phone invoices:write")],
    )
    .await;
    let response = exchange_web(&app, &secret, &c, &p.verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: serde_json::Value = response.json().await.expect("tokens");
    assert_eq!(
        tokens["scope"], "openid profile",
        "the response says what was granted"
    );
    let info: serde_json::Value = rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(info["name"], "Alice Example");
    assert!(
        info.get("email").is_none() && info.get("address").is_none(),
        "{info}"
    );
}

#[tokio::test]
async fn prompt_consent_asks_even_for_a_first_party_client() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.register_client(web_app(true)).await;
    // OpenID Connect Core §3.1.2.1: prompt=consent asks, first party or not.
    let denied = follow(
        &app,
        &app.client,
        &authorize_path(&pkce(), &[("prompt", "consent")]),
        WEB_REDIRECT,
        "deny",
    )
    .await;
    assert_eq!(query(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&denied, "code"), None);
    assert_eq!(app.audit("consent.denied").await.len(), 1);
    let allowed = follow(
        &app,
        &app.client,
        &authorize_path(&pkce(), &[("prompt", "consent")]),
        WEB_REDIRECT,
        "allow",
    )
    .await;
    assert!(query(&allowed, "code").is_some(), "{allowed}");
    assert_eq!(app.audit("consent.granted").await.len(), 1);
    // prompt=none still needs no consent from a first-party client.
    let silent = follow(
        &app,
        &app.client,
        &authorize_path(&pkce(), &[("prompt", "none"), ("scope", "openid email")]),
        WEB_REDIRECT,
        "deny",
    )
    .await;
    assert!(query(&silent, "code").is_some(), "{silent}");
}

// Issue 11 item 3: a loopback redirect's port is free for native clients only, and no
// other spelling of a registered redirect URI is a match (RFC 9700 §4.1.3, RFC 8252 §7.3).
#[tokio::test]
async fn a_loopback_redirect_uri_matches_exactly_except_a_native_apps_port() {
    let app = spawn_app().await;
    const REGISTERED: &str = "http://127.0.0.1:8400/cb";
    for (client_id, kind) in [("dev-spa", ClientKind::Spa), ("cli", ClientKind::Native)] {
        let mut registration = web_app(false);
        registration.client_id = Some(client_id.into());
        registration.kind = kind;
        registration.redirect_uris = vec![REGISTERED.into()];
        app.register_client(registration).await;
    }
    let p = pkce();
    let refused = |client_id: &'static str, redirect_uri: &'static str| {
        let path = authorize_path(
            &p,
            &[("client_id", client_id), ("redirect_uri", redirect_uri)],
        );
        let app = &app;
        async move {
            let response = app.get(&app.client, &path).await;
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{client_id} {redirect_uri}"
            );
            assert!(response.headers().get("location").is_none());
        }
    };
    for client_id in ["dev-spa", "cli"] {
        for spelling in [
            "http://127.1:8400/cb",
            "http://2130706433:8400/cb",
            "http:\\\\127.0.0.1:8400\\cb",
            "http://127.0.0.1:8400/x/../cb",
            "http://127.0.0.1:08400/cb",
            " http://127.0.0.1:8400/cb",
        ] {
            refused(client_id, spelling).await;
        }
    }
    // Another port: refused for the SPA, a redirect (to the login page first) for the
    // native app.
    refused("dev-spa", "http://127.0.0.1:51234/cb").await;
    let native = app
        .get(
            &app.client,
            &authorize_path(
                &p,
                &[
                    ("client_id", "cli"),
                    ("redirect_uri", "http://127.0.0.1:51234/cb"),
                ],
            ),
        )
        .await;
    assert!(native.status().is_redirection(), "{}", native.status());
}
