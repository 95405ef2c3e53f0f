//! Placeholder while this interface is being written (replaced by its implementation).

use crate::error::ApiError;

pub async fn post_speke_v1() -> ApiError {
    ApiError::NotFound("not available yet".into())
}

pub async fn post_speke_v2() -> ApiError {
    ApiError::NotFound("not available yet".into())
}
