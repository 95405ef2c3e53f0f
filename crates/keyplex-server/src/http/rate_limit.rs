//! Per-credential rate limits: `rate_limit = { requests_per_second = N, burst = M }` in a
//! tenant's configuration lets each of its credentials (a Basic user, a JWT subject, a SigV4
//! access key, a Widevine signer, the GET token, an entitlement token's user) make `burst`
//! requests at once and `N` per second on average (GCRA, `governor`). Past that, requests are
//! refused with 429 and `Retry-After` before any work is done.
//!
//! The counters are per node: behind a load balancer spreading over `k` nodes a credential
//! gets up to `k × N` per second. They are rebuilt (full bursts again) when the tenant's
//! settings or credentials change.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;
use crate::http::error::ApiError;
use crate::state::Tenant;

/// The limiter of one tenant, keyed by credential.
pub struct CredentialLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl std::fmt::Debug for CredentialLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialLimiter")
            .field("credentials", &self.limiter.len())
            .finish()
    }
}

impl CredentialLimiter {
    pub fn new(limit: RateLimit) -> Result<Self, String> {
        let per_second = NonZeroU32::new(limit.requests_per_second)
            .ok_or("rate_limit.requests_per_second must be at least 1")?;
        let burst = NonZeroU32::new(limit.burst).ok_or("rate_limit.burst must be at least 1")?;
        Ok(Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        })
    }

    /// `per_minute` events per key per minute, all of them at once at most.
    pub fn per_minute(per_minute: u32) -> Result<Self, String> {
        let n = NonZeroU32::new(per_minute).ok_or("a per-minute limit must be at least 1")?;
        Ok(Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            clock: DefaultClock::default(),
        })
    }

    /// `Err(wait)` when `credential` has used its allowance; `wait` is when it may retry.
    pub fn check(&self, credential: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&credential.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the counters of credentials that are back to a full burst (bounds memory when
    /// many entitlement users come and go).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Records who made the request (for the audit trail and metrics) and applies the tenant's
/// rate limit to it: every interface calls this once the credential is verified.
pub fn admit(tenant: &Tenant, credential: &str) -> Result<(), ApiError> {
    crate::scope::note_credential(credential);
    let Some(limiter) = &tenant.rate_limiter else {
        return Ok(());
    };
    limiter
        .check(credential)
        .map_err(|wait| ApiError::TooManyRequests {
            // Whole seconds, rounded up: a client that waits that long is admitted.
            retry_after_seconds: wait.as_millis().div_ceil(1000).max(1) as u64,
        })
}

/// A credential presented on `tenant`'s route was not `tenant`'s. Counts the failure, and
/// past the tenant's `auth_failure_limit` for the client's address answers 429 at once —
/// before the costly part: trying the credential against every other tenant, which
/// `accepted_elsewhere` does (a credential of another tenant gets 403, anything else
/// `unauthorized`).
pub fn refuse(
    state: &crate::state::AppState,
    tenant: &Tenant,
    accepted_elsewhere: impl Fn(&Tenant) -> bool,
    unauthorized: ApiError,
) -> ApiError {
    let client = crate::scope::who().map_or_else(|| "-".to_owned(), |(_, _, client)| client);
    if let Err(wait) = tenant.auth_failures.check(&client) {
        state.telemetry().count_auth_failure(&tenant.id, true);
        return ApiError::TooManyRequests {
            retry_after_seconds: wait.as_millis().div_ceil(1000).max(1) as u64,
        };
    }
    state.telemetry().count_auth_failure(&tenant.id, false);
    if state
        .tenants()
        .values()
        .filter(|t| t.id != tenant.id)
        .any(|t| accepted_elsewhere(t))
    {
        return ApiError::Forbidden(format!(
            "these credentials are not valid for tenant {}",
            tenant.id
        ));
    }
    unauthorized
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_credential_gets_its_burst_then_waits() {
        let limiter = CredentialLimiter::new(RateLimit {
            requests_per_second: 1,
            burst: 3,
        })
        .unwrap();
        for _ in 0..3 {
            limiter.check("basic:a").unwrap();
        }
        let wait = limiter.check("basic:a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limiter.check("basic:b").unwrap();
        limiter.forget_idle();
    }

    #[test]
    fn zero_limits_are_refused() {
        for (requests_per_second, burst) in [(0, 1), (1, 0)] {
            assert!(
                CredentialLimiter::new(RateLimit {
                    requests_per_second,
                    burst
                })
                .is_err()
            );
        }
    }
}
