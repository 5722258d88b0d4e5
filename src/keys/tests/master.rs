//! The master key: private keys are stored encrypted under it, a different one is a
//! mismatch (never a new key), and rotating it re-encrypts every key and nothing else.

use super::*;

#[tokio::test]
async fn a_different_master_key_is_a_mismatch_not_a_new_key() {
    let f = Fixture::new().await;
    let _ring = f.ring().await;
    let result = KeyRing::load_or_init(
        Arc::clone(&f.store),
        MasterKey::generate(),
        Arc::new(f.clock.clone()),
    )
    .await;
    let err = result
        .err()
        .unwrap_or_else(|| panic!("a wrong master key was accepted"));
    assert!(matches!(err, KeyError::MasterKeyMismatch), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the master key does not match the one the signing keys were encrypted with"
    );
    assert_eq!(f.records().await.len(), 2);
}

#[tokio::test]
async fn the_private_key_is_stored_encrypted() {
    let f = Fixture::new().await;
    let _ring = f.ring().await;
    let records = f.records().await;
    let record = &records[0];
    let pkcs8 = f
        .master()
        .decrypt(&record.encrypted_private_key, record.kid.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(RsaKey::from_pkcs8(&pkcs8).is_ok());
    assert!(pkcs8.len() > 1000, "PKCS#8 DER is implausibly short");

    // No 16-byte run of the private key DER (which embeds the PKCS#1 RSAPrivateKey with
    // d, p and q) appears in the stored blob.
    let blob_windows: HashSet<&[u8]> = record.encrypted_private_key.windows(16).collect();
    assert!(
        pkcs8.windows(16).all(|w| !blob_windows.contains(w)),
        "the stored blob contains private key bytes in the clear"
    );

    // The blob is bound to its row: under another kid it does not decrypt.
    assert!(matches!(
        f.master()
            .decrypt(&record.encrypted_private_key, b"another-kid"),
        Err(KeyError::MasterKeyMismatch)
    ));

    let stored: BTreeSet<&str> = record
        .public_jwk
        .as_object()
        .unwrap_or_else(|| panic!("not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        stored,
        BTreeSet::from(["alg", "e", "kid", "kty", "n", "use"])
    );
}

#[tokio::test]
async fn a_master_key_rotation_re_encrypts_every_key_and_nothing_else() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let token = ring
        .sign_with(SigningAlg::ES256, "at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let before = f.records().await;
    let new_b64 = random_master_key();
    let new = MasterKey::from_base64(&new_b64).unwrap_or_else(|e| panic!("{e}"));
    let actor = crate::audit::Actor::cli();

    // The same key, and a wrong current key, are refused and change nothing.
    assert!(matches!(
        rotate_master_key(
            f.store.as_ref(),
            &f.master(),
            &f.master(),
            f.clock.now(),
            &actor
        )
        .await,
        Err(KeyError::BadMasterKey(_))
    ));
    assert!(matches!(
        rotate_master_key(
            f.store.as_ref(),
            &MasterKey::generate(),
            &new,
            f.clock.now(),
            &actor
        )
        .await,
        Err(KeyError::MasterKeyMismatch)
    ));
    assert_eq!(
        f.records()
            .await
            .iter()
            .map(|r| r.encrypted_private_key.clone())
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|r| r.encrypted_private_key.clone())
            .collect::<Vec<_>>()
    );

    let done = rotate_master_key(f.store.as_ref(), &f.master(), &new, f.clock.now(), &actor)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.reencrypted.len(), 6);
    let after = f.records().await;
    for (old, new_row) in before.iter().zip(&after) {
        assert_eq!(old.kid, new_row.kid);
        assert_eq!(old.public_jwk, new_row.public_jwk);
        assert_eq!(old.state, new_row.state);
        assert_ne!(old.encrypted_private_key, new_row.encrypted_private_key);
        let plain_old = f.pkcs8(old);
        let plain_new = new
            .decrypt(&new_row.encrypted_private_key, new_row.kid.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain_old, plain_new);
        assert!(matches!(
            f.master()
                .decrypt(&new_row.encrypted_private_key, new_row.kid.as_bytes()),
            Err(KeyError::MasterKeyMismatch)
        ));
    }
    let audit = f
        .store
        .list_audit(&crate::audit::AuditQuery {
            kind: Some("key.master_rotated".into()),
            user_id: None,
            limit: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["reencrypted"], 6);

    // A ring under the new key loads the same keys; tokens signed before still verify.
    let fresh = KeyRing::load_or_init_for(
        Arc::clone(&f.store),
        MasterKey::from_base64(&new_b64).unwrap_or_else(|e| panic!("{e}")),
        Arc::new(f.clock.clone()),
        &{
            let mut s = crate::config::Settings::defaults().unwrap_or_else(|e| panic!("{e}"));
            s.keys.algorithms = ALL.to_vec();
            s
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fresh.jwks_json(), ring.jwks_json());
    let _: Claims = fresh
        .verify(&token, &at_jwt(Some("client-1")))
        .unwrap_or_else(|e| panic!("{e}"));
    // A new ring under the old key fails; the old ring keeps signing but refuses to add
    // keys under the old master key, even before it reloads.
    assert!(matches!(
        KeyRing::load_or_init(Arc::clone(&f.store), f.master(), Arc::new(f.clock.clone())).await,
        Err(KeyError::MasterKeyMismatch)
    ));
    let rows = f.records().await;
    assert!(matches!(
        ring.rotate().await,
        Err(KeyError::MasterKeyMismatch)
    ));
    assert_eq!(
        f.records().await.len(),
        rows.len(),
        "a stale ring wrote keys"
    );
    assert!(matches!(
        ring.reload().await,
        Err(KeyError::MasterKeyMismatch)
    ));
    assert!(matches!(
        ring.rotate_alg_by(SigningAlg::RS256, &actor).await,
        Err(KeyError::MasterKeyMismatch)
    ));
    assert!(matches!(ring.ensure_next(SigningAlg::RS256).await, Ok(())));
    assert_eq!(f.records().await.len(), rows.len());
    let _: Claims = ring
        .verify(
            &ring
                .sign("at+jwt", &f.claims())
                .unwrap_or_else(|e| panic!("{e}")),
            &at_jwt(Some("client-1")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

/// During a rolling upgrade a newer instance may store a key whose algorithm (or state)
/// this version does not know: it is read as `Stored::Unknown`, skipped by the ring, still
/// listed for administrators, and still re-encrypted by a master-key rotation.
#[tokio::test]
async fn a_key_written_by_a_newer_version_is_skipped_listed_and_reencrypted() {
    use crate::domain::signing_key::Stored;

    let f = Fixture::new().await;
    let _ring = f.ring().await;
    let model = f.current_record(SigningAlg::RS256).await;
    let kid = "written-by-a-newer-version";
    let pkcs8 = f.pkcs8(&model);
    let newer = SigningKeyRecord {
        kid: kid.to_owned(),
        alg: Stored::Unknown("ES512".to_owned()),
        state: Stored::Unknown("standby".to_owned()),
        encrypted_private_key: f
            .master()
            .encrypt(&pkcs8, kid.as_bytes())
            .unwrap_or_else(|e| panic!("{e}")),
        ..model
    };
    f.store
        .insert_signing_key(&newer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let stored = f.records().await;
    let row = stored
        .iter()
        .find(|r| r.kid == kid)
        .unwrap_or_else(|| panic!("the row was dropped on read"));
    assert_eq!(row.alg.as_str(), "ES512");
    assert_eq!(row.alg.known(), None);
    assert_eq!(row.state, Stored::Unknown("standby".to_owned()));

    let ring = f.ring().await;
    assert!(!String::from_utf8_lossy(&ring.jwks_json()).contains(kid));
    assert!(ring.sign("at+jwt", &f.claims()).is_ok());

    let listed = crate::keys::list(f.store.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = listed
        .iter()
        .find(|k| k.kid == kid)
        .unwrap_or_else(|| panic!("keys list hides the newer key"));
    assert_eq!(
        (shown.alg.as_str(), shown.state.as_str()),
        ("ES512", "standby")
    );

    let new = MasterKey::generate();
    let actor = crate::audit::Actor::cli();
    let done = rotate_master_key(f.store.as_ref(), &f.master(), &new, f.clock.now(), &actor)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(done.reencrypted.iter().any(|k| k == kid), "{done:?}");
    let row = f
        .records()
        .await
        .into_iter()
        .find(|r| r.kid == kid)
        .unwrap_or_else(|| panic!("the row was lost by the rotation"));
    let plain = new
        .decrypt(&row.encrypted_private_key, kid.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain, pkcs8);
}

/// Second-factor secrets are sealed under the master key too: a rotation re-encrypts them
/// with the signing keys, in the same transaction.
#[tokio::test]
async fn a_master_key_rotation_re_encrypts_second_factor_secrets() {
    use crate::domain::mfa::factor_secret_aad;
    use crate::domain::user::{NewUser, Username};
    use crate::storage::{FactorKind, FactorRecord};

    let f = Fixture::new().await;
    let _ring = f.ring().await;
    let user = f
        .store
        .create_user(
            &NewUser {
                username: Username::parse("alice").unwrap_or_else(|e| panic!("{e}")),
                email: None,
                name: None,
                password_hash: None,
            },
            f.clock.now(),
            &crate::audit::AuditEvent::new(
                f.clock.now(),
                crate::audit::AuditKind::UserCreated,
                crate::audit::Outcome::Success,
                &crate::audit::Actor::cli(),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = uuid::Uuid::new_v4();
    let secret = b"twenty bytes secret!".to_vec();
    let aad = factor_secret_aad(id);
    f.store
        .insert_factor(
            &FactorRecord {
                id,
                user_id: user.id,
                kind: FactorKind::Totp,
                name: "Phone".into(),
                encrypted_secret: f
                    .master()
                    .encrypt(&secret, aad.as_bytes())
                    .unwrap_or_else(|e| panic!("{e}")),
                confirmed: true,
                last_used_step: None,
                created_at: f.clock.now(),
                last_used_at: None,
            },
            None,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let new = MasterKey::generate();
    rotate_master_key(
        f.store.as_ref(),
        &f.master(),
        &new,
        f.clock.now(),
        &crate::audit::Actor::cli(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stored = f
        .store
        .list_factors(user.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let blob = &stored[0].encrypted_secret;
    assert!(f.master().decrypt(blob, aad.as_bytes()).is_err());
    assert_eq!(
        new.decrypt(blob, aad.as_bytes())
            .unwrap_or_else(|e| panic!("{e}")),
        secret
    );
}
