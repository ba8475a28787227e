//! The admin token that authorises the console's only writes (re-driving
//! dead letters). Compared in constant time, on SHA-256 digests so that
//! not even the token's length leaks through timing.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ConsoleError;

/// The configured token (its digest), or none: admin actions disabled.
#[derive(Clone)]
pub struct AdminToken {
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("enabled", &self.enabled())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl AdminToken {
    /// Admin actions need `token`; `None` disables them.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            digest: token.filter(|t| !t.is_empty()).map(digest),
        }
    }

    /// Whether admin actions are enabled at all.
    pub fn enabled(&self) -> bool {
        self.digest.is_some()
    }

    /// Checks the token a request presented: `Authorization: Bearer <token>`
    /// or `form_token` (the form's field), the header first. 403 when admin
    /// actions are disabled or the token is wrong, 401 when there is none.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        form_token: Option<&str>,
    ) -> Result<(), ConsoleError> {
        let Some(expected) = &self.digest else {
            return Err(ConsoleError::Forbidden(
                "re-drive is disabled: the console was started without CONSOLE_ADMIN_TOKEN"
                    .to_owned(),
            ));
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let presented = bearer
            .or(form_token)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ConsoleError::Unauthorized(
                    "re-drive needs the admin token (the form's token field or `Authorization: Bearer`)"
                        .to_owned(),
                )
            })?;
        if bool::from(digest(presented).ct_eq(expected)) {
            Ok(())
        } else {
            tracing::warn!("re-drive refused: wrong admin token");
            Err(ConsoleError::Forbidden("wrong admin token".to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn status(token: &AdminToken, headers: &HeaderMap, form: Option<&str>) -> Option<u16> {
        token
            .authorize(headers, form)
            .err()
            .map(|e| e.to_problem().status)
    }

    #[test]
    fn tokens_are_checked() {
        let none = HeaderMap::new();
        let disabled = AdminToken::new(None);
        assert_eq!(status(&disabled, &none, Some("anything")), Some(403));
        assert_eq!(
            status(&AdminToken::new(Some("")), &none, Some("")),
            Some(403)
        );

        let token = AdminToken::new(Some("s3cret"));
        assert_eq!(status(&token, &none, None), Some(401));
        assert_eq!(status(&token, &none, Some("  ")), Some(401));
        assert_eq!(status(&token, &none, Some("s3cre")), Some(403));
        assert_eq!(status(&token, &none, Some("s3cret")), None);
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(status(&token, &bearer, None), None);
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert_eq!(status(&token, &bearer, Some("s3cret")), Some(403));
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
