//! `portcullis serve --demo`: seeds a demo user and the example SPA's client (if they do
//! not exist) and serves the example SPA (examples/spa) on its own origin, so a newcomer
//! can sign in through a real single-page app with one command. Development only.

use std::net::TcpListener;

use actix_web::http::header;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use serde_json::json;

use crate::audit::{Actor, AuditEvent, AuditKind, Outcome};
use crate::clients::Registration;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::client::TokenDelivery;
use crate::domain::client::{ClientId, ClientKind};
use crate::domain::user::{NewUser, Password, Username};
use crate::password::PasswordHasher;
use crate::storage::{Store, StoreError};

pub const DEMO_USERNAME: &str = "demo";
pub const DEMO_PASSWORD: &str = "portcullis-demo";
pub const DEMO_CLIENT_ID: &str = "demo-spa";
const SCOPE: &str = "openid profile email";

const INDEX_HTML: &str = include_str!("../examples/spa/index.html");
const APP_JS: &str = include_str!("../examples/spa/app.js");
const APP_CSS: &str = include_str!("../examples/spa/app.css");
const FAVICON: &str = include_str!("../static/favicon.svg");

/// Where the demo SPA lives and how it reaches the provider.
#[derive(Debug, Clone)]
pub struct DemoApp {
    /// `http://host:port` of the SPA.
    pub origin: String,
    pub issuer: String,
}

impl DemoApp {
    pub fn redirect_uri(&self) -> String {
        format!("{}/callback", self.origin)
    }

    pub fn post_logout_redirect_uri(&self) -> String {
        format!("{}/", self.origin)
    }
}

/// Creates the demo user and the SPA's client when missing. A client registered for
/// another origin (the SPA moved to another port) is replaced.
pub async fn seed(
    store: &dyn Store,
    settings: &Settings,
    clock: &dyn Clock,
    app: &DemoApp,
) -> anyhow::Result<()> {
    let actor = Actor::cli();
    let now = clock.now();
    let username = Username::parse(DEMO_USERNAME).context("demo username")?;
    if store.find_user(&username).await?.is_none() {
        let hasher = PasswordHasher::new(&settings.password)?;
        let hash = hasher
            .hash(Password::presented(DEMO_PASSWORD.to_owned()).context("demo password")?)
            .await?;
        let audit = AuditEvent::new(now, AuditKind::UserCreated, Outcome::Success, &actor)
            .detail("username", DEMO_USERNAME)
            .detail("demo", true);
        match store
            .create_user(
                &NewUser {
                    username,
                    email: Some("demo@example.com".into()),
                    name: Some("Demo User".into()),
                    password_hash: Some(hash),
                },
                now,
                &audit,
            )
            .await
        {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let id = ClientId::parse(DEMO_CLIENT_ID).context("demo client id")?;
    if let Some(existing) = store.find_client(&id).await? {
        if existing.redirect_uris.len() == 1 && existing.redirect_uris[0] == app.redirect_uri() {
            return Ok(());
        }
        crate::clients::delete(store, &id, now, &actor).await?;
    }
    crate::clients::register(
        store,
        Registration {
            client_id: Some(DEMO_CLIENT_ID.into()),
            name: "Acme Notes (demo SPA)".into(),
            kind: ClientKind::Spa,
            auth_method: None,
            redirect_uris: vec![app.redirect_uri()],
            post_logout_redirect_uris: vec![app.post_logout_redirect_uri()],
            allowed_origins: vec![app.origin.clone()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: SCOPE.split(' ').map(str::to_owned).collect(),
            first_party: false,
            refresh_token_delivery: TokenDelivery::Cookie,
            id_token_signed_response_alg: None,
            require_pkce: true,
            introspection: false,
            require_mfa: false,
        },
        now,
        &actor,
    )
    .await
    .context("registering the demo SPA client")?;
    Ok(())
}

/// The example SPA's own little web server, with a strict CSP of its own: scripts and
/// styles from itself only, network calls to itself and the provider only.
pub fn spa_server(listener: TcpListener, app: DemoApp) -> anyhow::Result<actix_web::dev::Server> {
    let config = json!({
        "issuer": app.issuer,
        "client_id": DEMO_CLIENT_ID,
        "redirect_uri": app.redirect_uri(),
        "post_logout_redirect_uri": app.post_logout_redirect_uri(),
        "scope": SCOPE,
    })
    .to_string();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' {}; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
        app.issuer
    );
    let server = HttpServer::new(move || {
        let config = config.clone();
        let csp = csp.clone();
        let page = move |ct: &'static str, body: &'static str| {
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, ct))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(body)
        };
        App::new()
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, csp))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    // The authorization code arrives in the URL: never leak it.
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((header::X_FRAME_OPTIONS, "DENY")),
            )
            .route(
                "/",
                web::get().to(move || async move { page("text/html; charset=utf-8", INDEX_HTML) }),
            )
            .route(
                "/callback",
                web::get().to(move || async move { page("text/html; charset=utf-8", INDEX_HTML) }),
            )
            .route(
                "/app.js",
                web::get()
                    .to(move || async move { page("text/javascript; charset=utf-8", APP_JS) }),
            )
            .route(
                "/app.css",
                web::get().to(move || async move { page("text/css; charset=utf-8", APP_CSS) }),
            )
            .route(
                "/favicon.svg",
                web::get().to(move || async move { page("image/svg+xml", FAVICON) }),
            )
            .route(
                "/config.json",
                web::get().to(move || {
                    let config = config.clone();
                    async move {
                        HttpResponse::Ok()
                            .insert_header((header::CACHE_CONTROL, "no-store"))
                            .content_type("application/json")
                            .body(config)
                    }
                }),
            )
    })
    .workers(1)
    .listen(listener)?
    .run();
    Ok(server)
}
