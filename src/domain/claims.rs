//! The user claims Portcullis holds, the scope that releases each (OpenID Connect Core
//! §5.4), and the `claims` request parameter (Core §5.5) that asks for them one by one.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::scope::ScopeSet;

/// Longest `claims` parameter accepted, in bytes: it travels through the login
/// transaction, so it must not be able to bloat storage.
pub const MAX_CLAIMS_LEN: usize = 4096;

/// The user claims Portcullis holds (Core §5.1), each with the scope that releases it
/// (Core §5.4). `sub` is always released and is not listed.
pub const USER_CLAIMS: [(&str, &str); 5] = [
    ("name", "profile"),
    ("preferred_username", "profile"),
    ("updated_at", "profile"),
    ("email", "email"),
    ("email_verified", "email"),
];

/// The scope that releases `claim`, for claims Portcullis holds.
pub fn scope_of(claim: &str) -> Option<&'static str> {
    USER_CLAIMS
        .iter()
        .find(|(name, _)| *name == claim)
        .map(|(_, scope)| *scope)
}

/// The claims released to a client beyond what its scope releases: what survives a
/// `claims` request once unknown names are dropped. Kept with the authorization code and
/// the refresh family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedClaims {
    /// Claims for the ID token (Core §5.5, `id_token` member).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub id_token: BTreeSet<String>,
    /// Claims for the UserInfo endpoint (Core §5.5, `userinfo` member).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub userinfo: BTreeSet<String>,
}

impl RequestedClaims {
    pub fn is_empty(&self) -> bool {
        self.id_token.is_empty() && self.userinfo.is_empty()
    }

    /// The scopes whose claims these are: what the user consents to by releasing them.
    pub fn scopes(&self) -> ScopeSet {
        ScopeSet::from_tokens(
            self.id_token
                .iter()
                .chain(&self.userinfo)
                .filter_map(|c| scope_of(c)),
        )
    }

    /// Only the claims whose scope is in `allowed` (e.g. the client's registered scopes).
    pub fn within(&self, allowed: &ScopeSet) -> Self {
        let keep = |set: &BTreeSet<String>| {
            set.iter()
                .filter(|c| scope_of(c).is_some_and(|s| allowed.contains(s)))
                .cloned()
                .collect()
        };
        Self {
            id_token: keep(&self.id_token),
            userinfo: keep(&self.userinfo),
        }
    }
}

/// A parsed `claims` request parameter (OpenID Connect Core §5.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimsRequest {
    /// The claims Portcullis holds that were asked for; names it does not know are
    /// ignored (Core §5.5: claims that are not understood are ignored).
    pub release: RequestedClaims,
    /// The subjects the End-User must be one of when `sub` is asked for with `value` or
    /// `values` (Core §5.5.1): the intersection over both members, so empty means no one.
    pub sub: Option<BTreeSet<String>>,
    /// `acr` asked for as an Essential Claim with `value` or `values` (Core §5.5.1.1):
    /// the values, one of which the authentication must meet.
    pub essential_acr: Option<Vec<Value>>,
}

/// Why a `claims` parameter is malformed; the message is for the client's developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the claims parameter is longer than {MAX_CLAIMS_LEN} bytes")]
    TooLong,
    #[error("the claims parameter is not valid JSON")]
    NotJson,
    #[error("the claims parameter must be a JSON object")]
    NotObject,
    #[error("the claims parameter's {0} member must be a JSON object of claim names")]
    MemberNotObject(&'static str),
    // The claim's name is not echoed: it is the client's text, and error descriptions
    // are limited to NQSCHAR (RFC 6749 §4.1.2.1).
    #[error("every claim in claims.{member} must be null or a JSON object")]
    ClaimNotObject { member: &'static str, claim: String },
    #[error("the {field} member of a claim in claims.{member} must be {expected}")]
    BadField {
        member: &'static str,
        claim: String,
        field: &'static str,
        expected: &'static str,
    },
}

/// The members of a `claims` request that name claims (Core §5.5); others are ignored.
const MEMBERS: [&str; 2] = ["userinfo", "id_token"];

impl ClaimsRequest {
    /// Core §5.5: a JSON object whose optional `userinfo` and `id_token` members map
    /// claim names to `null` or `{"essential": bool, "value": any, "values": [any]}`
    /// (§5.5.1). Members and fields the spec does not define are ignored.
    pub fn parse(raw: &str) -> Result<Self, ClaimsError> {
        if raw.len() > MAX_CLAIMS_LEN {
            return Err(ClaimsError::TooLong);
        }
        let value: Value = serde_json::from_str(raw).map_err(|_| ClaimsError::NotJson)?;
        let Value::Object(top) = value else {
            return Err(ClaimsError::NotObject);
        };
        let mut request = Self::default();
        for member in MEMBERS {
            let Some(entries) = top.get(member) else {
                continue;
            };
            let Value::Object(entries) = entries else {
                return Err(ClaimsError::MemberNotObject(member));
            };
            for (claim, spec) in entries {
                let spec = ClaimSpec::parse(member, claim, spec)?;
                request.add(member, claim, spec);
            }
        }
        Ok(request)
    }

    fn add(&mut self, member: &'static str, claim: &str, spec: ClaimSpec) {
        match claim {
            "sub" => {
                if let Some(wanted) = spec.wanted() {
                    let subjects: BTreeSet<String> = wanted
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect();
                    self.sub = Some(match self.sub.take() {
                        Some(before) => before.intersection(&subjects).cloned().collect(),
                        None => subjects,
                    });
                }
            }
            "acr" => {
                if let (true, Some(wanted)) = (spec.essential, spec.wanted()) {
                    self.essential_acr
                        .get_or_insert_with(Vec::new)
                        .extend(wanted);
                }
            }
            _ if scope_of(claim).is_some() => {
                let set = if member == "id_token" {
                    &mut self.release.id_token
                } else {
                    &mut self.release.userinfo
                };
                set.insert(claim.to_owned());
            }
            _ => {}
        }
    }

    /// Whether the End-User `subject` may be the one this request is answered for.
    pub fn allows_subject(&self, subject: &str) -> bool {
        self.sub.as_ref().is_none_or(|subs| subs.contains(subject))
    }
}

/// One individual claim request (Core §5.5.1).
#[derive(Debug, Default)]
struct ClaimSpec {
    essential: bool,
    value: Option<Value>,
    values: Option<Vec<Value>>,
}

impl ClaimSpec {
    fn parse(member: &'static str, claim: &str, spec: &Value) -> Result<Self, ClaimsError> {
        let fields: &Map<String, Value> = match spec {
            Value::Null => return Ok(Self::default()),
            Value::Object(fields) => fields,
            _ => {
                return Err(ClaimsError::ClaimNotObject {
                    member,
                    claim: claim.to_owned(),
                });
            }
        };
        let bad = |field, expected| ClaimsError::BadField {
            member,
            claim: claim.to_owned(),
            field,
            expected,
        };
        let essential = match fields.get("essential") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("essential", "true or false")),
        };
        let values = match fields.get("values") {
            None | Some(Value::Null) => None,
            Some(Value::Array(values)) => Some(values.clone()),
            Some(_) => return Err(bad("values", "a JSON array")),
        };
        Ok(Self {
            essential,
            value: fields.get("value").filter(|v| !v.is_null()).cloned(),
            values,
        })
    }

    /// The values asked for, `value` and `values` together; None when neither is given.
    fn wanted(&self) -> Option<Vec<Value>> {
        if self.value.is_none() && self.values.is_none() {
            return None;
        }
        Some(
            self.value
                .iter()
                .chain(self.values.iter().flatten())
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn known_claims_are_kept_per_member_and_unknown_ones_ignored() {
        let parsed = ClaimsRequest::parse(
            r#"{"userinfo": {"name": null, "email": {"essential": true}, "phone_number": null},
                "id_token": {"email_verified": {"value": true}, "shoe_size": {"essential": true},
                             "auth_time": {"essential": true}},
                "other": 42}"#,
        );
        let Ok(parsed) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(parsed.release.userinfo, set(&["email", "name"]));
        assert_eq!(parsed.release.id_token, set(&["email_verified"]));
        assert_eq!(
            parsed.release.scopes(),
            ScopeSet::from_tokens(["email", "profile"])
        );
        assert_eq!(parsed.sub, None);
        assert_eq!(parsed.essential_acr, None);
        let within = parsed
            .release
            .within(&ScopeSet::from_tokens(["openid", "email"]));
        assert_eq!(within.userinfo, set(&["email"]));
        assert_eq!(within.id_token, set(&["email_verified"]));
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let cases = [
            ("x".repeat(MAX_CLAIMS_LEN + 1), ClaimsError::TooLong),
            ("{".into(), ClaimsError::NotJson),
            ("[]".into(), ClaimsError::NotObject),
            ("null".into(), ClaimsError::NotObject),
            (
                r#"{"userinfo": null}"#.into(),
                ClaimsError::MemberNotObject("userinfo"),
            ),
            (
                r#"{"id_token": ["email"]}"#.into(),
                ClaimsError::MemberNotObject("id_token"),
            ),
            (
                r#"{"id_token": {"foo": 1}}"#.into(),
                ClaimsError::ClaimNotObject {
                    member: "id_token",
                    claim: "foo".into(),
                },
            ),
            (
                r#"{"userinfo": {"email": {"essential": 1}}}"#.into(),
                ClaimsError::BadField {
                    member: "userinfo",
                    claim: "email".into(),
                    field: "essential",
                    expected: "true or false",
                },
            ),
            (
                r#"{"userinfo": {"email": {"values": "a"}}}"#.into(),
                ClaimsError::BadField {
                    member: "userinfo",
                    claim: "email".into(),
                    field: "values",
                    expected: "a JSON array",
                },
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(ClaimsRequest::parse(&raw), Err(expected), "{raw}");
        }
    }

    #[test]
    fn sub_values_from_both_members_must_all_hold() {
        let Ok(one) = ClaimsRequest::parse(r#"{"id_token": {"sub": {"value": "a"}}}"#) else {
            panic!("parses");
        };
        assert!(one.allows_subject("a"));
        assert!(!one.allows_subject("b"));
        let Ok(both) = ClaimsRequest::parse(
            r#"{"id_token": {"sub": {"values": ["a", "b"]}}, "userinfo": {"sub": {"value": "b"}}}"#,
        ) else {
            panic!("parses");
        };
        assert!(both.allows_subject("b"));
        assert!(!both.allows_subject("a"));
        let Ok(number) = ClaimsRequest::parse(r#"{"id_token": {"sub": {"value": 7}}}"#) else {
            panic!("parses");
        };
        assert!(!number.allows_subject("7"));
        let Ok(plain) = ClaimsRequest::parse(r#"{"id_token": {"sub": {"essential": true}}}"#)
        else {
            panic!("parses");
        };
        assert!(plain.allows_subject("anyone"));
    }

    #[test]
    fn only_an_essential_acr_with_values_is_a_demand() {
        let acr = |raw: &str| ClaimsRequest::parse(raw).map(|r| r.essential_acr);
        assert_eq!(
            acr(r#"{"id_token": {"acr": {"essential": true, "values": ["gold"]}}}"#),
            Ok(Some(vec![Value::from("gold")]))
        );
        assert_eq!(
            acr(r#"{"id_token": {"acr": {"values": ["gold"]}}}"#),
            Ok(None)
        );
        assert_eq!(
            acr(r#"{"id_token": {"acr": {"essential": true}}}"#),
            Ok(None)
        );
    }
}
