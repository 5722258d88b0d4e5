//! The askama pages (escaping on by default) and the one stylesheet they use.

use std::sync::OnceLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;
use sha2::{Digest, Sha256};

/// Embedded so the binary is self-contained.
pub const CSS: &str = include_str!("../../static/portcullis.css");

/// The stylesheet URL with a content hash, so it can be cached forever.
pub fn css_href() -> &'static str {
    static HREF: OnceLock<String> = OnceLock::new();
    HREF.get_or_init(|| {
        let digest = Sha256::digest(CSS.as_bytes());
        let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("/static/portcullis.css?v={tag}")
    })
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub css_href: &'a str,
    pub tx: &'a str,
    pub csrf_token: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub username_error: Option<&'a str>,
    pub password_error: Option<&'a str>,
    pub notice: Option<&'a str>,
    pub client_name: Option<&'a str>,
    /// Offer "Sign in with a passkey" (the relying party is configured).
    pub passkeys: bool,
}

#[derive(Template)]
#[template(path = "second_factor.html")]
pub struct SecondFactorPage<'a> {
    pub css_href: &'a str,
    pub tx: &'a str,
    pub csrf_token: &'a str,
    pub error: Option<&'a str>,
    pub code_error: Option<&'a str>,
    pub client_name: Option<&'a str>,
    /// The user has a passkey: offer "Use your passkey".
    pub passkey: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub css_href: &'a str,
    pub csrf_token: &'a str,
    pub display_name: &'a str,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub sessions: &'a [SessionView],
    pub notice: Option<&'a str>,
    pub security: &'a SecurityView,
}

/// The account page's two-step verification section.
#[derive(Debug, Clone)]
pub struct SecurityView {
    /// Authenticator apps.
    pub factors: Vec<FactorRow>,
    pub passkeys: Vec<FactorRow>,
    /// Registration is possible (the relying party is configured).
    pub passkeys_available: bool,
    /// Any second factor (an app or a passkey): recovery codes are shown.
    pub any_factor: bool,
    /// Unused recovery codes (shown only with a factor).
    pub recovery_remaining: u32,
    pub recovery_total: usize,
    /// When a recovery code was last used, if one of the current set was.
    pub recovery_code_used: Option<String>,
}

impl SecurityView {
    /// Few enough recovery codes left to suggest a new set.
    pub fn recovery_low(&self) -> bool {
        self.recovery_remaining <= 3
    }
}

/// One authenticator in the account page's list.
#[derive(Debug, Clone)]
pub struct FactorRow {
    pub id: String,
    pub name: String,
    pub added: String,
    pub last_used: Option<String>,
}

/// Setting up an authenticator app: the QR code, the key for manual entry, and the form
/// that confirms it with a first code. `setup` is `None` when the enrollment is gone.
#[derive(Template)]
#[template(path = "totp_setup.html")]
pub struct TotpSetupPage<'a> {
    pub css_href: &'a str,
    pub csrf_token: &'a str,
    pub setup: Option<TotpSetupView>,
    /// The name typed (or the default).
    pub name: &'a str,
    pub name_max: usize,
    /// Why the code typed was not accepted.
    pub error: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct TotpSetupView {
    pub factor_id: String,
    /// The base32 secret in groups of four, for typing.
    pub secret_grouped: String,
    /// The `otpauth://` URI (a link for authenticator apps on this device).
    pub otpauth_uri: String,
    /// An inline `<svg>` rendered by us from `otpauth_uri` (never user input).
    pub qr_svg: Option<String>,
}

/// A new set of recovery codes, shown once.
#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage<'a> {
    pub css_href: &'a str,
    pub codes: &'a [String],
    /// The codes came with a newly added (first) authenticator.
    pub enrolled: bool,
}

/// `ABCD EFGH IJKL …`: a secret in groups of four characters.
pub fn group_in_fours(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One row of the account page's session list.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub last_seen: String,
    pub signed_in: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub css_href: &'a str,
    pub tx: &'a str,
    pub csrf_token: &'a str,
    pub client_name: &'a str,
    pub username: &'a str,
    /// The scopes in plain words.
    pub scopes: &'a [String],
    pub redirect_host: &'a str,
}

/// RP-Initiated Logout 1.0 §2: "Sign out of Portcullis?", with the request's parameters
/// carried in hidden fields (validated again when the form is posted).
#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub css_href: &'a str,
    pub csrf_token: &'a str,
    pub username: &'a str,
    pub client_name: Option<&'a str>,
    /// Where the browser goes afterwards (host, or scheme for native apps).
    pub redirect_host: Option<&'a str>,
    pub id_token_hint: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
}

/// After an RP-initiated logout that does not return to the application.
#[derive(Template)]
#[template(path = "signed_out.html")]
pub struct SignedOutPage<'a> {
    pub css_href: &'a str,
    pub client_name: Option<&'a str>,
    /// A link back to the application (a registered target the browser was not
    /// redirected to automatically).
    pub return_to: Option<&'a str>,
}

/// OAuth 2.0 Form Post Response Mode: a form that submits itself to the client.
#[derive(Template)]
#[template(path = "form_post.html")]
pub struct FormPostPage<'a> {
    pub css_href: &'a str,
    pub action: &'a str,
    pub params: &'a [(String, String)],
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub css_href: &'a str,
    pub status: u16,
    pub title: &'a str,
    pub message: &'a str,
    pub request_id: &'a str,
}

/// Renders a page; a template failure (a bug, not input) degrades to a plain message.
pub fn render(page: &impl Template) -> String {
    page.render().unwrap_or_else(|error| {
        tracing::error!(%error, "template rendering failed");
        "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_owned()
    })
}

/// An HTML response that is never cached (pages carry CSRF tokens and personal data).
pub fn html(status: StatusCode, body: String) -> HttpResponse {
    html_builder(status).body(body)
}

pub fn html_builder(status: StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    ))
    .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    b
}

/// The page CSP with `form-action` extended to `target` (a form post that ends, through
/// redirects, at a client: Chromium applies form-action to the whole redirect chain).
pub fn csp_with_form_target(target: Option<&str>) -> String {
    let base = super::middleware::PAGE_CSP;
    match target {
        Some(t) if is_safe_csp_source(t) => {
            base.replace("form-action 'self'", &format!("form-action 'self' {t}"))
        }
        _ => base.to_owned(),
    }
}

/// `csp` allowing the page's script to fetch from its own origin (`connect-src 'self'`):
/// the pages whose passkey buttons ask `/…/passkeys/options` for a ceremony.
pub fn csp_with_fetch_self(csp: &str) -> String {
    csp.replace("img-src 'self';", "img-src 'self'; connect-src 'self';")
}

/// A CSP source must not smuggle in directives or extra sources.
fn is_safe_csp_source(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/.-+[]".contains(&b))
}

/// `2026-11-23 18:40 UTC`
pub fn format_time(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}
