//! ES256 and EdDSA next to RS256: per-client `id_token_signed_response_alg` (OpenID Connect
//! Registration §2), ID tokens checked by a certified library, discovery, the JWKS, and
//! algorithm confusion across key types.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, TokenResponse,
};
use portcullis::clients::Registration;
use portcullis::domain::jws::SigningAlg;
use portcullis::domain::signing_key::KeyState;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TestApp, WEB_REDIRECT, follow, query, rp_http, spawn_app_with, web_app,
};

const ALL: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];

async fn app() -> TestApp {
    let app = spawn_app_with(|s| s.keys.algorithms = ALL.to_vec()).await;
    app.create_user_named("alice", Some("Alice Example"), PASSWORD)
        .await;
    app
}

fn client_for(alg: Option<SigningAlg>, id: &str) -> Registration {
    Registration {
        client_id: Some(id.into()),
        id_token_signed_response_alg: alg,
        ..web_app(true)
    }
}

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

async fn jwks(app: &TestApp) -> Vec<Value> {
    let jwks: Value = rp_http()
        .get(app.url("/jwks.json"))
        .send()
        .await
        .expect("GET /jwks.json")
        .json()
        .await
        .expect("json");
    jwks["keys"].as_array().expect("keys").clone()
}

async fn current_kid(app: &TestApp, alg: SigningAlg) -> String {
    app.store
        .list_signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .find(|k| k.state == KeyState::Current && k.alg == alg)
        .expect("a current key")
        .kid
}

/// A full authorization code flow driven by the `openidconnect` crate, which verifies the
/// ID token (signature from the discovered JWKS, restricted to `expected`, nonce, at_hash).
/// Returns the raw ID and access tokens.
async fn certified_login(
    app: &TestApp,
    client_id: &str,
    secret: String,
    expected: CoreJwsSigningAlgorithm,
) -> (String, String) {
    let http = rp_http();
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.settings.issuer.clone()).expect("issuer"),
        &http,
    )
    .await
    .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.into()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(RedirectUrl::new(WEB_REDIRECT.into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let browser = app.new_browser();
    let back = follow(app, &browser, auth_url.as_str(), WEB_REDIRECT, "allow").await;
    let code = query(&back, "code").expect("code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![expected.clone()]);
    let claims = id_token
        .claims(&verifier, &nonce)
        .unwrap_or_else(|e| panic!("{expected:?} ID token refused: {e}"));
    assert_eq!(id_token.signing_alg().expect("alg"), &expected);
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&verifier).expect("key"),
    )
    .expect("hash");
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    assert_eq!(claims.audiences().len(), 1);
    if expected != CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 {
        // The library really checks `alg`: restricted to RS256, it refuses the token.
        let rs256_only = client
            .id_token_verifier()
            .set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
        assert!(id_token.claims(&rs256_only, &nonce).is_err());
    }
    (id_token.to_string(), tokens.access_token().secret().clone())
}

#[tokio::test]
async fn es256_and_eddsa_id_tokens_verify_with_a_certified_library() {
    let app = app().await;
    let cases = [
        (
            "rs-app",
            None,
            SigningAlg::RS256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ),
        (
            "es-app",
            Some(SigningAlg::ES256),
            SigningAlg::ES256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ),
        (
            "ed-app",
            Some(SigningAlg::EdDSA),
            SigningAlg::EdDSA,
            CoreJwsSigningAlgorithm::EdDsa,
        ),
    ];
    let rs_kid = current_kid(&app, SigningAlg::RS256).await;
    for (client_id, registered, alg, library_alg) in cases {
        let (client, secret) = app.register_client(client_for(registered, client_id)).await;
        assert_eq!(client.id_token_signed_response_alg, alg);
        let (id_token, access_token) =
            certified_login(&app, client_id, secret.expect("secret"), library_alg).await;
        let header = header_of(&id_token);
        assert_eq!(header["alg"], alg.as_str(), "{client_id}");
        assert_eq!(header["kid"], current_kid(&app, alg).await.as_str());
        // Access tokens are RS256 whatever the client's ID token algorithm.
        let header = header_of(&access_token);
        assert_eq!(
            (header["alg"].as_str(), header["kid"].as_str()),
            (Some("RS256"), Some(rs_kid.as_str()))
        );
        let userinfo = rp_http()
            .get(app.url("/userinfo"))
            .bearer_auth(&access_token)
            .send()
            .await
            .expect("userinfo");
        assert_eq!(userinfo.status(), StatusCode::OK);
        // Our own verifier accepts the ID token as an id_token_hint.
        // The test browser has no session: a valid hint gets login_required, a tampered
        // one invalid_request.
        let mut tampered = id_token.clone().into_bytes();
        let at = id_token.rfind('.').expect("signature") + 10;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        for (hint, error) in [
            (&id_token, "login_required"),
            (&tampered, "invalid_request"),
        ] {
            let response = app
                .get(
                    &app.client,
                    &format!(
                        "/authorize?{}",
                        serde_urlencoded::to_string([
                            ("response_type", "code"),
                            ("client_id", client_id),
                            ("redirect_uri", WEB_REDIRECT),
                            ("scope", "openid"),
                            ("code_challenge", crate::helpers::pkce().challenge.as_str()),
                            ("code_challenge_method", "S256"),
                            ("prompt", "none"),
                            ("id_token_hint", hint.as_str()),
                        ])
                        .expect("query")
                    ),
                )
                .await;
            let location = response.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            let location = url::Url::parse(&location).expect("url");
            assert_eq!(
                query(&location, "error").as_deref(),
                Some(error),
                "{client_id}"
            );
        }
    }
    assert_eq!(app.audit("token.issued").await.len(), 3);
}

#[tokio::test]
async fn discovery_and_the_jwks_list_every_configured_algorithm() {
    let app = app().await;
    let doc: Value = rp_http()
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256", "EdDSA"])
    );
    let keys = jwks(&app).await;
    let mut by_type: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for key in &keys {
        let s = |m: &str| key[m].as_str().unwrap_or("-").to_owned();
        *by_type.entry((s("kty"), s("crv"), s("alg"))).or_default() += 1;
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{private} published");
        }
    }
    assert_eq!(
        by_type,
        BTreeMap::from([
            (("EC".into(), "P-256".into(), "ES256".into()), 2),
            (("OKP".into(), "Ed25519".into(), "EdDSA".into()), 2),
            (("RSA".into(), "-".into(), "RS256".into()), 2),
        ])
    );

    // The default configuration advertises RS256 only.
    let plain = crate::helpers::spawn_app().await;
    let doc: Value = rp_http()
        .get(plain.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(jwks(&plain).await.len(), 2);
}

#[tokio::test]
async fn an_access_token_presented_under_another_key_types_kid_is_refused() {
    let app = app().await;
    let (_, secret) = app.register_client(client_for(None, "rs-app")).await;
    let (_, access) = certified_login(
        &app,
        "rs-app",
        secret.expect("secret"),
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
    let parts: Vec<&str> = access.split('.').collect();
    for alg in [SigningAlg::ES256, SigningAlg::EdDSA] {
        let kid = current_kid(&app, alg).await;
        for header_alg in ["RS256", alg.as_str(), "HS256", "none"] {
            let mut header = header_of(&access);
            header["kid"] = json!(kid);
            header["alg"] = json!(header_alg);
            let forged = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                parts[1],
                parts[2]
            );
            let response = rp_http()
                .get(app.url("/userinfo"))
                .bearer_auth(&forged)
                .send()
                .await
                .expect("userinfo");
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{alg} kid, {header_alg}"
            );
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .expect("header")
                .to_owned();
            assert!(challenge.contains("invalid_token"), "{challenge}");
        }
    }
    // The control: the untouched token works.
    let response = rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(response.status(), StatusCode::OK);
}

fn portcullis(app: &TestApp, algorithms: &str, args: &[&str]) -> Output {
    crate::helpers::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env("PORTCULLIS__DATABASE__URL", &app.db.url)
            .env(
                "PORTCULLIS__KEYS__MASTER_KEY_FILE",
                &app.settings.keys.master_key_file,
            )
            .env("PORTCULLIS__KEYS__GENERATE_MASTER_KEY", "false")
            .env("PORTCULLIS__KEYS__ALGORITHMS", algorithms)
            .env_remove("PORTCULLIS_MASTER_KEY")
            .env_remove("PORTCULLIS_ENV")
            .env_remove("RUST_LOG"),
        "",
    )
}

#[tokio::test]
async fn clients_create_takes_only_a_configured_id_token_algorithm() {
    let app = app().await;
    let create = |id: &'static str, alg: &'static str| {
        [
            "clients",
            "create",
            "--name",
            "App",
            "--kind",
            "confidential",
            "--redirect-uri",
            WEB_REDIRECT,
            "--client-id",
            id,
            "--id-token-alg",
            alg,
            "--json",
        ]
    };
    // Not in keys.algorithms (RS256 only for this command): refused, nothing created.
    let out = portcullis(&app, "RS256", &create("es-app", "ES256"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("id_token_signed_response_alg must be one of keys.algorithms"),
        "{stderr}"
    );
    assert!(stderr.contains("--id-token-alg"), "{stderr}");
    // Not an algorithm at all: a usage error.
    let out = portcullis(&app, "RS256,ES256", &create("hs-app", "HS256"));
    assert_eq!(out.status.code(), Some(2));
    let out = portcullis(&app, "RS256,ES256", &create("lower-app", "es256"));
    assert_eq!(out.status.code(), Some(2));
    let listed = app.store.list_clients(10).await.expect("clients");
    assert!(listed.is_empty(), "{listed:?}");
    assert!(app.audit("client.created").await.is_empty());

    // Configured (the list parsed from the environment): accepted and stored.
    let out = portcullis(&app, "RS256,ES256", &create("es-app", "ES256"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(created["id_token_signed_response_alg"], "ES256");
    let stored = app
        .store
        .find_client(&portcullis::domain::client::ClientId::parse("es-app").expect("id"))
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.id_token_signed_response_alg, SigningAlg::ES256);
    // Without the flag: RS256.
    let out = portcullis(
        &app,
        "RS256",
        &[
            "clients",
            "create",
            "--name",
            "Plain",
            "--kind",
            "spa",
            "--redirect-uri",
            WEB_REDIRECT,
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(created["id_token_signed_response_alg"], "RS256");

    // A bad keys.algorithms is a configuration error naming the key.
    for bad in ["ES256", "RS256,RS256", "RS256,HS256"] {
        let out = portcullis(&app, bad, &["keys", "list"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("keys.algorithms"), "{bad}: {stderr}");
    }
}

#[tokio::test]
async fn keys_rotate_covers_every_algorithm_or_one() {
    let app = app().await;
    let before: Vec<String> = {
        let mut v = Vec::new();
        for alg in ALL {
            v.push(current_kid(&app, alg).await);
        }
        v
    };
    let out = portcullis(
        &app,
        "RS256,ES256,EdDSA",
        &["keys", "rotate", "--alg", "EdDSA", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rotated.as_array().map(Vec::len), Some(1));
    assert_eq!(rotated[0]["alg"], "EdDSA");
    assert_eq!(rotated[0]["retired"], before[2].as_str());
    assert_eq!(current_kid(&app, SigningAlg::RS256).await, before[0]);
    assert_eq!(current_kid(&app, SigningAlg::ES256).await, before[1]);

    let out = portcullis(&app, "RS256,ES256,EdDSA", &["keys", "rotate", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).expect("json");
    let algs: Vec<&str> = rotated
        .as_array()
        .expect("array")
        .iter()
        .map(|o| {
            assert_eq!(o["outcome"], "rotated");
            o["alg"].as_str().expect("alg")
        })
        .collect();
    assert_eq!(algs, ["RS256", "ES256", "EdDSA"]);
    assert_eq!(app.audit("key.rotated").await.len(), 4);

    // keys list shows algorithm, state and dates for every key.
    let out = portcullis(&app, "RS256", &["keys", "list", "--json"]);
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 3 * 2 + 4);
    for key in listed {
        assert!(["RS256", "ES256", "EdDSA"].contains(&key["alg"].as_str().expect("alg")));
        assert!(key["created_at"].is_string());
        match key["state"].as_str().expect("state") {
            "current" => assert!(key["activated_at"].is_string()),
            "next" => assert!(key["activated_at"].is_null()),
            "retired" => assert!(key["retired_at"].is_string() && key["remove_after"].is_string()),
            other => panic!("state {other}"),
        }
    }
    let out = portcullis(&app, "RS256", &["keys", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EdDSA retired") && text.contains("ES256 current"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dropped_algorithm_is_removed_by_retiring_its_keys_without_successors() {
    let app = app().await;
    let keys = app.store.list_signing_keys().await.expect("keys");
    let of = |state: KeyState| {
        keys.iter()
            .find(|k| k.alg == SigningAlg::EdDSA && k.state == state)
            .map(|k| k.kid.clone())
            .expect("an EdDSA key")
    };
    let (current, next) = (of(KeyState::Current), of(KeyState::Next));
    let eddsa_rows = |app: &TestApp| {
        let store = app.store.clone();
        async move {
            store
                .list_signing_keys()
                .await
                .expect("keys")
                .into_iter()
                .filter(|k| k.alg == SigningAlg::EdDSA && k.state != KeyState::Retired)
                .count()
        }
    };

    // Without --no-successor a retired key is always replaced, whatever the command's
    // configuration says (a forgotten variable must not leave an algorithm unsigned).
    let out = portcullis(
        &app,
        "RS256,ES256",
        &["keys", "retire", "--kid", &next, "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replaced: Value = serde_json::from_slice(&out.stdout).expect("json");
    let next = replaced["next"].as_str().expect("a replacement").to_owned();
    // --no-successor is refused while the algorithm is configured...
    let out = portcullis(
        &app,
        "RS256,ES256,EdDSA",
        &["keys", "retire", "--kid", &next, "--no-successor"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in keys.algorithms"));

    // ...and removes a dropped algorithm: next key, then current key, no successors.
    for kid in [&next, &current] {
        let out = portcullis(
            &app,
            "RS256,ES256",
            &["keys", "retire", "--kid", kid, "--no-successor", "--json"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(result["outcome"], "retired", "{result}");
        assert_eq!(result["promoted"], Value::Null, "{result}");
        assert_eq!(result["next"], Value::Null, "{result}");
    }
    assert_eq!(eddsa_rows(&app).await, 0);

    // Restarted without EdDSA, the server publishes no EdDSA key and creates none.
    let app = app
        .restart_with(|s| s.keys.algorithms = vec![SigningAlg::RS256, SigningAlg::ES256])
        .await;
    let published: Vec<String> = jwks(&app)
        .await
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect();
    assert!(!published.contains(&current) && !published.contains(&next));
    assert!(
        jwks(&app).await.iter().all(|k| k["crv"] != "Ed25519"),
        "no EdDSA key is published"
    );
    assert_eq!(eddsa_rows(&app).await, 0);
}
