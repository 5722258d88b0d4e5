//! Passkeys (issue 12 item 1): registration on the account page, sign-in without a
//! password, the passkey as the second step, and what bad input gets. A software
//! authenticator below (ES256, `none` attestation, WebAuthn Level 3 §6.1 authenticator
//! data) answers the ceremonies; the server runs with the issuer `http://localhost:PORT`
//! (an IP address cannot be a relying party id).

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::audit::Actor;
use portcullis::clock::Clock as _;
use portcullis::domain::user::User;
use portcullis::keys::MasterKey;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{
    PASSWORD, TestApp, hidden_field, session_cookie_name, set_cookie, spawn_app_with,
};

async fn passkey_app() -> TestApp {
    spawn_app_with(|s| s.issuer = "http://localhost".into()).await
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    match bytes.len() {
        n if n < 24 => out.push(0x40 | n as u8),
        n if n < 256 => out.extend([0x58, n as u8]),
        n => {
            out.push(0x59);
            out.extend((n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(bytes);
}

fn cbor_text(out: &mut Vec<u8>, text: &str) {
    out.push(0x60 | text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// A software authenticator holding one discoverable ES256 credential.
struct Authenticator {
    key: EcdsaKeyPair,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
    counter: u32,
    rp_id: String,
    origin: String,
}

impl Authenticator {
    fn new(app: &TestApp) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .expect("key pair");
        let origin = app.settings.issuer_origin();
        Self {
            key,
            credential_id: rand::random::<[u8; 16]>().to_vec(),
            user_handle: Vec::new(),
            counter: 0,
            rp_id: "localhost".into(),
            origin,
        }
    }

    fn cose_key(&self) -> Vec<u8> {
        let public = self.key.public_key().as_ref();
        let (x, y) = (&public[1..33], &public[33..65]);
        // {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cbor_bytes(&mut out, x);
        out.push(0x22);
        cbor_bytes(&mut out, y);
        out
    }

    fn auth_data(&self, rp_id: &str, flags: u8, attested: bool) -> Vec<u8> {
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        data.push(flags | if attested { 0x40 } else { 0 });
        data.extend(self.counter.to_be_bytes());
        if attested {
            data.extend([0u8; 16]);
            data.extend((self.credential_id.len() as u16).to_be_bytes());
            data.extend(&self.credential_id);
            data.extend(self.cose_key());
        }
        data
    }

    fn client_data(&self, kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": origin,
            "crossOrigin": false,
        }))
        .expect("json")
    }

    /// The response to creation options (`navigator.credentials.create()`).
    fn register(&mut self, options: &Value) -> String {
        self.register_with(options, None, None)
    }

    fn register_with(
        &mut self,
        options: &Value,
        origin: Option<&str>,
        rp_id: Option<&str>,
    ) -> String {
        let pk = &options["publicKey"];
        let challenge = pk["challenge"].as_str().expect("challenge");
        self.user_handle = URL_SAFE_NO_PAD
            .decode(pk["user"]["id"].as_str().expect("user id"))
            .expect("user id");
        let origin = origin.map_or_else(|| self.origin.clone(), str::to_owned);
        let client_data = self.client_data("webauthn.create", challenge, &origin);
        let rp_id = rp_id.map_or_else(|| self.rp_id.clone(), str::to_owned);
        let auth_data = self.auth_data(&rp_id, 0x05, true);
        let mut attestation = vec![0xa3];
        cbor_text(&mut attestation, "fmt");
        cbor_text(&mut attestation, "none");
        cbor_text(&mut attestation, "attStmt");
        attestation.push(0xa0);
        cbor_text(&mut attestation, "authData");
        cbor_bytes(&mut attestation, &auth_data);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&client_data),
            },
            "extensions": {},
        })
        .to_string()
    }

    /// The response to request options (`navigator.credentials.get()`), for `challenge`.
    fn assert(&mut self, challenge: &str) -> String {
        self.assert_with(challenge, None, 0x05)
    }

    fn assert_with(&mut self, challenge: &str, origin: Option<&str>, flags: u8) -> String {
        self.counter += 1;
        let origin = origin.map_or_else(|| self.origin.clone(), str::to_owned);
        let client_data = self.client_data("webauthn.get", challenge, &origin);
        let auth_data = self.auth_data(&self.rp_id.clone(), flags, false);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let signature = self
            .key
            .sign(&SystemRandom::new(), &signed)
            .expect("signature");
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.as_ref()),
                "userHandle": b64(&self.user_handle),
            },
            "extensions": {},
        })
        .to_string()
    }
}

fn challenge_of(options: &Value) -> String {
    options["publicKey"]["challenge"]
        .as_str()
        .expect("challenge")
        .to_owned()
}

async fn json_of(response: Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK, "options");
    response.json().await.expect("json")
}

/// Signs `user` in with the password and registers a passkey from the account page.
async fn enroll_passkey(app: &TestApp, user: &User, name: &str) -> (Client, Authenticator) {
    let client = app.new_browser();
    app.login_ok(&client, user.username.as_str(), PASSWORD)
        .await;
    let mut authenticator = Authenticator::new(app);
    let csrf = app.account_csrf(&client).await;
    let options = json_of(
        app.post_form(
            &client,
            "/account/passkeys/options",
            &[("csrf_token", &csrf)],
        )
        .await,
    )
    .await;
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"], "required",
        "{options}"
    );
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    let credential = authenticator.register(&options);
    let response = app
        .post_form(
            &client,
            "/account/passkeys",
            &[
                ("csrf_token", &csrf),
                ("name", name),
                ("credential", &credential),
            ],
        )
        .await;
    assert!(
        response.status() == StatusCode::OK || response.status() == StatusCode::SEE_OTHER,
        "{}",
        response.status()
    );
    (client, authenticator)
}

struct SignInForm {
    tx: String,
    csrf: String,
}

async fn sign_in_form(app: &TestApp, client: &Client) -> SignInForm {
    let form = app.login_form(client).await;
    SignInForm {
        tx: form.tx,
        csrf: form.csrf_token,
    }
}

async fn login_options(app: &TestApp, client: &Client, form: &SignInForm) -> Response {
    app.post_form(
        client,
        "/login/passkey/options",
        &[("tx", &form.tx), ("csrf_token", &form.csrf)],
    )
    .await
}

async fn post_assertion(
    app: &TestApp,
    client: &Client,
    form: &SignInForm,
    credential: &str,
) -> Response {
    app.post_form(
        client,
        "/login/passkey",
        &[
            ("tx", &form.tx),
            ("csrf_token", &form.csrf),
            ("credential", credential),
        ],
    )
    .await
}

async fn passkey_count(app: &TestApp, user: &User) -> usize {
    app.factors()
        .passkeys(user.id)
        .await
        .expect("passkeys")
        .len()
}

#[tokio::test]
async fn a_passkey_registered_on_the_account_page_signs_in_without_a_password() {
    let app = passkey_app().await;
    let user = app.create_user("alice", PASSWORD).await;
    let (account, mut authenticator) = enroll_passkey(&app, &user, "Laptop").await;
    assert_eq!(passkey_count(&app, &user).await, 1);
    // The first factor came with recovery codes, and the page lists the passkey.
    assert_eq!(
        app.factors()
            .recovery_codes(user.id)
            .await
            .expect("codes")
            .remaining,
        10
    );
    let page = app
        .get(&account, "/account")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("Laptop"), "{page}");
    assert!(page.contains("/static/passkeys.js"), "{page}");
    let enrolled = app.audit("factor.enrolled").await;
    assert_eq!(enrolled[0].details["kind"], "passkey");

    // The sign-in page offers the button and autofill.
    let client = app.new_browser();
    let login_page = app.get(&client, "/login").await;
    // The page's script may fetch its options from this origin, and nothing more.
    let csp = login_page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe"),
        "{csp}"
    );
    let html = login_page.text().await.expect("login page");
    assert!(html.contains("Sign in with a passkey"), "{html}");
    assert!(
        html.contains("autocomplete=\"username webauthn\""),
        "{html}"
    );
    let form = SignInForm {
        tx: hidden_field(&html, "tx").expect("tx"),
        csrf: hidden_field(&html, "csrf_token").expect("csrf"),
    };
    let options = json_of(login_options(&app, &client, &form).await).await;
    assert_eq!(options["publicKey"]["userVerification"], "required");
    assert!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{options}"
    );
    let credential = authenticator.assert(&challenge_of(&options));
    let response = post_assertion(&app, &client, &form, &credential).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/account");
    assert!(set_cookie(&response, session_cookie_name(&app)).is_some());
    assert!(app.is_signed_in(&client).await);
    let success = app.audit("login.success").await;
    // Newest first.
    let last = success.first().expect("login.success");
    assert_eq!(last.details["amr"], json!(["hwk", "user", "mfa"]));
    // The use is recorded.
    let passkeys = app.factors().passkeys(user.id).await.expect("passkeys");
    assert!(passkeys[0].factor.last_used_at.is_some());
}

#[tokio::test]
async fn a_passkey_is_a_second_factor_after_the_password() {
    let app = passkey_app().await;
    let user = app.create_user("bob", PASSWORD).await;
    let (_, mut authenticator) = enroll_passkey(&app, &user, "Key").await;

    // Right password: the code page offers the passkey, limited to the user's own.
    let client = app.new_browser();
    let form = sign_in_form(&app, &client).await;
    let response = app
        .submit_login(
            &client,
            &crate::helpers::LoginForm {
                tx: form.tx.clone(),
                csrf_token: form.csrf.clone(),
            },
            "bob",
            PASSWORD,
        )
        .await;
    let page = response.text().await.expect("page");
    assert!(page.contains("Use your passkey"), "{page}");
    let options = json_of(login_options(&app, &client, &form).await).await;
    let allowed = options["publicKey"]["allowCredentials"]
        .as_array()
        .expect("allowCredentials")
        .clone();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["id"], b64(&authenticator.credential_id));
    assert_eq!(options["publicKey"]["userVerification"], "preferred");
    let credential = authenticator.assert(&challenge_of(&options));
    let response = post_assertion(&app, &client, &form, &credential).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let success = app.audit("login.success").await;
    // Newest first.
    let last = success.first().expect("login.success");
    assert_eq!(last.details["amr"], json!(["hwk", "pwd", "user", "mfa"]));
    assert_eq!(last.details["second_factor"], "passkey");

    // Wrong password: the passkey is still offered, and a valid assertion fails like a
    // wrong one (the page says nothing about the password).
    let client = app.new_browser();
    let form = sign_in_form(&app, &client).await;
    let page = app
        .submit_login(
            &client,
            &crate::helpers::LoginForm {
                tx: form.tx.clone(),
                csrf_token: form.csrf.clone(),
            },
            "bob",
            "not the password",
        )
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("Use your passkey"), "{page}");
    let options = json_of(login_options(&app, &client, &form).await).await;
    let credential = authenticator.assert(&challenge_of(&options));
    let after_wrong_password = post_assertion(&app, &client, &form, &credential).await;
    assert_eq!(after_wrong_password.status(), StatusCode::BAD_REQUEST);
    let after_wrong_password = after_wrong_password.text().await.expect("page");
    assert!(!app.is_signed_in(&client).await);

    // A wrong assertion with the right password gets the same page.
    let client = app.new_browser();
    let form = sign_in_form(&app, &client).await;
    app.submit_login(
        &client,
        &crate::helpers::LoginForm {
            tx: form.tx.clone(),
            csrf_token: form.csrf.clone(),
        },
        "bob",
        PASSWORD,
    )
    .await;
    let options = json_of(login_options(&app, &client, &form).await).await;
    let wrong =
        authenticator.assert_with(&challenge_of(&options), Some("https://evil.example"), 0x05);
    let after_wrong_passkey = post_assertion(&app, &client, &form, &wrong).await;
    assert_eq!(after_wrong_passkey.status(), StatusCode::BAD_REQUEST);
    let after_wrong_passkey = after_wrong_passkey.text().await.expect("page");
    let strip = |page: &str| {
        page.lines()
            .filter(|l| !l.contains("name=\"tx\"") && !l.contains("name=\"csrf_token\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&after_wrong_password), strip(&after_wrong_passkey));
    assert!(after_wrong_passkey.contains("Your passkey was not accepted"));
    let failures = app.audit("second_factor.failure").await;
    let reasons: Vec<&str> = failures
        .iter()
        .map(|f| f.details["reason"].as_str().unwrap_or_default())
        .collect();
    // Newest first.
    assert_eq!(reasons, ["wrong_code", "bad_password"]);

    // As the second factor the request asks for user verification "preferred", but a
    // credential registered with user verification (every passkey here) must keep
    // verifying its user (webauthn-rs enforces the registration's policy): an assertion
    // without the UV flag is refused like a wrong passkey.
    let client = app.new_browser();
    let form = sign_in_form(&app, &client).await;
    app.submit_login(
        &client,
        &crate::helpers::LoginForm {
            tx: form.tx.clone(),
            csrf_token: form.csrf.clone(),
        },
        "bob",
        PASSWORD,
    )
    .await;
    let options = json_of(login_options(&app, &client, &form).await).await;
    let presence_only = authenticator.assert_with(&challenge_of(&options), None, 0x01);
    let response = post_assertion(&app, &client, &form, &presence_only).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!app.is_signed_in(&client).await);
}

#[tokio::test]
async fn bad_registrations_get_clear_errors_and_store_nothing() {
    let app = passkey_app().await;
    let user = app.create_user("carol", PASSWORD).await;
    let client = app.new_browser();
    app.login_ok(&client, "carol", PASSWORD).await;
    let csrf = app.account_csrf(&client).await;
    let mut authenticator = Authenticator::new(&app);

    // The options need the session's CSRF token, and the session.
    let response = app
        .post_form(
            &client,
            "/account/passkeys/options",
            &[("csrf_token", "nope")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let anonymous = app.new_browser();
    let response = app
        .post_form(
            &anonymous,
            "/account/passkeys/options",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert!(response.status().is_redirection() || response.status().is_client_error());
    assert_ne!(response.status(), StatusCode::OK);
    // A post from another origin is refused before anything else (`SameOrigin`).
    let cross_site = crate::helpers::browser("https://evil.example");
    let response = app
        .post_form(
            &cross_site,
            "/account/passkeys/options",
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .post_form(
            &cross_site,
            "/login/passkey/options",
            &[("tx", "x"), ("csrf_token", "x")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let options = || async {
        json_of(
            app.post_form(
                &client,
                "/account/passkeys/options",
                &[("csrf_token", &csrf)],
            )
            .await,
        )
        .await
    };
    let register = |credential: String| {
        let client = client.clone();
        let csrf = csrf.clone();
        let app = &app;
        async move {
            app.post_form(
                &client,
                "/account/passkeys",
                &[
                    ("csrf_token", &csrf),
                    ("name", "Key"),
                    ("credential", &credential),
                ],
            )
            .await
        }
    };

    // Malformed JSON.
    options().await;
    let response = register("{not json".into()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .expect("page")
            .contains("The passkey response could not be read")
    );
    // A response for another challenge.
    options().await;
    let other = json!({"publicKey": {"challenge": b64(&[7u8; 32]), "user": {"id": b64(user.id.0.as_bytes())}}});
    let response = register(authenticator.register(&other)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // A wrong origin in clientDataJSON, a wrong RP ID in the authenticator data.
    let o = options().await;
    let response =
        register(authenticator.register_with(&o, Some("http://evil.example"), None)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let o = options().await;
    let response = register(authenticator.register_with(&o, None, Some("evil.example"))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // An oversized body.
    options().await;
    let response = register("x".repeat(2 * 1024 * 1024)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Without the CSRF token.
    let o = options().await;
    let good = authenticator.register(&o);
    let response = app
        .post_form(
            &client,
            "/account/passkeys",
            &[("csrf_token", "nope"), ("credential", &good)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(passkey_count(&app, &user).await, 0);
    assert!(app.audit("factor.enrolled").await.is_empty());

    // The ceremony state serves one response: a good one, then the same again. (The
    // account has a factor now, so this password-only session is first sent to step up;
    // nothing is added either way.)
    let o = options().await;
    let good = authenticator.register(&o);
    let response = register(good.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = register(good).await;
    assert!(
        response.status() == StatusCode::BAD_REQUEST
            || response.headers()["location"]
                .to_str()
                .is_ok_and(|l| l.starts_with("/login?tx=")),
        "{}",
        response.status()
    );
    assert_eq!(passkey_count(&app, &user).await, 1);
}

#[tokio::test]
async fn bad_assertions_get_clear_errors_and_sign_nobody_in() {
    let app = passkey_app().await;
    let user = app.create_user("dave", PASSWORD).await;
    let (_, mut authenticator) = enroll_passkey(&app, &user, "Key").await;
    let client = app.new_browser();
    let form = sign_in_form(&app, &client).await;

    // The options need the transaction and its CSRF token.
    let response = app
        .post_form(
            &client,
            "/login/passkey/options",
            &[("tx", &form.tx), ("csrf_token", "nope")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .post_form(
            &client,
            "/login/passkey/options",
            &[("tx", "unknown"), ("csrf_token", &form.csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let other_browser = app.new_browser();
    let response = login_options(&app, &other_browser, &form).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // No ceremony yet.
    let response = post_assertion(&app, &client, &form, &authenticator.assert("abc")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Malformed JSON.
    login_options(&app, &client, &form).await;
    let response = post_assertion(&app, &client, &form, "[1, 2").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Another challenge.
    login_options(&app, &client, &form).await;
    let response = post_assertion(
        &app,
        &client,
        &form,
        &authenticator.assert(&b64(&[9u8; 32])),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // A wrong origin.
    let options = json_of(login_options(&app, &client, &form).await).await;
    let wrong =
        authenticator.assert_with(&challenge_of(&options), Some("http://localhost:1"), 0x05);
    let response = post_assertion(&app, &client, &form, &wrong).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Without user verification (UP only): not a passwordless sign-in.
    let options = json_of(login_options(&app, &client, &form).await).await;
    let no_uv = authenticator.assert_with(&challenge_of(&options), None, 0x01);
    let response = post_assertion(&app, &client, &form, &no_uv).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // An oversized body.
    login_options(&app, &client, &form).await;
    let response = post_assertion(&app, &client, &form, &"x".repeat(2 * 1024 * 1024)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!app.is_signed_in(&client).await);
    let failures = app.audit("login.failure").await;
    assert!(
        failures
            .iter()
            .all(|f| f.details["method"] == "passkey" && f.details["reason"] == "invalid_passkey"),
        "{failures:?}"
    );
    assert_eq!(failures.len(), 3);

    // A good assertion for a ceremony already used (by a failed attempt) is refused.
    let options = json_of(login_options(&app, &client, &form).await).await;
    let challenge = challenge_of(&options);
    let response = post_assertion(
        &app,
        &client,
        &form,
        &authenticator.assert_with(&challenge, Some("http://evil.example"), 0x05),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = post_assertion(&app, &client, &form, &authenticator.assert(&challenge)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .expect("page")
            .contains("expired or was already used")
    );
    assert!(!app.is_signed_in(&client).await);

    // A fresh ceremony signs in.
    let options = json_of(login_options(&app, &client, &form).await).await;
    let response = post_assertion(
        &app,
        &client,
        &form,
        &authenticator.assert(&challenge_of(&options)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn wrong_passkeys_lock_the_account_like_wrong_passwords() {
    let app = passkey_app().await;
    let user = app.create_user("erin", PASSWORD).await;
    let (_, mut authenticator) = enroll_passkey(&app, &user, "Key").await;
    let client = app.new_browser();
    let form = sign_in_form(&app, &client).await;
    let max = app.settings.login.max_failures;
    let mut last = StatusCode::OK;
    for _ in 0..max {
        let options = json_of(login_options(&app, &client, &form).await).await;
        let wrong =
            authenticator.assert_with(&challenge_of(&options), Some("http://evil.example"), 0x05);
        last = post_assertion(&app, &client, &form, &wrong).await.status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // Locked: even a good assertion is refused, and so is the password.
    let options = json_of(login_options(&app, &client, &form).await).await;
    let response = post_assertion(
        &app,
        &client,
        &form,
        &authenticator.assert(&challenge_of(&options)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = app.login(&app.new_browser(), "erin", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn passkeys_are_renamed_and_removed_and_survive_a_master_key_rotation() {
    let app = passkey_app().await;
    let user = app.create_user("frank", PASSWORD).await;
    let (account, mut authenticator) = enroll_passkey(&app, &user, "Old name").await;
    // A TOTP factor too, so the rotation has a sealed secret to re-encrypt.
    app.factors()
        .enroll_totp_for(&user, Some("Phone"), app.clock.now(), &Actor::cli())
        .await
        .expect("totp");
    let csrf = app.account_csrf(&account).await;
    let factor = app.factors().passkeys(user.id).await.expect("passkeys")[0]
        .factor
        .id;
    let response = app
        .post_form(
            &account,
            &format!("/account/factors/{factor}/rename"),
            &[("csrf_token", &csrf), ("name", "New name")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = app
        .get(&account, "/account")
        .await
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("New name") && !page.contains("Old name"),
        "{page}"
    );
    assert_eq!(app.audit("factor.renamed").await.len(), 1);
    let response = app
        .post_form(
            &account,
            &format!("/account/factors/{factor}/rename"),
            &[("csrf_token", "nope"), ("name", "Other")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // `portcullis keys rotate-master-key`: the TOTP secret is re-encrypted, the passkey
    // row (no sealed secret) skipped.
    let new_file = app.keydir.path().join("new.key");
    std::fs::write(
        &new_file,
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
    )
    .expect("new key");
    let new_file = new_file.display().to_string();
    let out = crate::helpers::run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "keys",
                "rotate-master-key",
                "--new-key-file",
                &new_file,
                "--json",
            ])
            .env("PORTCULLIS__DATABASE__URL", &app.db.url)
            .env(
                "PORTCULLIS__KEYS__MASTER_KEY_FILE",
                &app.settings.keys.master_key_file,
            )
            .env("PORTCULLIS__KEYS__GENERATE_MASTER_KEY", "false")
            .env_remove("PORTCULLIS_ENV")
            .env_remove("RUST_LOG"),
        "",
    );
    assert!(
        out.status.success(),
        "keys rotate-master-key with a passkey enrolled: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = MasterKey::from_file(Path::new(&new_file)).expect("new master key");
    let sealed = app.store.list_factor_secrets().await.expect("secrets");
    assert_eq!(sealed.len(), 1, "only the TOTP secret is sealed");
    assert!(
        new.decrypt(
            &sealed[0].1,
            portcullis::domain::mfa::factor_secret_aad(sealed[0].0).as_bytes()
        )
        .is_ok(),
        "the TOTP secret is under the new key"
    );

    // The passkey still signs in (it holds no sealed secret)…
    let client = app.new_browser();
    let form = sign_in_form(&app, &client).await;
    let options = json_of(login_options(&app, &client, &form).await).await;
    let response = post_assertion(
        &app,
        &client,
        &form,
        &authenticator.assert(&challenge_of(&options)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // …until it is removed: then the same credential is unknown. Removing a factor takes a
    // session that used one (the passkey session just made); the password-only session
    // is sent to step up first.
    let stepped = app
        .post_form(
            &account,
            &format!("/account/factors/{factor}/remove"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(stepped.status(), StatusCode::SEE_OTHER);
    assert!(
        stepped.headers()["location"]
            .to_str()
            .expect("location")
            .starts_with("/login?tx=")
    );
    assert_eq!(passkey_count(&app, &user).await, 1);
    let passkey_csrf = app.account_csrf(&client).await;
    let response = app
        .post_form(
            &client,
            &format!("/account/factors/{factor}/remove"),
            &[("csrf_token", &passkey_csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(passkey_count(&app, &user).await, 0);
    let client = app.new_browser();
    let form = sign_in_form(&app, &client).await;
    let options = json_of(login_options(&app, &client, &form).await).await;
    let response = post_assertion(
        &app,
        &client,
        &form,
        &authenticator.assert(&challenge_of(&options)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

fn claims_of(id_token: &str) -> Value {
    let payload = id_token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

fn location(response: &Response) -> String {
    response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

#[tokio::test]
async fn passkeys_step_up_and_sign_in_within_an_authorization_request_with_the_multi_factor_acr() {
    use crate::helpers::{WEB_REDIRECT, authorize_path, exchange_web, pkce, query, web_app};
    use portcullis::domain::mfa::ACR_MFA;

    let app = passkey_app().await;
    let user = app.create_user("grace", PASSWORD).await;
    let (_, secret) = app.register_client(web_app(true)).await;
    let secret = secret.expect("secret");
    let (account, mut authenticator) = enroll_passkey(&app, &user, "Key").await;

    // A session signed in with the password only is stepped up with the passkey.
    let p = pkce();
    let response = app
        .get(&account, &authorize_path(&p, &[("acr_values", ACR_MFA)]))
        .await;
    assert!(response.status().is_redirection(), "{}", response.status());
    let step_up = location(&response);
    let html = app
        .get(&account, &step_up)
        .await
        .text()
        .await
        .expect("code page");
    assert!(html.contains("Use your passkey"), "{html}");
    let form = SignInForm {
        tx: hidden_field(&html, "tx").expect("tx"),
        csrf: hidden_field(&html, "csrf_token").expect("csrf"),
    };
    let options = json_of(login_options(&app, &account, &form).await).await;
    let response = post_assertion(
        &app,
        &account,
        &form,
        &authenticator.assert(&challenge_of(&options)),
    )
    .await;
    assert!(response.status().is_redirection(), "{}", response.status());
    let response = app.get(&account, &location(&response)).await;
    let back = url::Url::parse(&location(&response)).expect("redirect");
    let tokens: Value = exchange_web(
        &app,
        &secret,
        &query(&back, "code").expect("code"),
        &p.verifier,
    )
    .await
    .json()
    .await
    .expect("json");
    let claims = claims_of(tokens["id_token"].as_str().expect("id token"));
    assert_eq!(claims["acr"], ACR_MFA);
    assert_eq!(claims["amr"], json!(["hwk", "pwd", "user", "mfa"]));
    assert_eq!(
        app.session_count(&user).await,
        1,
        "stepped up, not replaced"
    );

    // acr_values asks for multi-factor; a passkey alone gives it.
    let client = app.new_browser();
    let p = pkce();
    let response = app
        .get(&client, &authorize_path(&p, &[("acr_values", ACR_MFA)]))
        .await;
    assert!(response.status().is_redirection(), "{}", response.status());
    let login = location(&response);
    assert!(login.starts_with("/login?tx="), "{login}");
    let html = app
        .get(&client, &login)
        .await
        .text()
        .await
        .expect("login page");
    let form = SignInForm {
        tx: hidden_field(&html, "tx").expect("tx"),
        csrf: hidden_field(&html, "csrf_token").expect("csrf"),
    };
    let options = json_of(login_options(&app, &client, &form).await).await;
    let response = post_assertion(
        &app,
        &client,
        &form,
        &authenticator.assert(&challenge_of(&options)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let resume = location(&response);
    assert!(resume.starts_with("/authorize/resume?tx="), "{resume}");
    let response = app.get(&client, &resume).await;
    assert!(response.status().is_redirection(), "{}", response.status());
    let back = url::Url::parse(&location(&response)).expect("redirect");
    assert!(back.as_str().starts_with(WEB_REDIRECT), "{back}");
    let tokens: Value = exchange_web(
        &app,
        &secret,
        &query(&back, "code").expect("code"),
        &p.verifier,
    )
    .await
    .json()
    .await
    .expect("json");
    let claims = claims_of(tokens["id_token"].as_str().expect("id token"));
    assert_eq!(claims["acr"], ACR_MFA);
    assert_eq!(claims["amr"], json!(["hwk", "user", "mfa"]));
}
