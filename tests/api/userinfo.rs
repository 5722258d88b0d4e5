//! The UserInfo endpoint verifies access tokens strictly (RFC 9068 §4, RFC 8725).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TestApp, WEB_REDIRECT, code, exchange, pkce, rp_http, spawn_app, web_app,
};

async fn tokens(app: &TestApp) -> Value {
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    let (_, secret) = app.register_client(web_app(true)).await;
    let p = pkce();
    let c = code(app, &app.client, &p, &[]).await;
    exchange(
        app,
        "web-app",
        secret.as_deref(),
        &c,
        WEB_REDIRECT,
        &p.verifier,
    )
    .await
    .json()
    .await
    .expect("tokens")
}

async fn userinfo(app: &TestApp, token: &str) -> reqwest::Response {
    rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /userinfo")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let decode = |s: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("b64")).expect("json")
    };
    let header = decode(it.next().expect("header"));
    let payload = decode(it.next().expect("payload"));
    (header, payload, it.next().expect("signature").to_owned())
}

async fn assert_invalid_token(app: &TestApp, token: &str, what: &str) {
    let response = userinfo(app, token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\""),
        "{what}: {challenge}"
    );
}

#[tokio::test]
async fn userinfo_answers_by_get_and_by_post_with_scope_claims() {
    let app = spawn_app().await;
    let t = tokens(&app).await;
    let access = t["access_token"].as_str().expect("token");

    let get: Value = userinfo(&app, access).await.json().await.expect("json");
    assert_eq!(get["preferred_username"], "alice");
    assert_eq!(get["name"], "Alice Example");
    assert_eq!(get["email"], "alice@example.com");
    assert_eq!(get["email_verified"], false);
    let post_header = rp_http()
        .post(app.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("POST");
    assert_eq!(post_header.status(), StatusCode::OK);
    let post_body = rp_http()
        .post(app.url("/userinfo"))
        .form(&[("access_token", access)])
        .send()
        .await
        .expect("POST");
    assert_eq!(post_body.status(), StatusCode::OK);
    let both = rp_http()
        .post(app.url("/userinfo"))
        .bearer_auth(access)
        .form(&[("access_token", access)])
        .send()
        .await
        .expect("POST");
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
    let none = rp_http()
        .get(app.url("/userinfo"))
        .send()
        .await
        .expect("GET");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\""
    );
}

#[tokio::test]
async fn forged_altered_expired_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let t = tokens(&app).await;
    let access = t["access_token"].as_str().expect("token").to_owned();
    let id_token = t["id_token"].as_str().expect("id token").to_owned();
    let (header, payload, signature) = parts(&access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    assert!(header["kid"].is_string());
    assert_eq!(userinfo(&app, &access).await.status(), StatusCode::OK);

    // alg: none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]})),
        b64(&payload)
    );
    assert_invalid_token(&app, &none, "alg none").await;

    // HS256 keyed with the public key (algorithm confusion).
    let jwks: Value = rp_http()
        .get(app.url("/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let jwk = &jwks["keys"][0];
    let n = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().expect("n"))
        .expect("n bytes");
    for secret in [n, jwk.to_string().into_bytes()] {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = header["kid"].as_str().map(str::to_owned);
        h.typ = Some("at+jwt".into());
        let forged = jsonwebtoken::encode(
            &h,
            &payload,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .expect("hs256");
        assert_invalid_token(&app, &forged, "HS256 with the public key").await;
    }

    // A tampered payload under the original signature.
    let mut tampered = payload.clone();
    tampered["scope"] = json!("openid profile email admin");
    let altered = format!("{}.{}.{}", b64(&header), b64(&tampered), signature);
    assert_invalid_token(&app, &altered, "tampered payload").await;

    // An unknown kid.
    let mut other_kid = header.clone();
    other_kid["kid"] = json!("not-a-key");
    let unknown = format!("{}.{}.{}", b64(&other_kid), b64(&payload), signature);
    assert_invalid_token(&app, &unknown, "unknown kid").await;

    // The ID token is not an access token (typ JWT, audience the client).
    assert_invalid_token(&app, &id_token, "an ID token").await;

    // Correctly signed by our own key, but for another issuer.
    let master = portcullis::keys::MasterKey::load(&app.settings.keys).expect("master key");
    let ring = portcullis::keys::KeyRing::load_or_init(
        app.store.clone(),
        master,
        std::sync::Arc::new(app.clock.clone()),
    )
    .await
    .expect("key ring");
    let mut foreign = payload.clone();
    foreign["iss"] = json!("https://evil.example");
    let signed = ring.sign("at+jwt", &foreign).expect("sign");
    assert_invalid_token(&app, &signed, "another issuer").await;
    let mut wrong_aud = payload.clone();
    wrong_aud["aud"] = json!("https://api.example.com");
    assert_invalid_token(
        &app,
        &ring.sign("at+jwt", &wrong_aud).expect("sign"),
        "another audience",
    )
    .await;
    // The same claims signed the same way are fine: the checks above are what failed.
    assert_eq!(
        userinfo(&app, &ring.sign("at+jwt", &payload).expect("sign"))
            .await
            .status(),
        StatusCode::OK
    );

    // Expired.
    app.clock.advance(time::Duration::minutes(11));
    assert_invalid_token(&app, &access, "expired").await;
}

#[tokio::test]
async fn the_authorization_header_is_read_strictly() {
    let app = spawn_app().await;
    let t = tokens(&app).await;
    let access = t["access_token"].as_str().expect("token");
    let send = |value: reqwest::header::HeaderValue| {
        rp_http()
            .get(app.url("/userinfo"))
            .header("authorization", value)
            .send()
    };
    // RFC 9110 §11.1: the scheme is case-insensitive.
    let lower = send(format!("bearer {access}").parse().expect("value"))
        .await
        .expect("GET");
    assert_eq!(lower.status(), StatusCode::OK);
    let cases: [(&[u8], &str); 4] = [
        (b"Basic YWxpY2U6c2VjcmV0", "use the Bearer scheme"),
        (b"Bearer", "use the Bearer scheme"),
        (b"Bearer    ", "use the Bearer scheme"),
        (b"Bearer \xc3\xa9", "malformed Authorization header"),
    ];
    for (value, description) in cases {
        let value = reqwest::header::HeaderValue::from_bytes(value).expect("value");
        let response = send(value.clone()).await.expect("GET");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{value:?}");
        assert_eq!(
            response.headers()["www-authenticate"],
            format!(
                "Bearer realm=\"portcullis\", error=\"invalid_request\", \
                 error_description=\"{description}\""
            )
            .as_str(),
            "{value:?}"
        );
    }
}
