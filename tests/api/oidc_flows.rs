//! The OpenID Foundation Basic/Config OP behaviours: prompt, max_age, id_token_hint,
//! POST requests, form_post, extra parameters, discovery, JWKS, CORS, native apps.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse, TokenUrl,
};
use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use crate::helpers::{
    PASSWORD, TestApp, WEB_REDIRECT, authorize_path, code, exchange_web, follow, hidden_field,
    pkce, query, rp_http, spawn_app, web_app,
};

async fn setup() -> (TestApp, String) {
    let app = spawn_app().await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let (_, secret) = app.register_client(web_app(true)).await;
    (app, secret.expect("secret"))
}

fn claims_of(id_token: &str) -> Value {
    let payload = id_token.split('.').nth(1).expect("payload");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

async fn id_token(app: &TestApp, secret: &str, extra: &[(&str, &str)]) -> Value {
    let p = pkce();
    let c = code(app, &app.client, &p, extra).await;
    let t: Value = exchange_web(app, secret, &c, &p.verifier)
        .await
        .json()
        .await
        .expect("tokens");
    claims_of(t["id_token"].as_str().expect("id_token"))
}

#[tokio::test]
async fn id_tokens_carry_the_required_claims() {
    let (app, secret) = setup().await;
    let claims = id_token(&app, &secret, &[]).await;
    assert_eq!(claims["iss"], app.settings.issuer.as_str());
    assert_eq!(claims["aud"], "web-app");
    assert_eq!(claims["azp"], "web-app");
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    for claim in [
        "sub",
        "iat",
        "exp",
        "auth_time",
        "at_hash",
        "sid",
        "name",
        "preferred_username",
        "email",
    ] {
        assert!(!claims[claim].is_null(), "{claim} missing: {claims}");
    }
    let no_profile = id_token(&app, &secret, &[("scope", "openid")]).await;
    assert!(no_profile.get("email").is_none() && no_profile.get("name").is_none());
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_fresh_sign_in() {
    let (app, secret) = setup().await;
    let first = id_token(&app, &secret, &[]).await;
    app.clock.advance(time::Duration::seconds(30));

    // Signed in: no page at all.
    let silent = app.get(&app.client, &authorize_path(&pkce(), &[])).await;
    assert!(
        silent.headers()["location"]
            .to_str()
            .unwrap_or("")
            .starts_with(WEB_REDIRECT)
    );

    for extra in [[("prompt", "login")], [("max_age", "10")]] {
        // The last sign-in is at least 30 s old when the request arrives.
        app.clock.advance(time::Duration::seconds(30));
        let response = app.get(&app.client, &authorize_path(&pkce(), &extra)).await;
        let location = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        assert!(location.starts_with("/login?tx="), "{extra:?}: {location}");
        let again = id_token(&app, &secret, &extra).await;
        assert!(
            again["auth_time"].as_i64() > first["auth_time"].as_i64(),
            "{extra:?}"
        );
    }
    // A generous max_age keeps the session.
    let kept = app
        .get(
            &app.client,
            &authorize_path(&pkce(), &[("max_age", "100000")]),
        )
        .await;
    assert!(
        kept.headers()["location"]
            .to_str()
            .unwrap_or("")
            .starts_with(WEB_REDIRECT)
    );
}

#[tokio::test]
async fn id_token_hint_with_prompt_none_succeeds_for_the_signed_in_user() {
    let (app, secret) = setup().await;
    let p = pkce();
    let c = code(&app, &app.client, &p, &[]).await;
    let t: Value = exchange_web(&app, &secret, &c, &p.verifier)
        .await
        .json()
        .await
        .expect("tokens");
    let hint = t["id_token"].as_str().expect("id token").to_owned();
    app.clock.advance(time::Duration::minutes(20)); // the hint may be expired

    let response = app
        .get(
            &app.client,
            &authorize_path(&pkce(), &[("prompt", "none"), ("id_token_hint", &hint)]),
        )
        .await;
    let location =
        Url::parse(response.headers()["location"].to_str().expect("location")).expect("url");
    assert!(query(&location, "code").is_some(), "{location}");

    let forged = format!("{}x", hint);
    let response = app
        .get(
            &app.client,
            &authorize_path(&pkce(), &[("prompt", "none"), ("id_token_hint", &forged)]),
        )
        .await;
    let location =
        Url::parse(response.headers()["location"].to_str().expect("location")).expect("url");
    assert_eq!(
        query(&location, "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn authorization_requests_may_be_posted_and_ignore_unknown_parameters() {
    let (app, secret) = setup().await;
    let p = pkce();
    let path = authorize_path(
        &p,
        &[
            ("display", "popup"),
            ("ui_locales", "se"),
            ("claims_locales", "se"),
            ("acr_values", "1 2"),
            ("login_hint", "alice"),
            ("extra", "foobar"),
            ("scope", "email openid profile"),
        ],
    );
    let form = path.trim_start_matches("/authorize?").to_owned();
    let response = app
        .client
        .post(app.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("POST /authorize");
    // Re-issued as a GET, so that SameSite=Lax cookies come along.
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let get = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(get.starts_with("/authorize?"), "{get}");
    let response = app.get(&app.client, &get).await;
    let login = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(login.starts_with("/login?tx="), "{login}");
    let page = app.get(&app.client, &login).await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("form-action 'self' https://app.example.com;"),
        "{csp}"
    );
    let html = page.text().await.expect("body");
    assert!(
        html.contains("value=\"alice\""),
        "login_hint prefills the username"
    );
    assert!(html.contains("Acme Tracker"), "the client's name is shown");
    let back = follow(&app, &app.client, &login, WEB_REDIRECT, "allow").await;
    let c = query(&back, "code").expect("code");
    let ok = exchange_web(&app, &secret, &c, &p.verifier).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn form_post_delivers_the_response_in_a_self_submitting_form() {
    let (app, _) = setup().await;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let response = app
        .get(
            &app.client,
            &authorize_path(&pkce(), &[("response_mode", "form_post")]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("form-action 'self' https://app.example.com;"),
        "{csp}"
    );
    assert!(csp.contains("script-src 'self';"), "{csp}");
    let html = response.text().await.expect("body");
    assert!(html.contains(&format!("action=\"{WEB_REDIRECT}\"")));
    assert!(hidden_field(&html, "code").is_some());
    assert_eq!(hidden_field(&html, "state").as_deref(), Some("st-123"));
    assert!(html.contains("src=\"/static/form_post.js\""));
    let script = app.get(&app.client, "/static/form_post.js").await;
    assert_eq!(script.status(), StatusCode::OK);
}

#[tokio::test]
async fn discovery_describes_exactly_what_is_supported() {
    let (app, _) = setup().await;
    let doc: Value = rp_http()
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let issuer = app.settings.issuer.as_str();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["authorization_endpoint"], format!("{issuer}/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(doc["userinfo_endpoint"], format!("{issuer}/userinfo"));
    assert_eq!(doc["jwks_uri"], format!("{issuer}/jwks.json"));
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(doc["revocation_endpoint"], format!("{issuer}/revoke"));
    assert_eq!(
        doc["introspection_endpoint"],
        format!("{issuer}/introspect")
    );
    for key in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        assert_eq!(
            doc[key],
            serde_json::json!(["client_secret_basic", "client_secret_post", "none"]),
            "{key}"
        );
    }
    assert_eq!(
        doc["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    assert!(
        doc["scopes_supported"]
            .as_array()
            .expect("scopes")
            .contains(&Value::from("offline_access"))
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["request_parameter_supported"], false);
    let rfc8414: Value = rp_http()
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(rfc8414["issuer"], issuer);
    assert!(rfc8414.get("userinfo_endpoint").is_none());

    let jwks = rp_http()
        .get(app.url("/jwks.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = jwks.json().await.expect("json");
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(key.get(private).is_none(), "JWKS leaks {private}");
    }
}

#[tokio::test]
async fn cors_answers_only_registered_origins() {
    let app = spawn_app().await;
    app.register_client(Registration {
        client_id: Some("spa".into()),
        name: "SPA".into(),
        kind: ClientKind::Spa,
        auth_method: None,
        redirect_uris: vec!["https://spa.example.com/cb".into()],
        post_logout_redirect_uris: vec![],
        allowed_origins: vec![],
        grant_types: vec![],
        scopes: vec![],
        first_party: true,
        refresh_token_delivery: Default::default(),
        id_token_signed_response_alg: None,
        require_pkce: true,
        introspection: false,
        require_mfa: false,
    })
    .await;
    for path in [
        "/token",
        "/userinfo",
        "/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let allowed = rp_http()
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://spa.example.com")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .expect("preflight");
        assert_eq!(allowed.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            allowed.headers()["access-control-allow-origin"],
            "https://spa.example.com",
            "{path}"
        );
        assert!(
            allowed
                .headers()
                .get("access-control-allow-credentials")
                .is_none(),
            "{path}"
        );
        let refused = rp_http()
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .expect("preflight");
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path}"
        );
    }
    let jwks = rp_http()
        .get(app.url("/jwks.json"))
        .header("origin", "https://spa.example.com")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        jwks.headers()["access-control-allow-origin"],
        "https://spa.example.com"
    );
}

#[tokio::test]
async fn a_native_app_signs_in_through_a_loopback_redirect_on_any_port() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.register_client(Registration {
        client_id: Some("cli".into()),
        name: "Acme CLI".into(),
        kind: ClientKind::Native,
        auth_method: None,
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        post_logout_redirect_uris: vec![],
        allowed_origins: vec![],
        grant_types: vec![],
        scopes: vec![],
        first_party: false,
        refresh_token_delivery: Default::default(),
        id_token_signed_response_alg: None,
        require_pkce: true,
        introspection: false,
        require_mfa: false,
    })
    .await;
    // The app listens on an ephemeral port (RFC 8252 §7.3).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let redirect = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr().expect("addr").port()
    );
    let client = BasicClient::new(ClientId::new("cli".into()))
        .set_auth_uri(AuthUrl::new(app.url("/authorize")).expect("auth url"))
        .set_token_uri(TokenUrl::new(app.url("/token")).expect("token url"))
        .set_redirect_uri(RedirectUrl::new(redirect.clone()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("openid".into()))
        .set_pkce_challenge(challenge)
        .url();

    let back = follow(&app, &app.client, url.as_str(), &redirect, "allow").await;
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    let code = query(&back, "code").expect("code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&rp_http())
        .await
        .expect("token exchange");
    assert!(!tokens.access_token().secret().is_empty());
    assert!(
        tokens.refresh_token().is_none(),
        "refresh tokens come with the refresh_token grant"
    );
}

#[tokio::test]
async fn consent_cannot_stand_in_for_a_sign_in_the_request_demands() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.register_client(web_app(false)).await;
    let cookie = app.login_ok(&app.client, "alice", PASSWORD).await;
    for extra in [[("prompt", "login")], [("max_age", "0")]] {
        app.clock.advance(time::Duration::seconds(5));
        let response = app.get(&app.client, &authorize_path(&pkce(), &extra)).await;
        let login = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let tx = login
            .strip_prefix("/login?tx=")
            .expect("sent to sign in")
            .to_owned();

        // Skipping the sign-in page: the consent page sends the browser back to it...
        let consent = app.get(&app.client, &format!("/consent?tx={tx}")).await;
        assert_eq!(consent.status(), StatusCode::SEE_OTHER, "{extra:?}");
        assert_eq!(
            consent.headers()["location"].to_str().expect("location"),
            login
        );
        // ...and a forged answer (with a valid CSRF token) issues nothing.
        let session = portcullis::domain::secret::OpaqueToken::<
            portcullis::domain::secret::kind::SessionToken,
        >::parse(&cookie)
        .expect("cookie");
        let csrf = session.derive("consent-csrf", &tx);
        let forged = app
            .post_form(
                &app.client,
                "/consent",
                &[("tx", &tx), ("csrf_token", &csrf), ("decision", "allow")],
            )
            .await;
        assert_eq!(forged.status(), StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(forged.headers().get("location").is_none());
    }
    assert!(app.audit("code.issued").await.is_empty());
}

#[tokio::test]
async fn control_characters_are_refused_not_stored() {
    let (app, secret) = setup().await;
    for bad in ["state", "nonce", "login_hint"] {
        let path = format!("{}&{bad}=a%00b", authorize_path(&pkce(), &[(bad, "")]));
        let response = app.get(&app.client, &path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let token = rp_http()
        .post(app.url("/token"))
        .basic_auth("web-app", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=x&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback%00&code_verifier=v")
        .send()
        .await
        .expect("POST");
    crate::helpers::assert_oauth_error(token, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_code_dies_with_the_session_it_was_issued_in() {
    let (app, secret) = setup().await;
    let p = pkce();
    let c = code(&app, &app.client, &p, &[]).await;
    let csrf = app.account_csrf(&app.client).await;
    app.post_form(&app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;
    let late = exchange_web(&app, &secret, &c, &p.verifier).await;
    crate::helpers::assert_oauth_error(late, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn forwarding_headers_never_change_the_issuer() {
    let app = spawn_app().await;
    let doc: Value = rp_http()
        .get(app.url("/.well-known/openid-configuration"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "host=evil.example;proto=https")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let issuer = app.settings.issuer.as_str();
    assert_eq!(doc["issuer"], issuer);
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "end_session_endpoint",
    ] {
        let url = doc[endpoint].as_str().expect("endpoint");
        assert!(url.starts_with(issuer), "{endpoint}: {url}");
    }
}
