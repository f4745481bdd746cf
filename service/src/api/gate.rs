//! Who may run a guarded handler: [`Auth`] first (401 or 403), then, on increments and reads,
//! the rate limit (429): per token when auth named one, else per client address
//! ([`PeerAddr`], which the server sets on each request when rate limits are on).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::auth::{Auth, Scope, Token};
use super::error::ApiError;
use super::rate_limit::{PeerAddr, RateLimiter, too_many_requests};

/// Why a request may not run its handler.
pub enum Refused {
    /// 401 or 403.
    Auth(ApiError),
    /// 429, with how long until the client's next request would pass.
    RateLimited(Duration),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Auth(error) => error.into_response(),
            Self::RateLimited(wait) => too_many_requests(wait),
        }
    }
}

/// Auth and the rate limiter; both off by default.
#[derive(Clone, Default)]
pub struct Gate {
    auth: Auth,
    limiter: Option<Arc<RateLimiter>>,
}

impl Gate {
    pub fn new(auth: Auth, limiter: Option<Arc<RateLimiter>>) -> Self {
        Self { auth, limiter }
    }

    /// Whether any guarded handler needs checking at all.
    pub fn is_on(&self) -> bool {
        self.auth.is_on() || self.limiter.is_some()
    }

    /// The scope `/metrics` needs, if any (`api.auth.protect_metrics`).
    pub fn metrics_scope(&self) -> Option<Scope> {
        self.auth.metrics_scope()
    }

    /// Admits `request` to a handler that needs `scope`: its caller's token (`None` with auth
    /// off), or the answer that refuses it.
    pub fn admit(&self, request: &Request, scope: Scope) -> Result<Option<Arc<Token>>, Refused> {
        let token = self
            .auth
            .check(request.headers(), scope)
            .map_err(Refused::Auth)?;
        if let Some(limiter) = &self.limiter
            && matches!(scope, Scope::Read | Scope::Write)
        {
            match &token {
                Some(token) => limiter
                    .admit_token(
                        token.name(),
                        token.bucket(),
                        token.rate().unwrap_or(limiter.rate()),
                    )
                    .map_err(Refused::RateLimited)?,
                None => {
                    if let Some(PeerAddr(address)) = request.extensions().get::<PeerAddr>() {
                        limiter
                            .admit_address(*address)
                            .map_err(Refused::RateLimited)?;
                    }
                }
            }
        }
        Ok(token)
    }
}
