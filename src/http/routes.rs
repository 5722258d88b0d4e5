//! The URL map.

use actix_web::web;

use super::handlers::{
    account, account_factors, assets, authorize, consent, discovery, health, login, logout,
    method_not_allowed, passkeys, second_factor, token, userinfo,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/static/portcullis.css", web::get().to(assets::stylesheet))
        .route(
            "/static/form_post.js",
            web::get().to(assets::form_post_script),
        )
        .route(
            "/static/passkeys.js",
            web::get().to(assets::passkeys_script),
        )
        .route("/favicon.svg", web::get().to(assets::favicon))
        .route("/favicon.ico", web::get().to(assets::favicon))
        .service(
            web::resource("/login")
                .route(web::get().to(login::show))
                .route(web::post().to(login::submit))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/login/second-factor")
                .route(web::post().to(second_factor::submit))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/login/passkey/options")
                .route(web::post().to(passkeys::login_options))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/login/passkey")
                .route(web::post().to(passkeys::login))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/passkeys/options")
                .route(web::post().to(passkeys::register_options))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/passkeys")
                .route(web::post().to(passkeys::register))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/factors/{factor_id}/rename")
                .route(web::post().to(passkeys::rename))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/logout")
                .route(web::get().to(logout::get))
                .route(web::post().to(logout::post))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/logout/confirm")
                .route(web::post().to(logout::confirm))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account")
                .route(web::get().to(account::show))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/sessions/revoke-all")
                .route(web::post().to(account::revoke_all))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/sessions/{session_id}/revoke")
                .route(web::post().to(account::revoke_one))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/totp")
                .route(web::post().to(account_factors::begin_totp))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/totp/confirm")
                .route(web::post().to(account_factors::confirm_totp))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/recovery-codes")
                .route(web::post().to(account_factors::regenerate_recovery_codes))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/account/factors/{factor_id}/remove")
                .route(web::post().to(account_factors::remove))
                .default_service(web::to(method_not_allowed)),
        )
        .route("/", web::get().to(account::home))
        .service(
            web::resource("/authorize")
                .route(web::get().to(authorize::get))
                .route(web::post().to(authorize::post))
                .default_service(web::to(method_not_allowed)),
        )
        .route("/authorize/resume", web::get().to(authorize::resume))
        .service(
            web::resource("/consent")
                .route(web::get().to(consent::show))
                .route(web::post().to(consent::submit))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/token")
                .route(web::post().to(token::token))
                .route(web::method(actix_web::http::Method::OPTIONS).to(discovery::preflight))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/revoke")
                .route(web::post().to(token::revoke))
                .route(web::method(actix_web::http::Method::OPTIONS).to(discovery::preflight))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/introspect")
                .route(web::post().to(token::introspect))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/userinfo")
                .route(web::get().to(userinfo::userinfo))
                .route(web::post().to(userinfo::userinfo))
                .route(web::method(actix_web::http::Method::OPTIONS).to(discovery::preflight))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/.well-known/openid-configuration")
                .route(web::get().to(discovery::openid_configuration))
                .route(web::method(actix_web::http::Method::OPTIONS).to(discovery::preflight)),
        )
        .service(
            web::resource("/.well-known/oauth-authorization-server")
                .route(web::get().to(discovery::oauth_metadata))
                .route(web::method(actix_web::http::Method::OPTIONS).to(discovery::preflight)),
        )
        .service(
            web::resource("/jwks.json")
                .route(web::get().to(discovery::jwks))
                .route(web::method(actix_web::http::Method::OPTIONS).to(discovery::preflight)),
        )
        // The admin API (JSON, bearer tokens with portcullis:admin): its routes and their
        // OpenAPI document come from one list in `admin`.
        .configure(crate::admin::configure);
}
