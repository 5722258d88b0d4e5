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
use reqwest::{Client, StatusCode};
use url::Url;

use crate::helpers::{PASSWORD, TestApp, hidden_field, spawn_app};

pub const WEB_REDIRECT: &str = "https://app.example.com/callback";

pub fn web_app(first_party: bool) -> Registration {
    Registration {
        client_id: Some("web-app".into()),
        name: "Acme Tracker".into(),
        kind: ClientKind::Confidential,
        auth_method: None,
        redirect_uris: vec![WEB_REDIRECT.into()],
        post_logout_redirect_uris: vec![],
        allowed_origins: vec![],
        grant_types: vec![],
        scopes: vec![],
        first_party,
    }
}

/// An HTTP client for the relying party's back channel: never follows redirects.
pub fn rp_http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Follows the browser through the provider's pages (sign-in with `password`, consent
/// with `consent` when asked) until the provider redirects to `redirect_prefix`; returns
/// that final URL.
pub async fn follow(
    app: &TestApp,
    browser: &Client,
    start: &str,
    redirect_prefix: &str,
    consent: &str,
) -> Url {
    let mut next = start.to_owned();
    for _ in 0..10 {
        if next.starts_with(redirect_prefix) {
            return Url::parse(&next).expect("redirect URL");
        }
        let url = if next.starts_with('/') {
            app.url(&next)
        } else {
            next.clone()
        };
        let response = browser.get(&url).send().await.expect("GET");
        let status = response.status();
        if status.is_redirection() {
            next = response.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            continue;
        }
        assert_eq!(status, StatusCode::OK, "unexpected page at {url}");
        let path = Url::parse(&url).expect("url").path().to_owned();
        let html = response.text().await.expect("body");
        let tx = hidden_field(&html, "tx").expect("tx field");
        let csrf = hidden_field(&html, "csrf_token").expect("csrf field");
        let posted = match path.as_str() {
            "/login" => {
                browser
                    .post(app.url("/login"))
                    .form(&[
                        ("tx", tx.as_str()),
                        ("csrf_token", &csrf),
                        ("username", "alice"),
                        ("password", PASSWORD),
                    ])
                    .send()
                    .await
            }
            "/consent" => {
                browser
                    .post(app.url("/consent"))
                    .form(&[
                        ("tx", tx.as_str()),
                        ("csrf_token", &csrf),
                        ("decision", consent),
                    ])
                    .send()
                    .await
            }
            other => panic!("unexpected page {other}"),
        }
        .expect("POST");
        assert_eq!(
            posted.status(),
            StatusCode::SEE_OTHER,
            "form post at {path}"
        );
        next = posted.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
    }
    panic!("too many redirects");
}

pub fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

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
