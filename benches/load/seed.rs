//! Seeding through the library, on the server's database: clients, users and
//! authorization codes, so that the scenarios measure the endpoints and not the set-up.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use portcullis::audit::{Actor, AuditEvent, AuditKind, Outcome};
use portcullis::clients::Registration;
use portcullis::domain::client::ClientKind;
use portcullis::domain::pkce::CodeChallenge;
use portcullis::domain::scope::ScopeSet;
use portcullis::domain::secret::OpaqueToken;
use portcullis::domain::session::BrowserSession;
use portcullis::domain::user::{NewUser, Password, User, Username};
use portcullis::password::PasswordHasher;
use portcullis::storage::{AuthorizationCodeRecord, IssueCode, Store};
use time::OffsetDateTime;

use crate::common::{PASSWORD, REDIRECT_URI};

/// Creates `count` authorization codes of `client` in `session`, straight in the database.
pub async fn seed_codes(
    store: &Arc<dyn Store>,
    client: &'static str,
    user: &User,
    session: &BrowserSession,
    challenge: &str,
    count: usize,
) -> Result<Vec<String>> {
    let workers = 4;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = Arc::clone(store);
        let (user_id, session) = (user.id, session.clone());
        let challenge = challenge.to_owned();
        let n = count / workers + usize::from(w < count % workers);
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::with_capacity(n);
            let actor = Actor::cli();
            let scope = ScopeSet::from_tokens(["openid", "profile", "email"]);
            let client_id = portcullis::domain::client::ClientId::parse(client)?;
            for _ in 0..n {
                let now = OffsetDateTime::now_utc();
                let code = OpaqueToken::generate();
                let record = AuthorizationCodeRecord {
                    code_hash: code.hash(),
                    client_id: client_id.clone(),
                    user_id,
                    session_id: session.id,
                    redirect_uri: REDIRECT_URI.into(),
                    scope: scope.clone(),
                    nonce: Some("bench-nonce".into()),
                    code_challenge: Some(CodeChallenge::from_trusted(challenge.clone())),
                    auth_time: session.auth_time,
                    amr: session.amr.clone(),
                    claims: Default::default(),
                    created_at: now,
                    // Longer than the server's 60 s so that slow runs do not expire them.
                    expires_at: now + time::Duration::hours(1),
                };
                let audit = [
                    AuditEvent::new(now, AuditKind::CodeIssued, Outcome::Success, &actor)
                        .user(user_id)
                        .session(session.id)
                        .client(client),
                ];
                let issued = store
                    .issue_code(
                        &IssueCode {
                            transaction: None,
                            consent: None,
                            code: &record,
                            audit: &audit,
                        },
                        now,
                    )
                    .await?;
                if !issued {
                    bail!("issue_code refused a seeded code");
                }
                codes.push(code.expose().to_owned());
            }
            Ok::<_, anyhow::Error>(codes)
        }));
    }
    let mut codes = Vec::with_capacity(count);
    for t in tasks {
        codes.extend(t.await.context("a seeding task panicked")??);
    }
    Ok(codes)
}

pub async fn create_user(
    store: &dyn Store,
    hasher: &PasswordHasher,
    username: &str,
) -> Result<User> {
    let hash = hasher
        .hash(Password::presented(PASSWORD.into()).map_err(|e| anyhow!("{e}"))?)
        .await?;
    let now = OffsetDateTime::now_utc();
    let audit = AuditEvent::new(now, AuditKind::UserCreated, Outcome::Success, &Actor::cli());
    Ok(store
        .create_user(
            &NewUser {
                username: Username::parse(username).map_err(|e| anyhow!("{e}"))?,
                email: Some(format!("{username}@example.com")),
                name: Some("Bench User".into()),
                password_hash: Some(hash),
            },
            now,
            &audit,
        )
        .await?)
}

/// Registers a confidential client with `client_secret_basic`; returns its secret.
pub async fn register_client(
    store: &dyn Store,
    client_id: &str,
    grant_types: &[&str],
    scopes: &[&str],
    first_party: bool,
) -> Result<String> {
    let redirects = grant_types.contains(&"authorization_code");
    let (_, secret) = portcullis::clients::register(
        store,
        Registration {
            client_id: Some(client_id.into()),
            name: format!("Bench {client_id}"),
            kind: ClientKind::Confidential,
            auth_method: None,
            redirect_uris: if redirects {
                vec![REDIRECT_URI.into()]
            } else {
                vec![]
            },
            post_logout_redirect_uris: vec![],
            allowed_origins: vec![],
            grant_types: grant_types.iter().map(|g| (*g).to_owned()).collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            first_party,
            refresh_token_delivery: Default::default(),
            id_token_signed_response_alg: None,
            require_pkce: true,
            // The service is the resource server that introspects users' tokens
            // (RFC 7662 §4: it needs the permission).
            introspection: !redirects,
            require_mfa: false,
        },
        OffsetDateTime::now_utc(),
        &Actor::cli(),
    )
    .await?;
    Ok(secret
        .ok_or_else(|| anyhow!("a confidential client got no secret"))?
        .expose()
        .to_owned())
}
