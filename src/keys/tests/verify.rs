//! Every way a token must be refused: algorithm confusion, bad signatures and keys, the
//! wrong type, issuer or audience, and time claims against the injected clock.

use super::*;

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let (kid, private) = f.current_private_key().await;
    let claims = f.claims();
    let payload = b64_json(&serde_json::to_value(&claims).unwrap_or_else(|e| panic!("{e}")));

    // alg none, with an empty signature and with some bytes.
    for sig in ["", "AAAA"] {
        let h = b64_json(&json!({"alg": "none", "typ": "at+jwt", "kid": kid}));
        let token = format!("{h}.{payload}.{sig}");
        assert_eq!(
            reason(ring.verify(&token, &at_jwt(Some("client-1")))),
            "algorithm does not match the key"
        );
    }
    // "None", "NONE", and a missing alg.
    for h in [
        json!({"alg": "None", "typ": "at+jwt", "kid": kid}),
        json!({"alg": "NONE", "typ": "at+jwt", "kid": kid}),
    ] {
        let token = format!("{}.{payload}.", b64_json(&h));
        assert!(ring.verify::<Claims>(&token, &at_jwt(None)).is_err());
    }
    let token = format!(
        "{}.{payload}.",
        b64_json(&json!({"typ": "at+jwt", "kid": kid}))
    );
    assert_eq!(
        reason(ring.verify(&token, &at_jwt(None))),
        "malformed token"
    );

    // HS256 keyed with every public form of our key.
    let pair = private.pair();
    let pkcs1_public = pair.public_key().as_ref().to_vec();
    let spki: PublicKeyX509Der<'static> =
        pair.public_key().as_der().unwrap_or_else(|e| panic!("{e}"));
    let spki = spki.as_ref().to_vec();
    let jwks = ring.jwks_json();
    let n_b64 = URL_SAFE_NO_PAD.encode(private.n());
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("SPKI DER", spki.clone()),
        ("PKCS#1 DER", pkcs1_public.clone()),
        ("SPKI PEM", pem("PUBLIC KEY", &spki)),
        ("PKCS#1 PEM", pem("RSA PUBLIC KEY", &pkcs1_public)),
        ("JWK n", n_b64.into_bytes()),
        ("raw n", private.n().to_vec()),
        ("JWKS", jwks.to_vec()),
    ];
    for (name, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &header(alg, Some(&kid), Some("at+jwt")),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                reason(ring.verify(&token, &at_jwt(Some("client-1")))),
                "algorithm does not match the key",
                "{alg:?} keyed with the {name} was not refused"
            );
        }
    }

    // Other RSA algorithms, even when really signed by our own private key.
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let token = sign_with(&private, &header(alg, Some(&kid), Some("at+jwt")), &claims);
        assert_eq!(
            reason(ring.verify(&token, &at_jwt(Some("client-1")))),
            "algorithm does not match the key",
            "{alg:?}"
        );
    }

    // The control: the same private key with RS256 is accepted.
    let token = sign_with(
        &private,
        &header(Algorithm::RS256, Some(&kid), Some("at+jwt")),
        &claims,
    );
    let _: Claims = ring
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn bad_signatures_and_keys_are_refused() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let (kid, private) = f.current_private_key().await;
    let expect = at_jwt(Some("client-1"));
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));

    // A tampered payload keeps the original signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = f.claims();
    forged.sub = "admin".to_owned();
    let forged_payload = b64_json(&serde_json::to_value(&forged).unwrap_or_else(|e| panic!("{e}")));
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(reason(ring.verify(&tampered, &expect)), "bad signature");

    // A flipped signature bit; a truncated signature; a signature from another token.
    let mut sig = URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap_or_else(|e| panic!("{e}"));
    sig[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(reason(ring.verify(&flipped, &expect)), "bad signature");
    let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..100]);
    assert_eq!(reason(ring.verify(&truncated, &expect)), "bad signature");

    // Our kid, but signed by another RSA key.
    let other_pkcs8 = generate_rsa_pkcs8().unwrap_or_else(|e| panic!("{e}"));
    let other = RsaKey::from_pkcs8(other_pkcs8.expose_secret()).unwrap_or_else(|e| panic!("{e}"));
    let impostor = sign_with(
        &other,
        &header(Algorithm::RS256, Some(&kid), Some("at+jwt")),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&impostor, &expect)), "bad signature");

    // An unknown kid, and none at all.
    let unknown = sign_with(
        &other,
        &header(Algorithm::RS256, Some("nope"), Some("at+jwt")),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&unknown, &expect)), "unknown key");
    let own_kid = PrivateKey::from_pkcs8(
        crate::domain::jws::SigningAlg::RS256,
        other_pkcs8.expose_secret(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .thumbprint();
    let unknown = sign_with(
        &other,
        &header(Algorithm::RS256, Some(&own_kid), Some("at+jwt")),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&unknown, &expect)), "unknown key");
    let no_kid = sign_with(
        &private,
        &header(Algorithm::RS256, None, Some("at+jwt")),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&no_kid, &expect)), "missing kid");

    // A critical header extension we do not understand.
    let mut crit = header(Algorithm::RS256, Some(&kid), Some("at+jwt"));
    crit.crit = Some(vec!["exp".to_owned()]);
    let crit = sign_with(&private, &crit, &f.claims());
    assert_eq!(
        reason(ring.verify(&crit, &expect)),
        "unsupported critical header"
    );

    // Malformed and oversized input.
    for junk in [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "..",
        "....",
        &format!("{token}.x"),
    ] {
        assert_eq!(
            reason(ring.verify(junk, &expect)),
            "malformed token",
            "{junk:?}"
        );
    }
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2]);
    assert_eq!(reason(ring.verify(&huge, &expect)), "token too large");
}

#[tokio::test]
async fn wrong_type_issuer_or_audience_is_refused() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let (kid, private) = f.current_private_key().await;
    let expect = at_jwt(Some("client-1"));

    let id_token = ring
        .sign("JWT", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&id_token, &expect)), "wrong token type");
    let untyped = sign_with(
        &private,
        &header(Algorithm::RS256, Some(&kid), None),
        &f.claims(),
    );
    assert_eq!(reason(ring.verify(&untyped, &expect)), "wrong token type");

    let mut claims = f.claims();
    claims.iss = "https://evil.example".to_owned();
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "wrong issuer");

    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reason(ring.verify(&token, &at_jwt(Some("client-2")))),
        "wrong audience"
    );
    let mut claims = f.claims();
    claims.aud = json!(["client-2", "client-3"]);
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "wrong audience");
}

#[tokio::test]
async fn time_claims_follow_the_injected_clock() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let expect = at_jwt(Some("client-1"));
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));

    f.clock.advance(Span::seconds(599));
    let _: Claims = ring
        .verify(&token, &expect)
        .unwrap_or_else(|e| panic!("{e}"));
    f.clock.advance(Span::seconds(1));
    assert_eq!(reason(ring.verify(&token, &expect)), "expired");

    // allow_expired accepts it, but still checks everything else.
    let lenient = Expectations {
        allow_expired: true,
        ..expect
    };
    let claims: Claims = ring
        .verify(&token, &lenient)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims.sub, "user-1");
    let wrong_aud = Expectations {
        audience: Some("client-2"),
        ..lenient
    };
    assert_eq!(reason(ring.verify(&token, &wrong_aud)), "wrong audience");
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = f.claims();
    forged.sub = "admin".to_owned();
    let forged_payload = b64_json(&serde_json::to_value(&forged).unwrap_or_else(|e| panic!("{e}")));
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(reason(ring.verify(&tampered, &lenient)), "bad signature");

    // Not before: in the future, then reached.
    let mut claims = f.claims();
    claims.nbf = Some(f.now() + 120);
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "not yet valid");
    f.clock.advance(Span::seconds(120));
    let _: Claims = ring
        .verify(&token, &expect)
        .unwrap_or_else(|e| panic!("{e}"));

    // Issued more than a minute in the future.
    let mut claims = f.claims();
    claims.iat = f.now() + 61;
    let token = ring
        .sign("at+jwt", &claims)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "issued in the future");

    // No exp at all.
    let no_exp = json!({"iss": ISSUER, "aud": "client-1", "sub": "user-1"});
    let token = ring
        .sign("at+jwt", &no_exp)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(ring.verify(&token, &expect)), "missing exp");
    let lenient = Expectations {
        allow_expired: true,
        ..expect
    };
    assert_eq!(reason(ring.verify(&token, &lenient)), "missing exp");
}

#[tokio::test]
async fn a_kid_of_one_key_type_with_another_types_algorithm_is_refused() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let expect = at_jwt(Some("client-1"));
    let claims = f.claims();
    let ec = f.current_record(SigningAlg::ES256).await;
    let ed = f.current_record(SigningAlg::EdDSA).await;
    let rs = f.current_record(SigningAlg::RS256).await;
    let rsa = RsaKey::from_pkcs8(&f.pkcs8(&rs)).unwrap_or_else(|e| panic!("{e}"));
    let ec_key = EncodingKey::from_ec_der(&f.pkcs8(&ec));
    let ed_key = EncodingKey::from_ed_der(&f.pkcs8(&ed));
    let encode = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        jsonwebtoken::encode(&header_for(alg, kid), &claims, key).unwrap_or_else(|e| panic!("{e}"))
    };

    let refused = [
        // An ES256 kid with an RS256 header, really signed by our RSA key.
        (
            "RS256 on the ES256 kid",
            sign_with(&rsa, &header_for(Algorithm::RS256, &ec.kid), &claims),
        ),
        // An EdDSA kid with an ES256 header, signed by our P-256 key.
        (
            "ES256 on the EdDSA kid",
            encode(Algorithm::ES256, &ed.kid, &ec_key),
        ),
        // An ES256 kid with an EdDSA header, signed by our Ed25519 key.
        (
            "EdDSA on the ES256 kid",
            encode(Algorithm::EdDSA, &ec.kid, &ed_key),
        ),
        // The RS256 kid with ES256 and EdDSA headers.
        (
            "ES256 on the RS256 kid",
            encode(Algorithm::ES256, &rs.kid, &ec_key),
        ),
        (
            "EdDSA on the RS256 kid",
            encode(Algorithm::EdDSA, &rs.kid, &ed_key),
        ),
        // ES384 on the P-256 key: same family, other algorithm.
        ("ES384 on the ES256 kid", {
            let h = b64_json(&json!({"alg": "ES384", "typ": "at+jwt", "kid": ec.kid}));
            let body = b64_json(&serde_json::to_value(&claims).unwrap_or_default());
            let sig = PrivateKey::from_pkcs8(SigningAlg::ES256, &f.pkcs8(&ec))
                .and_then(|k| k.sign(format!("{h}.{body}").as_bytes()))
                .unwrap_or_else(|e| panic!("{e}"));
            format!("{h}.{body}.{}", URL_SAFE_NO_PAD.encode(sig))
        }),
    ];
    for (name, token) in &refused {
        assert_eq!(
            reason(ring.verify(token, &expect)),
            "algorithm does not match the key",
            "{name}"
        );
    }
    // HS256 keyed with the public key's published forms, and `none`.
    for record in [&ec, &ed] {
        let jwk = record.public_jwk.to_string();
        let x = record.public_jwk["x"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for secret in [
            jwk.into_bytes(),
            x.clone().into_bytes(),
            URL_SAFE_NO_PAD.decode(&x).unwrap_or_default(),
        ] {
            let token = encode(
                Algorithm::HS256,
                &record.kid,
                &EncodingKey::from_secret(&secret),
            );
            assert_eq!(
                reason(ring.verify(&token, &expect)),
                "algorithm does not match the key"
            );
        }
        let h = b64_json(&json!({"alg": "none", "typ": "at+jwt", "kid": record.kid}));
        let body = b64_json(&serde_json::to_value(&claims).unwrap_or_default());
        assert_eq!(
            reason(ring.verify(&format!("{h}.{body}."), &expect)),
            "algorithm does not match the key"
        );
    }
    // The right algorithm with the wrong key of that type is a bad signature.
    let other_ec = PrivateKey::from_pkcs8(
        SigningAlg::ES256,
        super::material::generate_pkcs8(SigningAlg::ES256)
            .unwrap_or_else(|e| panic!("{e}"))
            .expose_secret(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let h = b64_json(&json!({"alg": "ES256", "typ": "at+jwt", "kid": ec.kid}));
    let body = b64_json(&serde_json::to_value(&claims).unwrap_or_default());
    let sig = other_ec
        .sign(format!("{h}.{body}").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let forged = format!("{h}.{body}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(reason(ring.verify(&forged, &expect)), "bad signature");
    // Controls: the right algorithm with the right key passes.
    let _: Claims = ring
        .verify(&encode(Algorithm::ES256, &ec.kid, &ec_key), &expect)
        .unwrap_or_else(|e| panic!("{e}"));
    let _: Claims = ring
        .verify(&encode(Algorithm::EdDSA, &ed.kid, &ed_key), &expect)
        .unwrap_or_else(|e| panic!("{e}"));
}
