//! The URL map.

use actix_web::web;

use super::handlers::{account, assets, health, login, logout, method_not_allowed};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/static/portcullis.css", web::get().to(assets::stylesheet))
        .route("/favicon.svg", web::get().to(assets::favicon))
        .route("/favicon.ico", web::get().to(assets::favicon))
        .service(
            web::resource("/login")
                .route(web::get().to(login::show))
                .route(web::post().to(login::submit))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/logout")
                .route(web::post().to(logout::submit))
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
        .route("/", web::get().to(account::home));
}
