//! OpenID Connect RP-Initiated Logout 1.0 at `/logout`, driven by the `openidconnect`
//! client (discovery, ID token, logout URL) and cookie-keeping browsers. The cases follow
//! the conformance suite's RP-Initiated OP plan: a valid hint logs out and returns with
//! `state`; a forged, unsigned or foreign hint, an unregistered or altered target, or a
//! target without a client never redirects; without a hint the user is asked first.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndSessionUrl, IssuerUrl, LogoutRequest,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use portcullis::clients::Registration;
use portcullis::domain::user::User;
use reqwest::{Client, Response, StatusCode};
use url::Url;

use crate::helpers::{
    PASSWORD, TestApp, WEB_REDIRECT, authorize_path, follow, hidden_field, pkce, query, rp_http,
    set_cookie, spawn_app, web_app,
};

const LOGOUT_REDIRECT: &str = "https://app.example.com/signed-out";
const OTHER_LOGOUT_REDIRECT: &str = "https://other.example.com/bye";

struct Rp {
    app: TestApp,
    alice: User,
    secret: String,
}

/// The provider, alice, `web-app` (post-logout URI registered) and `other-app`.
async fn setup() -> Rp {
    let app = spawn_app().await;
    let alice = app
        .create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let (_, secret) = app
        .register_client(Registration {
            post_logout_redirect_uris: vec![LOGOUT_REDIRECT.into()],
            ..web_app(false)
        })
        .await;
    app.register_client(Registration {
        client_id: Some("other-app".into()),
        name: "Other App".into(),
        redirect_uris: vec!["https://other.example.com/cb".into()],
        post_logout_redirect_uris: vec![OTHER_LOGOUT_REDIRECT.into()],
        ..web_app(true)
    })
    .await;
    Rp {
        app,
        alice,
        secret: secret.expect("secret"),
    }
}

/// What a relying party holds after signing in through the real pages.
struct SignedIn {
    id_token: CoreIdToken,
    end_session: EndSessionUrl,
    expires_at: time::OffsetDateTime,
    access_token: String,
}

/// The `openidconnect` client signs alice in through `browser` (sign-in and consent
/// pages as needed) and verifies the ID token it gets.
async fn sign_in(app: &TestApp, secret: &str, browser: &Client) -> SignedIn {
    let http = rp_http();
    let metadata = ProviderMetadataWithLogout::discover_async(
        IssuerUrl::new(app.settings.issuer.clone()).expect("issuer"),
        &http,
    )
    .await
    .expect("discovery");
    let end_session = metadata
        .additional_metadata()
        .end_session_endpoint
        .clone()
        .expect("discovery advertises end_session_endpoint");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("web-app".into()),
        Some(ClientSecret::new(secret.into())),
    )
    .set_redirect_uri(RedirectUrl::new(WEB_REDIRECT.into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let back = follow(app, browser, auth_url.as_str(), WEB_REDIRECT, "allow").await;
    let code = query(&back, "code").expect("code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let id_token = tokens.id_token().expect("ID token").clone();
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("a valid ID token");
    let expires_at =
        time::OffsetDateTime::from_unix_timestamp(claims.expiration().timestamp()).expect("exp");
    SignedIn {
        id_token,
        end_session,
        expires_at,
        access_token: tokens.access_token().secret().clone(),
    }
}

impl SignedIn {
    /// The logout URL a relying party builds with the library.
    fn logout_url(&self, redirect: Option<&str>, state: Option<&str>) -> String {
        let mut request =
            LogoutRequest::from(self.end_session.clone()).set_id_token_hint(&self.id_token);
        if let Some(redirect) = redirect {
            request = request.set_post_logout_redirect_uri(
                PostLogoutRedirectUrl::new(redirect.into()).expect("URL"),
            );
        }
        if let Some(state) = state {
            request = request.set_state(CsrfToken::new(state.into()));
        }
        request.http_get_url().to_string()
    }

    fn hint(&self) -> String {
        self.id_token.to_string()
    }
}

/// `/logout?…` with these parameters.
fn logout_path(params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).expect("query");
    if query.is_empty() {
        "/logout".into()
    } else {
        format!("/logout?{query}")
    }
}

async fn get(app: &TestApp, browser: &Client, path_or_url: &str) -> Response {
    let url = if path_or_url.starts_with('/') {
        app.url(path_or_url)
    } else {
        path_or_url.to_owned()
    };
    browser.get(url).send().await.expect("GET")
}

fn location(response: &Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("location").to_owned())
}

/// What `/authorize?prompt=none` answers this browser: a code, or the error.
async fn prompt_none(app: &TestApp, browser: &Client) -> Result<String, String> {
    let response = get(
        app,
        browser,
        &authorize_path(&pkce(), &[("prompt", "none")]),
    )
    .await;
    let location = Url::parse(&location(&response).expect("a redirect")).expect("URL");
    assert!(location.as_str().starts_with(WEB_REDIRECT), "{location}");
    match query(&location, "code") {
        Some(code) => Ok(code),
        None => Err(query(&location, "error").expect("error")),
    }
}

/// An error page: 400, HTML, never a redirect.
async fn assert_refused(response: Response, case: &str) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
    assert!(location(&response).is_none(), "{case}: never redirects");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html"),
        "{case}"
    );
    let html = response.text().await.expect("body");
    assert!(
        html.contains("This sign-out request cannot be completed"),
        "{case}: {html}"
    );
}

/// The session is untouched: still signed in, prompt=none still issues a code.
async fn assert_still_signed_in(rp: &Rp, browser: &Client, case: &str) {
    assert!(
        rp.app.is_signed_in(browser).await,
        "{case}: still signed in"
    );
    // A code, or consent_required for a browser that never consented: not logged out.
    let answer = prompt_none(&rp.app, browser).await;
    assert!(
        answer.is_ok() || answer == Err("consent_required".into()),
        "{case}: {answer:?}"
    );
    assert_eq!(rp.app.session_count(&rp.alice).await, 1, "{case}");
    assert!(rp.app.audit("logout").await.is_empty(), "{case}");
}

/// The browser is signed out and the session row is revoked.
async fn assert_signed_out(rp: &Rp, browser: &Client) {
    assert!(!rp.app.is_signed_in(browser).await);
    assert_eq!(
        prompt_none(&rp.app, browser).await,
        Err("login_required".into())
    );
    assert_eq!(rp.app.session_count(&rp.alice).await, 0);
}

fn assert_cookie_cleared(response: &Response) {
    let cleared = set_cookie(response, "portcullis_session").expect("clearing cookie");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn a_valid_hint_logs_out_at_once_and_returns_with_state() {
    let rp = setup().await;
    let app = &rp.app;
    let signed_in = sign_in(app, &rp.secret, &app.client).await;
    assert_eq!(
        signed_in.end_session.url().as_str(),
        app.url("/logout"),
        "discovery's end_session_endpoint"
    );
    assert!(prompt_none(app, &app.client).await.is_ok());

    let response = get(
        app,
        &app.client,
        &signed_in.logout_url(Some(LOGOUT_REDIRECT), Some("st-1 &x")),
    )
    .await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://app.example.com/signed-out?state=st-1+%26x")
    );
    assert_cookie_cleared(&response);
    assert_signed_out(&rp, &app.client).await;
    let rows = app.audit("logout").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user_id, Some(rp.alice.id));
    assert_eq!(rows[0].client_id.as_deref(), Some("web-app"));
    assert!(rows[0].session_id.is_some());
    assert_eq!(rows[0].details["via"], "id_token_hint");
}

#[tokio::test]
async fn without_state_the_redirect_carries_no_parameters() {
    let rp = setup().await;
    let app = &rp.app;
    let signed_in = sign_in(app, &rp.secret, &app.client).await;
    let response = get(
        app,
        &app.client,
        &signed_in.logout_url(Some(LOGOUT_REDIRECT), None),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response).as_deref(), Some(LOGOUT_REDIRECT));
    assert_signed_out(&rp, &app.client).await;
}

#[tokio::test]
async fn an_expired_hint_is_still_accepted() {
    let rp = setup().await;
    let app = &rp.app;
    let signed_in = sign_in(app, &rp.secret, &app.client).await;
    // ID tokens live 10 minutes; the session (1 h idle) outlives them.
    app.clock.advance(time::Duration::minutes(20));
    assert!(signed_in.expires_at < portcullis::clock::Clock::now(&app.clock));

    let response = get(
        app,
        &app.client,
        &signed_in.logout_url(Some(LOGOUT_REDIRECT), Some("late")),
    )
    .await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://app.example.com/signed-out?state=late")
    );
    assert_signed_out(&rp, &app.client).await;
}

#[tokio::test]
async fn a_valid_hint_without_a_target_shows_the_signed_out_page() {
    let rp = setup().await;
    let app = &rp.app;
    let signed_in = sign_in(app, &rp.secret, &app.client).await;
    let response = get(app, &app.client, &signed_in.logout_url(None, Some("s"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(location(&response).is_none());
    assert_cookie_cleared(&response);
    let html = response.text().await.expect("body");
    assert!(html.contains("You are signed out"), "{html}");
    assert!(!html.contains(LOGOUT_REDIRECT));
    assert_signed_out(&rp, &app.client).await;
    assert_eq!(app.audit("logout").await.len(), 1);
}

/// The header and payload of a JWT, decoded.
fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value, String) {
    let mut parts = token.split('.');
    let json = |p: Option<&str>| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.expect("part")).expect("base64"))
            .expect("JSON")
    };
    let header = json(parts.next());
    let payload = json(parts.next());
    (header, payload, parts.next().expect("signature").to_owned())
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

#[tokio::test]
async fn forged_unsigned_or_foreign_hints_get_an_error_page_and_change_nothing() {
    let rp = setup().await;
    let app = &rp.app;
    let hint = sign_in(app, &rp.secret, &app.client).await;
    let real = hint.hint();
    let (header, payload, signature) = jwt_parts(&real);

    // `alg: none`, as the conformance suite alters it (kid kept, and dropped).
    let mut none_header = header.clone();
    none_header["alg"] = "none".into();
    let alg_none = format!("{}.{}.", b64(&none_header), b64(&payload));
    let bare_none = serde_json::json!({"alg": "none", "typ": "JWT"});
    let alg_none_no_kid = format!("{}.{}.", b64(&bare_none), b64(&payload));
    // A signature with one character changed in the middle.
    let mut sig: Vec<char> = signature.chars().collect();
    let mid = sig.len() / 2;
    sig[mid] = if sig[mid] == 'A' { 'B' } else { 'A' };
    let sig: String = sig.into_iter().collect();
    let tampered_signature = format!("{}.{}.{sig}", b64(&header), b64(&payload));
    // Another subject under the original signature.
    let mut other_payload = payload.clone();
    other_payload["sub"] = uuid::Uuid::new_v4().to_string().into();
    let tampered_payload = format!("{}.{}.{signature}", b64(&header), b64(&other_payload));
    // An unknown key id.
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = "not-a-key-of-ours".into();
    let unknown_kid = format!("{}.{}.{signature}", b64(&unknown_kid), b64(&payload));

    // A genuine ID token from another provider (its own keys and issuer) for a client
    // with the same id and the same registered target.
    let other = spawn_app().await;
    other.create_user("alice", PASSWORD).await;
    let (_, other_secret) = other
        .register_client(Registration {
            post_logout_redirect_uris: vec![LOGOUT_REDIRECT.into()],
            ..web_app(true)
        })
        .await;
    let foreign = sign_in(&other, &other_secret.expect("secret"), &other.new_browser())
        .await
        .hint();
    assert_ne!(jwt_parts(&foreign).1["iss"], payload["iss"]);

    let cases = [
        ("alg none", alg_none),
        ("alg none without kid", alg_none_no_kid),
        ("tampered signature", tampered_signature),
        ("tampered payload", tampered_payload),
        ("an access token", hint.access_token.clone()),
        ("not a JWT", "not-a-token".into()),
    ];
    for (case, token) in cases {
        for with_target in [true, false] {
            let mut params = vec![("id_token_hint", token.as_str()), ("state", "s")];
            if with_target {
                params.push(("post_logout_redirect_uri", LOGOUT_REDIRECT));
            }
            let response = get(app, &app.client, &logout_path(&params)).await;
            assert!(
                set_cookie(&response, "portcullis_session").is_none(),
                "{case}"
            );
            assert_refused(response, case).await;
        }
        assert_still_signed_in(&rp, &app.client, case).await;
    }
    // A hint signed by a key we do not have (one rotated out while the session lived
    // on, or another provider's) cannot be verified, so it is treated as absent: the user
    // is asked, nothing is redirected (the conformance plan accepts "error or
    // confirmation page").
    for (case, token) in [("unknown kid", &unknown_kid), ("another issuer", &foreign)] {
        for with_target in [true, false] {
            let mut params = vec![("id_token_hint", token.as_str()), ("state", "s")];
            if with_target {
                params.push(("post_logout_redirect_uri", LOGOUT_REDIRECT));
            }
            let response = get(app, &app.client, &logout_path(&params)).await;
            assert!(location(&response).is_none(), "{case}: never redirected");
            if with_target {
                // Without a usable hint the target has no client to belong to (§3).
                assert_refused(response, case).await;
            } else {
                assert_eq!(
                    response.status(),
                    StatusCode::OK,
                    "{case}: the confirmation page"
                );
                let html = response.text().await.expect("body");
                assert!(
                    html.contains("action=\"/logout/confirm\""),
                    "{case}: {html}"
                );
            }
            assert_still_signed_in(&rp, &app.client, case).await;
        }
    }
}

#[tokio::test]
async fn unregistered_or_unattributed_targets_are_never_followed() {
    let rp = setup().await;
    let app = &rp.app;
    let signed_in = sign_in(app, &rp.secret, &app.client).await;
    let hint = signed_in.hint();
    let cases: [(&str, Vec<(&str, &str)>); 9] = [
        (
            "unregistered target",
            vec![
                ("id_token_hint", hint.as_str()),
                ("post_logout_redirect_uri", "https://evil.example/bye"),
            ],
        ),
        (
            "query added to the registered target",
            vec![
                ("id_token_hint", hint.as_str()),
                (
                    "post_logout_redirect_uri",
                    "https://app.example.com/signed-out?foo=bar",
                ),
            ],
        ),
        (
            "trailing slash",
            vec![
                ("id_token_hint", hint.as_str()),
                (
                    "post_logout_redirect_uri",
                    "https://app.example.com/signed-out/",
                ),
            ],
        ),
        (
            "a redirect URI that is not a post-logout URI",
            vec![
                ("id_token_hint", hint.as_str()),
                ("post_logout_redirect_uri", WEB_REDIRECT),
            ],
        ),
        (
            "another client's target",
            vec![
                ("id_token_hint", hint.as_str()),
                ("post_logout_redirect_uri", OTHER_LOGOUT_REDIRECT),
            ],
        ),
        (
            "target without client_id or hint",
            vec![
                ("post_logout_redirect_uri", LOGOUT_REDIRECT),
                ("state", "s"),
            ],
        ),
        (
            "client_id that is not the hint's audience",
            vec![
                ("id_token_hint", hint.as_str()),
                ("client_id", "other-app"),
                ("post_logout_redirect_uri", OTHER_LOGOUT_REDIRECT),
            ],
        ),
        (
            "client_id mismatch without a target",
            vec![("id_token_hint", hint.as_str()), ("client_id", "other-app")],
        ),
        (
            "unknown client_id",
            vec![
                ("client_id", "nobody"),
                ("post_logout_redirect_uri", LOGOUT_REDIRECT),
            ],
        ),
    ];
    for (case, params) in cases {
        let response = get(app, &app.client, &logout_path(&params)).await;
        assert_refused(response, case).await;
        assert_still_signed_in(&rp, &app.client, case).await;
    }
    // The same hint with the registered target and a matching client_id works.
    let response = get(
        app,
        &app.client,
        &logout_path(&[
            ("id_token_hint", hint.as_str()),
            ("client_id", "web-app"),
            ("post_logout_redirect_uri", LOGOUT_REDIRECT),
        ]),
    )
    .await;
    assert_eq!(location(&response).as_deref(), Some(LOGOUT_REDIRECT));
    assert_signed_out(&rp, &app.client).await;
}

/// The confirmation page's form fields.
struct Confirmation {
    csrf_token: String,
    fields: Vec<(String, String)>,
}

async fn confirmation(app: &TestApp, browser: &Client, path: &str) -> (Confirmation, String) {
    let response = get(app, browser, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert!(location(&response).is_none());
    assert!(set_cookie(&response, "portcullis_session").is_none());
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("CSP")
        .to_owned();
    let html = response.text().await.expect("body");
    assert!(html.contains("Sign out of Portcullis?"), "{html}");
    assert!(html.contains("action=\"/logout/confirm\""), "{html}");
    let mut fields = Vec::new();
    for name in [
        "id_token_hint",
        "client_id",
        "post_logout_redirect_uri",
        "state",
    ] {
        if let Some(value) = hidden_field(&html, name) {
            fields.push((name.to_owned(), value));
        }
    }
    let csrf_token = hidden_field(&html, "csrf_token").expect("csrf_token");
    (
        Confirmation { csrf_token, fields },
        format!("{csp}\n{html}"),
    )
}

impl Confirmation {
    fn form(&self, csrf: Option<&str>) -> Vec<(String, String)> {
        let mut form = self.fields.clone();
        if let Some(csrf) = csrf {
            form.push(("csrf_token".into(), csrf.into()));
        }
        form
    }
}

async fn post_confirm(app: &TestApp, browser: &Client, form: &[(String, String)]) -> Response {
    browser
        .post(app.url("/logout/confirm"))
        .form(form)
        .send()
        .await
        .expect("POST")
}

#[tokio::test]
async fn without_a_hint_the_user_confirms_with_a_csrf_protected_form() {
    let rp = setup().await;
    let app = &rp.app;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let path = logout_path(&[
        ("client_id", "web-app"),
        ("post_logout_redirect_uri", LOGOUT_REDIRECT),
        ("state", "st-9"),
        ("logout_hint", "alice"),
        ("ui_locales", "fr-CA en"),
    ]);
    let (page, text) = confirmation(app, &app.client, &path).await;
    assert!(text.contains("Acme Tracker"), "the page names the client");
    assert!(text.contains("app.example.com"), "and where it returns to");
    assert!(
        text.contains("form-action 'self' https://app.example.com;"),
        "the CSP lets the form's redirect chain end at the client: {text}"
    );
    assert_eq!(
        page.fields,
        vec![
            ("client_id".to_owned(), "web-app".to_owned()),
            ("post_logout_redirect_uri".into(), LOGOUT_REDIRECT.into()),
            ("state".into(), "st-9".into()),
        ]
    );
    assert_still_signed_in(&rp, &app.client, "the page alone").await;

    // Without the token (a missing field), with a wrong one, from another site, or with
    // a target swapped in the form: refused, the session stays.
    let missing = post_confirm(app, &app.client, &page.form(None)).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert!(location(&missing).is_none());
    let wrong = post_confirm(app, &app.client, &page.form(Some("forged"))).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let cross_site = app
        .client
        .post(app.url("/logout/confirm"))
        .header("origin", "https://evil.example")
        .form(&page.form(Some(&page.csrf_token)))
        .send()
        .await
        .expect("POST");
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let fetch_cross_site = app
        .client
        .post(app.url("/logout/confirm"))
        .header("sec-fetch-site", "cross-site")
        .form(&page.form(Some(&page.csrf_token)))
        .send()
        .await
        .expect("POST");
    assert_eq!(fetch_cross_site.status(), StatusCode::FORBIDDEN);
    let mut swapped = page.form(Some(&page.csrf_token));
    for (name, value) in &mut swapped {
        if name == "post_logout_redirect_uri" {
            *value = "https://evil.example/bye".into();
        }
    }
    assert_refused(
        post_confirm(app, &app.client, &swapped).await,
        "swapped target",
    )
    .await;
    // Another browser's session cannot use this token.
    let other = app.new_browser();
    app.login_ok(&other, "alice", PASSWORD).await;
    let foreign = post_confirm(app, &other, &page.form(Some(&page.csrf_token))).await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(app.is_signed_in(&other).await);
    assert!(app.is_signed_in(&app.client).await);
    assert!(app.audit("logout").await.is_empty());

    let confirmed = post_confirm(app, &app.client, &page.form(Some(&page.csrf_token))).await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&confirmed).as_deref(),
        Some("https://app.example.com/signed-out?state=st-9")
    );
    assert_cookie_cleared(&confirmed);
    assert!(!app.is_signed_in(&app.client).await);
    assert_eq!(
        prompt_none(app, &app.client).await,
        Err("login_required".into())
    );
    assert!(
        app.is_signed_in(&other).await,
        "only this browser's session ends"
    );
    let rows = app.audit("logout").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].client_id.as_deref(), Some("web-app"));
    assert_eq!(rows[0].details["via"], "confirmation");
}

#[tokio::test]
async fn a_hint_for_another_session_asks_first() {
    let rp = setup().await;
    let app = &rp.app;
    // The hint belongs to a session that has since ended; alice signed in again.
    let old = sign_in(app, &rp.secret, &app.client).await;
    let csrf = app.account_csrf(&app.client).await;
    app.post_form(&app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;
    app.login_ok(&app.client, "alice", PASSWORD).await;

    let (page, text) = confirmation(
        app,
        &app.client,
        &old.logout_url(Some(LOGOUT_REDIRECT), Some("again")),
    )
    .await;
    assert!(text.contains("Acme Tracker"), "the hint names the client");
    assert!(app.is_signed_in(&app.client).await);
    assert_eq!(
        app.audit("logout").await.len(),
        1,
        "only the first sign-out"
    );

    // Confirmed: the hint still identifies the client, so its target is followed.
    let confirmed = post_confirm(app, &app.client, &page.form(Some(&page.csrf_token))).await;
    assert_eq!(
        location(&confirmed).as_deref(),
        Some("https://app.example.com/signed-out?state=again")
    );
    assert!(!app.is_signed_in(&app.client).await);
    assert_eq!(app.session_count(&rp.alice).await, 0);
}

#[tokio::test]
async fn a_hint_from_another_browser_asks_first() {
    let rp = setup().await;
    let app = &rp.app;
    let elsewhere = app.new_browser();
    let hint = sign_in(app, &rp.secret, &elsewhere).await;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    confirmation(
        app,
        &app.client,
        &hint.logout_url(Some(LOGOUT_REDIRECT), None),
    )
    .await;
    assert!(app.is_signed_in(&app.client).await);
    assert!(app.is_signed_in(&elsewhere).await);
    assert!(app.audit("logout").await.is_empty());
}

#[tokio::test]
async fn no_parameters_asks_then_signs_out() {
    let rp = setup().await;
    let app = &rp.app;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let (page, text) = confirmation(app, &app.client, "/logout").await;
    assert!(page.fields.is_empty());
    assert!(text.contains("form-action 'self';"), "no extra form target");
    let confirmed = post_confirm(app, &app.client, &page.form(Some(&page.csrf_token))).await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&confirmed).as_deref(), Some("/login?signed_out=1"));
    assert_cookie_cleared(&confirmed);
    assert_signed_out(&rp, &app.client).await;

    // Only `state`: asked, then the signed-out page (there is nowhere to return to).
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let (page, _) = confirmation(app, &app.client, "/logout?state=only").await;
    let confirmed = post_confirm(app, &app.client, &page.form(Some(&page.csrf_token))).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert!(location(&confirmed).is_none());
    assert!(
        confirmed
            .text()
            .await
            .expect("body")
            .contains("You are signed out")
    );
    assert!(!app.is_signed_in(&app.client).await);
    assert_eq!(app.audit("logout").await.len(), 2);
}

#[tokio::test]
async fn without_a_session_there_is_nothing_to_end() {
    let rp = setup().await;
    let app = &rp.app;
    let signed_in = sign_in(app, &rp.secret, &app.client).await;
    let fresh = app.new_browser();

    // A valid hint vouches for the registered target: straight back.
    let response = get(
        app,
        &fresh,
        &signed_in.logout_url(Some(LOGOUT_REDIRECT), Some("s1")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://app.example.com/signed-out?state=s1")
    );

    // Without a hint: no redirect, the signed-out page links back.
    let response = get(
        app,
        &fresh,
        &logout_path(&[
            ("client_id", "web-app"),
            ("post_logout_redirect_uri", LOGOUT_REDIRECT),
            ("state", "s2"),
        ]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(location(&response).is_none());
    let html = response.text().await.expect("body");
    assert!(html.contains("You are signed out"), "{html}");
    assert!(html.contains("Return to Acme Tracker"), "{html}");
    assert!(html.contains("signed-out?state=s2"), "{html}");

    let response = get(app, &fresh, "/logout").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("You are signed out")
    );

    // A bad target is refused with or without a session.
    let response = get(
        app,
        &fresh,
        &signed_in.logout_url(Some("https://evil.example/bye"), None),
    )
    .await;
    assert_refused(response, "no session, unregistered target").await;

    // Nothing ended: the other browser's session is intact, nothing audited.
    assert_still_signed_in(&rp, &app.client, "the signed-in browser").await;
}

#[tokio::test]
async fn a_form_post_becomes_the_same_request_as_a_get() {
    let rp = setup().await;
    let app = &rp.app;
    let signed_in = sign_in(app, &rp.secret, &app.client).await;
    let hint = signed_in.hint();
    // Posted from the application's page (no SameSite=Lax cookie would come along).
    let posted = rp_http()
        .post(app.url("/logout"))
        .header("origin", "https://app.example.com")
        .form(&[
            ("id_token_hint", hint.as_str()),
            ("post_logout_redirect_uri", LOGOUT_REDIRECT),
            ("state", "via-post"),
            ("ui_locales", "de"),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    let next = location(&posted).expect("location");
    assert!(next.starts_with("/logout?id_token_hint="), "{next}");
    assert!(!next.contains("ui_locales"), "{next}");
    assert!(
        app.is_signed_in(&app.client).await,
        "the POST itself ends nothing"
    );

    let response = get(app, &app.client, &next).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://app.example.com/signed-out?state=via-post")
    );
    assert_signed_out(&rp, &app.client).await;

    let empty = rp_http()
        .post(app.url("/logout"))
        .form(&[("logout_hint", "alice")])
        .send()
        .await
        .expect("POST");
    assert_eq!(location(&empty).as_deref(), Some("/logout"));
}

#[tokio::test]
async fn repeated_parameters_are_refused() {
    let rp = setup().await;
    let app = &rp.app;
    let signed_in = sign_in(app, &rp.secret, &app.client).await;
    let hint = signed_in.hint();
    let url = signed_in.logout_url(Some(LOGOUT_REDIRECT), Some("a"));
    let doubled = [
        format!("{url}&state=b"),
        format!("{url}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"),
        format!("{url}&id_token_hint={hint}"),
    ];
    for url in doubled {
        let response = get(app, &app.client, &url).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(location(&response).is_none());
    }
    let body = format!(
        "id_token_hint={hint}&post_logout_redirect_uri={}&state=a&state=b",
        urlencode(LOGOUT_REDIRECT)
    );
    let posted = app
        .client
        .post(app.url("/logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status(), StatusCode::BAD_REQUEST);
    assert!(location(&posted).is_none());
    let csrf = app.account_csrf(&app.client).await;
    let confirm = app
        .client
        .post(app.url("/logout/confirm"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf_token={csrf}&client_id=web-app&client_id=other-app"
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(confirm.status(), StatusCode::BAD_REQUEST);
    assert_still_signed_in(&rp, &app.client, "repeated parameters").await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn the_account_page_signs_out_through_the_confirmation_endpoint() {
    let rp = setup().await;
    let app = &rp.app;
    app.login_ok(&app.client, "alice", PASSWORD).await;
    let html = app
        .get(&app.client, "/account")
        .await
        .text()
        .await
        .expect("body");
    assert!(html.contains("action=\"/logout/confirm\""), "{html}");
    let csrf = app.account_csrf(&app.client).await;
    let response = app
        .post_form(&app.client, "/logout/confirm", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(location(&response).as_deref(), Some("/login?signed_out=1"));
    let rows = app.audit("logout").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].client_id, None);
    assert_eq!(rows[0].details["via"], "account");
    // The endpoint only takes posts.
    let as_get = app.get(&app.client, "/logout/confirm").await;
    assert_eq!(as_get.status(), StatusCode::METHOD_NOT_ALLOWED);
}

// A disabled (suspended, perhaps compromised) client is no longer a place to send users:
// its sign-out requests are refused like an unregistered client's, never redirected.
#[tokio::test]
async fn a_disabled_clients_logout_request_is_never_redirected() {
    use portcullis::clock::Clock as _;
    let rp = setup().await;
    let app = &rp.app;
    let hint = sign_in(app, &rp.secret, &app.client).await.hint();
    let id = portcullis::domain::client::ClientId::parse("web-app").expect("id");
    let now = app.clock.now();
    portcullis::clients::set_disabled(
        app.store.as_ref(),
        &id,
        true,
        now,
        &portcullis::audit::Actor::cli(),
    )
    .await
    .expect("disable");

    let cases = [
        (
            "client_id",
            vec![
                ("client_id", "web-app"),
                ("post_logout_redirect_uri", LOGOUT_REDIRECT),
            ],
        ),
        (
            "id_token_hint",
            vec![
                ("id_token_hint", hint.as_str()),
                ("post_logout_redirect_uri", LOGOUT_REDIRECT),
            ],
        ),
    ];
    for (case, params) in cases {
        let response = get(app, &app.client, &logout_path(&params)).await;
        assert_refused(response, case).await;
    }
}
