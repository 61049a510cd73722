//! Who may call what. Monitoring and feedback reveal data statistics: when the service listens
//! beyond loopback they need the bearer token from config. Predictions are open unless configured
//! to need it too.

use axum::http::{header, HeaderMap};

use crate::error::ApiError;

/// A secret string that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn matches(&self, offered: &str) -> bool {
        // Constant time in the offered token's content.
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Empty means "not set" (docker-compose passes ${INFERENCE_API_TOKEN:-} through).
        if !s.trim().is_empty() && s.trim().len() < 16 {
            return Err("the API token must be at least 16 characters".into());
        }
        Ok(Self(s.trim().to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Predict,
    Monitoring,
}

#[derive(Debug, Clone)]
pub struct Access {
    pub token: Option<Secret>,
    /// Listening on an address other than loopback.
    pub public: bool,
    pub protect_predict: bool,
}

impl Access {
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
        let needs_token = match scope {
            Scope::Predict => self.protect_predict,
            Scope::Monitoring => self.token.is_some() || self.public,
        };
        if !needs_token {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Err(ApiError::Forbidden(
                "monitoring and feedback are closed: the service listens beyond loopback and no API token is configured (set INFERENCE_API_TOKEN)".into(),
            ));
        };
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match offered {
            Some(t) if token.matches(t.trim()) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized(
                "the bearer token is not valid".into(),
            )),
            None => Err(ApiError::Unauthorized(
                "send Authorization: Bearer <API token>".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_without_token_is_open_public_without_token_is_closed() {
        let open = Access {
            token: None,
            public: false,
            protect_predict: false,
        };
        assert!(open.check(&headers(None), Scope::Monitoring).is_ok());
        let closed = Access {
            token: None,
            public: true,
            protect_predict: false,
        };
        assert!(matches!(
            closed.check(&headers(None), Scope::Monitoring),
            Err(ApiError::Forbidden(_))
        ));
        assert!(closed.check(&headers(None), Scope::Predict).is_ok());
    }

    #[test]
    fn a_configured_token_is_required_and_never_printed() {
        let token: Secret = "0123456789abcdef-token".parse().unwrap();
        assert_eq!(format!("{token:?}"), "Secret([redacted])");
        let a = Access {
            token: Some(token),
            public: true,
            protect_predict: true,
        };
        assert!(a
            .check(
                &headers(Some("Bearer 0123456789abcdef-token")),
                Scope::Monitoring
            )
            .is_ok());
        assert!(a
            .check(
                &headers(Some("Bearer 0123456789abcdef-tokeX")),
                Scope::Predict
            )
            .is_err());
        assert!(matches!(
            a.check(&headers(None), Scope::Predict),
            Err(ApiError::Unauthorized(_))
        ));
        assert!("short".parse::<Secret>().is_err());
        assert!("".parse::<Secret>().unwrap().is_empty());
    }
}
