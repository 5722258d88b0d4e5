//! The login cookie and the browser-binding cookie of sign-in forms.
//!
//! SECURITY (DESIGN.md principle 1): `HttpOnly; Secure; SameSite=Lax; Path=/`, with the
//! `__Host-` prefix when the issuer is https (no Domain attribute, so no subdomain can
//! set or read it). Browsers treat http://localhost and 127.0.0.1 as secure contexts, so
//! `Secure` works in local development too.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};

use crate::app::CookieNames;

/// Where the refresh cookie is sent: the token endpoint only.
const REFRESH_PATH: &str = "/token";

/// A refresh token for a browser app (DESIGN.md, OAuth 2.0 for Browser-Based Apps §6.1):
/// `HttpOnly` so no script, injected or not, can read it; `SameSite=Strict` so no other
/// site can make the browser send it; `Path=/token` so it goes nowhere else.
pub fn refresh_cookie(name: &str, value: &str, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(name.to_owned(), value.to_owned())
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path(REFRESH_PATH)
        .max_age(CookieDuration::seconds(max_age_secs.max(0)))
        .finish()
}

/// Makes the browser drop a refresh cookie.
pub fn refresh_removal(name: &str) -> Cookie<'static> {
    refresh_cookie(name, "", 0)
}

/// How long a browser keeps its binding cookie (it carries no authority by itself).
const BINDING_MAX_AGE_SECS: i64 = 24 * 3600;

fn base(name: &str, value: String) -> Cookie<'static> {
    Cookie::build(name.to_owned(), value)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .path("/")
        .finish()
}

/// The session cookie; `max_age_secs` is the session's remaining absolute lifetime.
pub fn session_cookie(names: &CookieNames, value: &str, max_age_secs: i64) -> Cookie<'static> {
    let mut c = base(&names.session, value.to_owned());
    c.set_max_age(CookieDuration::seconds(max_age_secs.max(0)));
    c
}

pub fn binding_cookie(names: &CookieNames, value: &str) -> Cookie<'static> {
    let mut c = base(&names.binding, value.to_owned());
    c.set_max_age(CookieDuration::seconds(BINDING_MAX_AGE_SECS));
    c
}

/// A cookie that makes the browser drop `name` (same attributes, empty, Max-Age=0).
pub fn removal(name: &str) -> Cookie<'static> {
    let mut c = base(name, String::new());
    c.set_max_age(CookieDuration::ZERO);
    c
}

/// The value of cookie `name`, if the request carries exactly one of that name.
pub fn read(req: &HttpRequest, name: &str) -> Option<String> {
    let cookies = req.cookies().ok()?;
    let mut matching = cookies.iter().filter(|c| c.name() == name);
    let first = matching.next()?;
    // Two cookies of one name mean someone is trying to shadow ours: trust neither.
    matching.next().is_none().then(|| first.value().to_owned())
}
