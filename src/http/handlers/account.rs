//! `/account`: who is signed in, their two-step verification, their active sessions, and
//! signing them out. The second factors' own forms are in `account_factors`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::logout::signed_out;
use super::{actor, request_ip, see_other};
use crate::app::AppState;
use crate::auth::CurrentSession;
use crate::domain::mfa::RECOVERY_CODES;
use crate::domain::secret::constant_time_eq;
use crate::domain::session::{SessionId, describe_device};
use crate::http::error::PageError;
use crate::http::extract::{RequiredSession, SameOrigin};
use crate::http::form::StrictForm;
use crate::http::pages::{self, AccountPage, FactorRow, SecurityView, SessionView};
use crate::storage::FactorKind;
use crate::urlencoded::parse_pairs;

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf_token: String,
}

pub async fn home() -> HttpResponse {
    see_other("/account")
}

/// The confirmations `/account?notice=…` shows: fixed messages, never the query's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    TotpAdded,
    FactorRemoved,
    PasskeyAdded,
    FactorRenamed,
}

impl Notice {
    const ALL: [Self; 4] = [
        Self::TotpAdded,
        Self::FactorRemoved,
        Self::PasskeyAdded,
        Self::FactorRenamed,
    ];

    pub fn param(self) -> &'static str {
        match self {
            Self::TotpAdded => "totp-added",
            Self::FactorRemoved => "factor-removed",
            Self::PasskeyAdded => "passkey-added",
            Self::FactorRenamed => "factor-renamed",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::TotpAdded => {
                "Your authenticator app was added. You will be asked for a code from it when \
                 you sign in."
            }
            Self::FactorRemoved => "The authenticator app was removed from your account.",
            Self::PasskeyAdded => "Your passkey was added. You can use it to sign in.",
            Self::FactorRenamed => "The name was changed.",
        }
    }

    /// The notice a query string names, if it names one of ours.
    fn from_query(query: &str) -> Option<Self> {
        let pairs = parse_pairs(query.as_bytes()).ok()?;
        let wanted = pairs.get("notice")?;
        Self::ALL.into_iter().find(|n| n.param() == wanted)
    }

    /// 303 to the account page showing this notice.
    pub fn redirect(self) -> HttpResponse {
        see_other(&format!("/account?notice={}", self.param()))
    }
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    RequiredSession(current): RequiredSession,
) -> Result<HttpResponse, PageError> {
    let notice = Notice::from_query(req.query_string());
    let sessions: Vec<SessionView> = state
        .auth
        .sessions_of(&current)
        .await?
        .into_iter()
        .map(|s| SessionView {
            id: s.id.to_string(),
            device: describe_device(s.user_agent.as_deref()),
            ip: s.ip.clone().unwrap_or_else(|| "unknown".into()),
            last_seen: pages::format_time(s.last_seen_at),
            signed_in: pages::format_time(s.auth_time),
            current: s.id == current.session.id,
        })
        .collect();
    let summary = state.auth.factors.summary(current.user.id).await?;
    let rows = |kind: FactorKind| {
        summary
            .factors
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| FactorRow {
                id: f.id.to_string(),
                name: f.name.clone(),
                added: pages::format_time(f.created_at),
                last_used: f.last_used_at.map(pages::format_time),
            })
            .collect()
    };
    let security = SecurityView {
        factors: rows(FactorKind::Totp),
        passkeys: rows(FactorKind::Passkey),
        passkeys_available: state.auth.factors.passkeys_available(),
        any_factor: !summary.factors.is_empty(),
        recovery_remaining: summary.recovery_codes.remaining,
        recovery_total: RECOVERY_CODES,
        recovery_code_used: summary.recovery_codes.last_used_at.map(pages::format_time),
    };
    // `login.require_mfa`: a user without a second factor is asked to set one up here,
    // where every sign-in without one lands, and no application signs them in until then.
    let required = (state.auth.require_mfa && summary.factors.is_empty()).then_some(
        "Your organisation requires two-step verification. Set up an authenticator app \
         below before you continue to an application.",
    );
    let csrf = current.csrf_token();
    let user = &current.user;
    let html = pages::render(&AccountPage {
        css_href: pages::css_href(),
        csrf_token: &csrf,
        display_name: user.display_name(),
        username: user.username.as_str(),
        email: user.email.as_deref(),
        sessions: &sessions,
        notice: required.or(notice.map(Notice::message)),
        security: &security,
    });
    let mut builder = pages::html_builder(StatusCode::OK);
    if security.passkeys_available {
        // The "Add a passkey" script fetches its options from this origin.
        builder.insert_header((
            "Content-Security-Policy",
            pages::csp_with_fetch_self(crate::http::middleware::PAGE_CSP),
        ));
    }
    Ok(builder.body(html))
}

pub async fn revoke_one(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    StrictForm(form): StrictForm<CsrfForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
) -> Result<HttpResponse, PageError> {
    check_csrf(&current, &form)?;
    let target = Uuid::parse_str(&path.into_inner())
        .map(SessionId)
        .map_err(|_| PageError::NotFound)?;
    let actor = actor(request_ip(&req, &state));
    state
        .auth
        .revoke_own_session(&current, target, &actor)
        .await?;
    if target == current.session.id {
        return Ok(signed_out(&state));
    }
    Ok(see_other("/account"))
}

pub async fn revoke_all(
    req: HttpRequest,
    state: web::Data<AppState>,
    StrictForm(form): StrictForm<CsrfForm>,
    _: SameOrigin,
    RequiredSession(current): RequiredSession,
) -> Result<HttpResponse, PageError> {
    check_csrf(&current, &form)?;
    let actor = actor(request_ip(&req, &state));
    state.auth.revoke_all_sessions(&current, &actor).await?;
    Ok(signed_out(&state))
}

/// Every account form carries the session's synchronizer token.
fn check_csrf(current: &CurrentSession, form: &CsrfForm) -> Result<(), PageError> {
    check_csrf_token(current, &form.csrf_token)
}

pub(super) fn check_csrf_token(current: &CurrentSession, token: &str) -> Result<(), PageError> {
    // SECURITY: synchronizer token bound to this session, compared in constant time.
    if !constant_time_eq(&current.csrf_token(), token) {
        return Err(PageError::Forbidden(
            "This request could not be verified. Please reload your account page and try again."
                .into(),
        ));
    }
    Ok(())
}
