//! The rotation lifecycle: scheduled rotation, next keys, emergency retirement, races
//! between instances, housekeeping, and algorithms added or removed.

use super::*;

#[tokio::test]
async fn rotation_promotes_next_and_retires_current_for_the_retention_window() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let old = current_kid(&ring);
    let next = f.first_in(KeyState::Next).await.kid;
    f.clock.advance(Span::hours(1));
    let outcome = one(ring.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    let RotationOutcome::Rotated {
        retired,
        current,
        next: Some(new_next),
        remove_after,
        ..
    } = outcome
    else {
        panic!("unexpected {outcome:?}");
    };
    assert_eq!(
        (retired.as_str(), current.as_str()),
        (old.as_str(), next.as_str())
    );
    assert_eq!(ring.current_kid().as_deref(), Some(next.as_str()));
    let records = f.records().await;
    assert_eq!(
        (
            count(&records, KeyState::Current),
            count(&records, KeyState::Next),
            count(&records, KeyState::Retired)
        ),
        (1, 1, 1)
    );
    let by_kid = |kid: &str| {
        records
            .iter()
            .find(|r| r.kid == kid)
            .unwrap_or_else(|| panic!("{kid} is gone"))
            .clone()
    };
    let r = by_kid(&old);
    assert_eq!(r.retired_at, Some(f.clock.now()));
    assert_eq!(r.remove_after, Some(remove_after));
    assert_eq!(remove_after, f.clock.now() + Span::minutes(11));
    assert_eq!(by_kid(&next).activated_at, Some(f.clock.now()));
    assert_eq!(by_kid(&new_next).state, KeyState::Next);

    // The ring reloaded after its own rotation, so it can rotate again.
    let again = one(ring.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    assert!(matches!(again, RotationOutcome::Rotated { ref retired, .. } if *retired == next));
    // The first retired key is still within its window.
    assert_eq!(count(&f.records().await, KeyState::Retired), 2);
    f.clock.advance(Span::minutes(12));
    ring.rotate().await.unwrap_or_else(|e| panic!("{e}"));
    let records = f.records().await;
    assert!(
        records.iter().all(|r| r.kid != old && r.kid != next),
        "expired keys were not deleted"
    );
}

#[tokio::test]
async fn without_a_next_key_rotation_promotes_a_fresh_one_and_creates_a_next() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let next = f.first_in(KeyState::Next).await.kid;
    let retired = ring
        .retire(&next, &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(retired, RetireOutcome::Retired { ref previous_state, promoted: None, .. } if *previous_state == KeyState::Next)
    );
    assert!(!String::from_utf8_lossy(&ring.jwks_json()).contains(&next));
    let old = current_kid(&ring);
    let outcome = one(ring.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    let RotationOutcome::Rotated {
        current,
        next: Some(new_next),
        ..
    } = outcome
    else {
        panic!("unexpected {outcome:?}");
    };
    assert_ne!(current, old);
    assert_ne!(current, new_next);
    let records = f.records().await;
    assert_eq!(
        (
            count(&records, KeyState::Current),
            count(&records, KeyState::Next)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn an_emergency_retirement_stops_verification_at_once() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let old = current_kid(&ring);
    let token = ring
        .sign("at+jwt", &f.claims())
        .unwrap_or_else(|e| panic!("{e}"));
    let other = f.ring().await;
    let outcome = ring
        .retire(&old, &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let RetireOutcome::Retired {
        promoted: Some(promoted),
        next: Some(_),
        ..
    } = outcome
    else {
        panic!("unexpected {outcome:?}");
    };
    assert_eq!(ring.current_kid().as_deref(), Some(promoted.as_str()));
    assert_eq!(
        reason(ring.verify::<Claims>(&token, &at_jwt(Some("client-1")))),
        "unknown key"
    );
    // Another instance, even with a clock behind, drops it on its next reload.
    f.clock.advance(Span::seconds(-30));
    other.reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reason(other.verify::<Claims>(&token, &at_jwt(Some("client-1")))),
        "unknown key"
    );
    assert_eq!(count(&f.records().await, KeyState::Current), 1);
    let missing = ring
        .retire("no-such-kid", &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(missing, RetireOutcome::NotFound { .. }));
}

#[tokio::test]
async fn scheduled_rotation_waits_for_the_interval_and_the_prepublication() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let day = Duration::from_secs(86_400);
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::No
    );
    f.clock.advance(Span::days(30));
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::Yes
    );
    ring.rotate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::No
    );
    // The new next key was created just now: due after 30 days, it has long been published.
    f.clock.advance(Span::days(30));
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::Yes
    );
    // A next key younger than the pre-publication window holds the rotation back.
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, 31 * day),
        RotationDue::Waiting
    );
}

#[tokio::test]
async fn a_ring_with_a_stale_view_loses_the_race_and_catches_up() {
    let f = Fixture::new().await;
    let first = f.ring().await;
    let second = f.ring().await;
    let won = one(first.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    let RotationOutcome::Rotated { current, .. } = won else {
        panic!("unexpected {won:?}");
    };
    let lost = one(second.rotate().await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        lost,
        RotationOutcome::LostRace {
            alg: SigningAlg::RS256,
            current: Some(current.clone())
        }
    );
    assert_eq!(second.current_kid(), Some(current));
    let records = f.records().await;
    assert_eq!(
        (
            count(&records, KeyState::Current),
            count(&records, KeyState::Next),
            count(&records, KeyState::Retired)
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn rotation_covers_every_configured_algorithm_in_its_own_lifecycle() {
    let f = Fixture::new().await;
    let ring = f.ring_with(&ALL).await;
    let before: Vec<Option<String>> = SigningAlg::ALL
        .iter()
        .map(|a| ring.current_kid_for(*a))
        .collect();
    let outcomes = ring.rotate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes.len(), 3);
    for (outcome, (alg, old)) in outcomes.iter().zip(SigningAlg::ALL.iter().zip(&before)) {
        let RotationOutcome::Rotated {
            alg: rotated,
            retired,
            current,
            ..
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(rotated, alg);
        assert_eq!(Some(retired), old.as_ref());
        assert_eq!(ring.current_kid_for(*alg).as_ref(), Some(current));
        let records = f.records().await;
        let of_alg: Vec<&SigningKeyRecord> = records.iter().filter(|r| r.alg == *alg).collect();
        assert_eq!(
            (
                count_refs(&of_alg, KeyState::Current),
                count_refs(&of_alg, KeyState::Next),
                count_refs(&of_alg, KeyState::Retired)
            ),
            (1, 1, 1),
            "{alg}"
        );
    }
    // One algorithm alone.
    let es = ring
        .rotate_alg_by(SigningAlg::ES256, &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        es,
        RotationOutcome::Rotated {
            alg: SigningAlg::ES256,
            ..
        }
    ));
    let records = f.records().await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.alg == SigningAlg::ES256)
            .count(),
        4
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.alg == SigningAlg::RS256)
            .count(),
        3
    );
    // Scheduled rotation is per algorithm too.
    let day = Duration::from_secs(86_400);
    f.clock.advance(Span::days(30));
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    for alg in SigningAlg::ALL {
        assert_eq!(
            ring.rotation_due(alg, 30 * day, day),
            RotationDue::Yes,
            "{alg}"
        );
    }
    ring.rotate_alg_by(SigningAlg::EdDSA, &crate::audit::Actor::cli())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.rotation_due(SigningAlg::EdDSA, 30 * day, day),
        RotationDue::No
    );
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::Yes
    );
}

#[tokio::test]
async fn instances_creating_a_next_key_at_once_keep_one() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let next = f.first_in(KeyState::Next).await;
    let rings = [f.ring().await, f.ring().await, f.ring().await];
    // Without a next key (say, an algorithm enabled again after its keys were retired
    // while it was dropped: nothing replaced them), three instances add one at the same
    // moment.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/k.db", f._dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("delete from signing_keys where kid = $1")
        .bind(&next.kid)
        .execute(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.close().await;
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&f.records().await, KeyState::Next), 0);
    for r in &rings {
        r.reload().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let (a, b, c) = tokio::join!(
        rings[0].ensure_next(SigningAlg::RS256),
        rings[1].ensure_next(SigningAlg::RS256),
        rings[2].ensure_next(SigningAlg::RS256),
    );
    for result in [a, b, c] {
        result.unwrap_or_else(|e| panic!("a losing instance failed: {e}"));
    }
    assert_eq!(count(&f.records().await, KeyState::Next), 1);
    // Every ring ended up with the winner's key.
    let kids: BTreeSet<Vec<u8>> = rings.iter().map(|r| r.jwks_json().to_vec()).collect();
    assert_eq!(kids.len(), 1);
}

#[tokio::test]
async fn housekeeping_deletes_keys_past_remove_after_and_reloads() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let old = ring.current_kid().unwrap_or_default();
    ring.rotate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ring.purge_removed().await.unwrap_or_else(|e| panic!("{e}")),
        0
    );
    assert!(String::from_utf8_lossy(&ring.jwks_json()).contains(&old));
    f.clock.advance(Span::minutes(11) + Span::seconds(1));
    assert_eq!(
        ring.purge_removed().await.unwrap_or_else(|e| panic!("{e}")),
        1
    );
    assert!(f.records().await.iter().all(|r| r.kid != old));
    assert!(!String::from_utf8_lossy(&ring.jwks_json()).contains(&old));
    assert_eq!(f.records().await.len(), 2);
}

#[tokio::test]
async fn an_algorithm_left_without_a_current_key_gets_one_from_the_scheduler() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let current = current_kid(&ring);
    // As a `keys retire` run by a command whose configuration lacked the algorithm could
    // once leave it: no current key at all.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/k.db", f._dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("delete from signing_keys where kid = $1")
        .bind(&current)
        .execute(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.close().await;
    ring.reload().await.unwrap_or_else(|e| panic!("{e}"));
    let day = Duration::from_secs(86_400);
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::NeedsCurrent
    );
    ring.ensure_current(SigningAlg::RS256)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let records = f.records().await;
    assert_eq!(count(&records, KeyState::Current), 1);
    assert_eq!(count(&records, KeyState::Next), 1);
    assert!(ring.current_kid().is_some_and(|k| k != current));
    assert_eq!(
        ring.rotation_due(SigningAlg::RS256, 30 * day, day),
        RotationDue::No
    );
}

#[tokio::test]
async fn retiring_without_a_successor_is_only_for_algorithms_not_configured() {
    let f = Fixture::new().await;
    let ring = f.ring().await;
    let current = current_kid(&ring);
    let refused = ring
        .retire_with(&current, Successor::None, &crate::audit::Actor::cli())
        .await;
    assert!(
        matches!(refused, Err(KeyError::StillConfigured(SigningAlg::RS256))),
        "{refused:?}"
    );
    assert_eq!(ring.current_kid(), Some(current));
    assert_eq!(count(&f.records().await, KeyState::Retired), 0);
}
