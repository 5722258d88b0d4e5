//! The login transaction a sign-in form is bound to: opened when the form is served,
//! found again (in the same browser only) when it is posted, and where it leads after.

use crate::domain::secret::{OpaqueToken, constant_time_eq, kind};
use crate::storage::{LoginTransaction, StoreError};

use super::super::Authenticator;
use super::outcome::LiveForm;
use super::request::Browser;

/// Where a plain sign-in (not part of an authorization request) lands.
pub const DEFAULT_RETURN_TO: &str = "/account";

impl Authenticator {
    /// Creates the server-side record a sign-in form is bound to. Returns the
    /// transaction id to embed in the form; `binding` is the browser's binding cookie.
    pub async fn start_login(
        &self,
        binding: &OpaqueToken<kind::BrowserBinding>,
        return_to: &str,
        request: Option<serde_json::Value>,
    ) -> Result<OpaqueToken<kind::LoginTransaction>, StoreError> {
        let id = OpaqueToken::generate();
        let now = self.clock.now();
        self.store
            .insert_login_transaction(&LoginTransaction {
                id_hash: id.hash(),
                binding_hash: binding.hash(),
                return_to: return_to.to_owned(),
                request,
                created_at: now,
                expires_at: now + self.transaction_lifetime,
                session_id: None,
                second_step: None,
            })
            .await?;
        Ok(id)
    }

    /// Opens a plain sign-in form (landing on `DEFAULT_RETURN_TO`) for the browser at
    /// `ip`; `Err(retry_after)` when that address opened too many forms.
    pub async fn open_form(
        &self,
        binding: &OpaqueToken<kind::BrowserBinding>,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Result<OpaqueToken<kind::LoginTransaction>, u64>, StoreError> {
        if let Err(retry_after) = self.may_open_form(ip) {
            return Ok(Err(retry_after));
        }
        Ok(Ok(self
            .start_login(binding, DEFAULT_RETURN_TO, None)
            .await?))
    }

    /// The live transaction `id`, provided it was issued to this browser.
    pub async fn load_login(
        &self,
        id: &OpaqueToken<kind::LoginTransaction>,
        binding: &OpaqueToken<kind::BrowserBinding>,
    ) -> Result<Option<LoginTransaction>, StoreError> {
        let tx = self
            .store
            .find_login_transaction(&id.hash(), self.clock.now())
            .await?;
        // SECURITY: the form only works in the browser it was served to (login CSRF).
        Ok(tx.filter(|t| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                t.binding_hash.as_bytes(),
                binding.hash().as_bytes(),
            ))
        }))
    }

    /// The CSRF token of a sign-in form: bound to the transaction and the browser.
    pub fn login_csrf_token(
        id: &OpaqueToken<kind::LoginTransaction>,
        binding: &OpaqueToken<kind::BrowserBinding>,
    ) -> String {
        binding.derive("login-csrf", id.expose())
    }

    pub fn check_login_csrf(
        id: &OpaqueToken<kind::LoginTransaction>,
        binding: &OpaqueToken<kind::BrowserBinding>,
        presented: &str,
    ) -> bool {
        constant_time_eq(&Self::login_csrf_token(id, binding), presented)
    }

    /// The first check of a posted form: it names a live transaction, carries that
    /// transaction's CSRF token, and was served to this browser.
    pub(super) async fn live_form(
        &self,
        tx: Option<OpaqueToken<kind::LoginTransaction>>,
        csrf_token: &str,
        browser: &Browser<'_>,
    ) -> Result<Option<LiveForm>, StoreError> {
        let Some(tx) = tx else {
            return Ok(None);
        };
        // A new binding means the browser sent none: no form of ours can be bound to it.
        if browser.binding_is_new || !Self::check_login_csrf(&tx, browser.binding, csrf_token) {
            return Ok(None);
        }
        let transaction = self.load_login(&tx, browser.binding).await?;
        Ok(transaction.map(|transaction| LiveForm { tx, transaction }))
    }
}

/// Where a successful sign-in goes: the transaction's return path. It was chosen by the
/// server; still, anything but a plain local path is refused (browsers read `/\evil` as
/// `//evil`).
pub(super) fn return_to(transaction: &LoginTransaction) -> String {
    if is_local_path(&transaction.return_to) {
        transaction.return_to.clone()
    } else {
        DEFAULT_RETURN_TO.to_owned()
    }
}

/// `/path…`, but not `//host`, `/\\host` or anything with control characters.
fn is_local_path(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.contains('\\')
        && !target.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::is_local_path;

    #[test]
    fn only_plain_local_paths_are_redirect_targets() {
        assert!(is_local_path("/account"));
        assert!(is_local_path("/authorize/resume?tx=abc"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "account",
            "/a\nb",
            "",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
