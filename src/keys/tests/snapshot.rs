//! What signs and verifies now: keys created and reused at start, the JWKS, next and
//! retired keys published, reloads, and every configured algorithm signing with its own key.

use super::*;

#[tokio::test]
async fn load_or_init_creates_exactly_one_current_key_and_a_next_key() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let records = f.records().await;
    assert_eq!(records.len(), 2);
    let next: Vec<_> = records
        .iter()
        .filter(|r| r.state == KeyState::Next)
        .collect();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].activated_at, None);
    let record = records
        .iter()
        .find(|r| r.state == KeyState::Current)
        .unwrap_or_else(|| panic!("no current key"));
    assert_eq!(record.state, KeyState::Current);
    assert_eq!(record.alg, SigningAlg::RS256);
    assert_eq!(record.activated_at, Some(f.clock.now()));
    assert_eq!(record.created_at, f.clock.now());
    assert_eq!(record.retired_at, None);
    assert_eq!(ring.current_kid().as_deref(), Some(record.kid.as_str()));
    assert_eq!(ring.algorithms(), vec!["RS256".to_owned()]);
    assert!(format!("{ring:?}").contains(&record.kid));
}

#[tokio::test]
async fn a_second_ring_on_the_same_store_reuses_the_key() {
    let f = Fixture::new().await;
    let first = f.ring().await;
    let second = f.ring().await;
    assert_eq!(first.current_kid(), second.current_kid());
    assert_eq!(f.records().await.len(), 2);
    assert_eq!(first.jwks_json(), second.jwks_json());

    // A token from one instance verifies on the other.
    let token = first
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let claims: Claims = second
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims, f.claims());
}

#[tokio::test]
async fn instances_starting_together_agree_on_one_key() {
    let f = Fixture::new().await;
    let clock: Arc<dyn Clock> = Arc::new(f.clock.clone());
    let (a, b, c) = tokio::join!(
        KeyRing::load_or_init(Arc::clone(&f.store), f.master(), Arc::clone(&clock)),
        KeyRing::load_or_init(Arc::clone(&f.store), f.master(), Arc::clone(&clock)),
        KeyRing::load_or_init(Arc::clone(&f.store), f.master(), Arc::clone(&clock)),
    );
    let kids: BTreeSet<Option<String>> = [a, b, c]
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")).current_kid())
        .collect();
    assert_eq!(kids.len(), 1);
    let records = f.records().await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.state == KeyState::Current)
            .count(),
        1
    );
}

#[tokio::test]
async fn sign_then_verify_round_trips_claims() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let (header, _, _) = split(&token);
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "at+jwt", "kid": ring.current_kid()})
    );
    let claims: Claims = ring
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims, f.claims());

    // Without an audience expectation, and as untyped JSON.
    let any: Value = ring
        .verify(&token, &at_jwt(None))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(any["scope"], "openid profile");

    // typ is compared case-insensitively, with or without "application/".
    for typ in ["AT+JWT", "application/at+jwt"] {
        let token = ring
            .sign(typ, &f.claims())
            .unwrap_or_else(|e| panic!("{e}"));
        let _: Claims = ring
            .verify(&token, &at_jwt(Some("client-1")))
            .unwrap_or_else(|e| panic!("{typ}: {e}"));
    }

    // An array audience that contains ours.
    let mut claims = f.claims();
    claims.aud = json!(["other", "client-1"]);
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    let back: Claims = ring
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, claims);

    // ID tokens: typ JWT.
    let token = ring
        .sign("JWT", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let id = Expectations {
        typ: "JWT",
        ..at_jwt(Some("client-1"))
    };
    let _: Claims = ring.verify(&token, &id).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn jwks_has_exactly_the_public_parameters() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    let keys = jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys array: {jwks}"));
    // The current key and the pre-published next key.
    assert_eq!(keys.len(), 2);
    let current = ring.current_kid().unwrap_or_default();
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == current.as_str())
        .unwrap_or_else(|| panic!("the current key is not published: {jwks}"));
    let members: BTreeSet<&str> = jwk
        .as_object()
        .unwrap_or_else(|| panic!("not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        members,
        BTreeSet::from(["alg", "e", "kid", "kty", "n", "use"])
    );
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(jwk.get(private).is_none(), "{private} is published");
    }
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "RS256");
    assert_eq!(jwk["e"], "AQAB");
    let n = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n.len(), 256, "RSA-2048 modulus without a leading zero");

    // The kid is the RFC 7638 thumbprint, and it is what tokens carry.
    let canonical = format!(
        r#"{{"e":"AQAB","kty":"RSA","n":"{}"}}"#,
        jwk["n"].as_str().unwrap_or_default()
    );
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(jwk["kid"], thumbprint);
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let (header, _, _) = split(&token);
    assert_eq!(header["kid"], jwk["kid"]);
}

#[tokio::test]
async fn next_and_retired_keys_are_published_and_verify_but_do_not_sign() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let current = current_kid(&ring);
    let first_next = f.first_in(KeyState::Next).await.kid;

    let now = f.clock.now();
    let next = f.first_in(KeyState::Next).await;
    assert_eq!(next.activated_at, None);
    // One next key per algorithm: a second one is refused.
    let second_next = ring
        .new_record(SigningAlg::RS256, KeyState::Next, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        f.store.insert_signing_key(&second_next).await,
        Err(crate::storage::StoreError::Conflict(_))
    ));
    let mut retired = ring
        .new_record(SigningAlg::RS256, KeyState::Retired, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    retired.retired_at = Some(now);
    retired.remove_after = Some(now + Span::hours(1));
    f.store
        .insert_signing_key(&retired)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Not visible until the reload.
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    let kids: BTreeSet<&str> = jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys"))
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(
        kids,
        BTreeSet::from([current.as_str(), first_next.as_str(), retired.kid.as_str()])
    );
    assert_eq!(ring.current_kid().as_deref(), Some(current.as_str()));
    assert_eq!(ring.algorithms(), vec!["RS256".to_owned()]);

    let signed = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(split(&signed).0["kid"], current.as_str());

    let expect = at_jwt(Some("client-1"));
    for record in [&next, &retired] {
        let key = f.private_key(record);
        let token = sign_with(
            &key,
            &header(Algorithm::RS256, Some(&record.kid), Some("at+jwt")),
            &f.claims(),
        );
        let _: Claims = ring
            .verify(&token, &expect)
            .unwrap_or_else(|e| panic!("{}: {e}", record.state));
    }

    // Past remove_after the retired key stops verifying at once and leaves the JWKS on
    // the next reload.
    let old_token = sign_with(
        &f.private_key(&retired),
        &header(Algorithm::RS256, Some(&retired.kid), Some("at+jwt")),
        &json!({"iss": ISSUER, "aud": "client-1", "exp": f.now() + 7200}),
    );
    f.clock.advance(Span::hours(1));
    assert_eq!(reason(ring.verify(&old_token, &expect)), "unknown key");
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    assert!(!jwks.to_string().contains(&retired.kid));
}

#[tokio::test]
async fn a_stored_public_key_that_disagrees_with_the_private_key_is_refused() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let mut record = retired_record(&ring, &f).await;
    let other = PrivateKey::from_pkcs8(
        SigningAlg::RS256,
        generate_rsa_pkcs8()
            .unwrap_or_else(|e| panic!("{e}"))
            .expose_secret(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    record.public_jwk = other.public_jwk(&record.kid, SigningAlg::RS256);
    f.store
        .insert_signing_key(&record)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = ring.jwks_json();
    let err = ring
        .reload()
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(matches!(err, KeyError::Crypto(_)), "{err:?}");
    // The previous set stays in use.
    assert_eq!(ring.jwks_json(), before);
}

#[tokio::test]
async fn the_reloader_picks_up_keys_added_elsewhere() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let elsewhere = f.ring().await;
    let record = retired_record(&elsewhere, &f).await;
    let task = spawn_reloader(ring.clone(), Duration::from_millis(20));
    f.store
        .insert_signing_key(&record)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = false;
    for _ in 0..200 {
        if std::str::from_utf8(&ring.jwks_json())
            .unwrap_or_default()
            .contains(&record.kid)
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(seen, "the reloader never published the new key");
}

#[tokio::test]
async fn every_configured_algorithm_gets_a_current_and_a_next_key() {
    let f = Fixture::new().await;
    // Given in any order; listed RS256 first.
    let ring = f.ring_with(&ALL).await;
    assert_eq!(ring.algorithms(), vec!["RS256", "ES256", "EdDSA"]);
    assert_eq!(ring.configured_algorithms(), &SigningAlg::ALL);
    let records = f.records().await;
    for alg in SigningAlg::ALL {
        let states: Vec<&str> = records
            .iter()
            .filter(|r| r.alg == alg)
            .map(|r| r.state.as_str())
            .collect();
        assert_eq!(states.len(), 2, "{alg}: {states:?}");
        assert!(
            states.contains(&"current") && states.contains(&"next"),
            "{alg}"
        );
        assert_eq!(
            ring.current_kid_for(alg).as_deref(),
            Some(f.current_record(alg).await.kid.as_str())
        );
    }
    // A second instance with the same configuration adds nothing.
    let again = f.ring_with(&ALL).await;
    assert_eq!(f.records().await.len(), 6);
    assert_eq!(again.jwks_json(), ring.jwks_json());
    // One that signs RS256 only still publishes (and verifies) every key.
    let rs_only = f.ring().await;
    assert_eq!(rs_only.algorithms(), vec!["RS256"]);
    assert_eq!(rs_only.jwks_json(), ring.jwks_json());
}

#[tokio::test]
async fn the_jwks_publishes_ec_and_okp_keys_with_their_thumbprints() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let jwks: Value = serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    let keys = jwks["keys"].as_array().unwrap_or_else(|| panic!("keys"));
    assert_eq!(keys.len(), 6);
    let str_of = |k: &Value, m: &str| k[m].as_str().unwrap_or_default().to_owned();
    let decoded_len = |k: &Value, m: &str| {
        URL_SAFE_NO_PAD
            .decode(str_of(k, m))
            .unwrap_or_else(|e| panic!("{m}: {e}"))
            .len()
    };
    for key in keys {
        let members: BTreeSet<&str> = key
            .as_object()
            .unwrap_or_else(|| panic!("object"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(key["use"], "sig");
        let kid = str_of(key, "kid");
        match str_of(key, "kty").as_str() {
            "EC" => {
                assert_eq!(
                    members,
                    BTreeSet::from(["alg", "crv", "kid", "kty", "use", "x", "y"])
                );
                assert_eq!(
                    (key["alg"].as_str(), key["crv"].as_str()),
                    (Some("ES256"), Some("P-256"))
                );
                assert_eq!((decoded_len(key, "x"), decoded_len(key, "y")), (32, 32));
                let (x, y) = (str_of(key, "x"), str_of(key, "y"));
                assert_eq!(
                    kid,
                    thumbprint(&[("crv", "P-256"), ("kty", "EC"), ("x", &x), ("y", &y)])
                );
            }
            "OKP" => {
                assert_eq!(
                    members,
                    BTreeSet::from(["alg", "crv", "kid", "kty", "use", "x"])
                );
                assert_eq!(
                    (key["alg"].as_str(), key["crv"].as_str()),
                    (Some("EdDSA"), Some("Ed25519"))
                );
                assert_eq!(decoded_len(key, "x"), 32);
                let x = str_of(key, "x");
                assert_eq!(
                    kid,
                    thumbprint(&[("crv", "Ed25519"), ("kty", "OKP"), ("x", &x)])
                );
            }
            "RSA" => {
                assert_eq!(
                    members,
                    BTreeSet::from(["alg", "e", "kid", "kty", "n", "use"])
                );
                assert_eq!(key["alg"], "RS256");
                let (e, n) = (str_of(key, "e"), str_of(key, "n"));
                assert_eq!(kid, thumbprint(&[("e", &e), ("kty", "RSA"), ("n", &n)]));
            }
            other => panic!("unexpected kty {other}"),
        }
        // What is published is what is stored.
        let stored = f
            .records()
            .await
            .into_iter()
            .find(|r| r.kid == kid)
            .unwrap_or_else(|| panic!("{kid} not stored"));
        assert_eq!(&stored.public_jwk, key);
    }
}

#[tokio::test]
async fn each_algorithm_signs_with_its_own_key_and_verifies_with_jsonwebtoken_from_the_jwk() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&ring.jwks_json()).unwrap_or_else(|e| panic!("{e}"));
    for (alg, jwt_alg) in [
        (SigningAlg::RS256, Algorithm::RS256),
        (SigningAlg::ES256, Algorithm::ES256),
        (SigningAlg::EdDSA, Algorithm::EdDSA),
    ] {
        let token = ring
            .sign_with(alg, "JWT", &f.claims())
            .unwrap_or_else(|e| panic!("{e}"));
        let (header, _, _) = split(&token);
        let kid = ring.current_kid_for(alg).unwrap_or_default();
        assert_eq!(
            header,
            json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid})
        );
        // Our verifier.
        let claims: Claims = ring
            .verify(
                &token,
                &Expectations {
                    typ: "JWT",
                    ..at_jwt(Some("client-1"))
                },
            )
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(claims, f.claims());
        // jsonwebtoken, from nothing but the published JWK.
        let jwk = jwks
            .find(&kid)
            .unwrap_or_else(|| panic!("{kid} not in the JWKS"));
        let mut validation = jsonwebtoken::Validation::new(jwt_alg);
        validation.set_audience(&["client-1"]);
        let decoded = jsonwebtoken::decode::<Claims>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap_or_else(|e| panic!("{e}")),
            &validation,
        )
        .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(decoded.claims, f.claims());
        // And the other way round: jsonwebtoken signing with our stored private key.
        let record = f.current_record(alg).await;
        let pkcs8 = f.pkcs8(&record);
        let theirs = match alg {
            // jsonwebtoken wants PKCS#1 for RSA; aws-lc signs it directly instead.
            SigningAlg::RS256 => sign_with(
                &RsaKey::from_pkcs8(&pkcs8).unwrap_or_else(|e| panic!("{e}")),
                &header_for(jwt_alg, &kid),
                &f.claims(),
            ),
            SigningAlg::ES256 | SigningAlg::EdDSA => {
                let encoding = if alg == SigningAlg::ES256 {
                    EncodingKey::from_ec_der(&pkcs8)
                } else {
                    EncodingKey::from_ed_der(&pkcs8)
                };
                jsonwebtoken::encode(&header_for(jwt_alg, &kid), &f.claims(), &encoding)
                    .unwrap_or_else(|e| panic!("{alg}: {e}"))
            }
        };
        let _: Claims = ring
            .verify(&theirs, &at_jwt(Some("client-1")))
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
    // An algorithm this ring is not configured for never signs.
    let rs_only = f.ring().await;
    assert!(matches!(
        rs_only.sign_with(SigningAlg::ES256, "JWT", &f.claims()),
        Err(KeyError::AlgorithmNotEnabled(SigningAlg::ES256))
    ));
}
