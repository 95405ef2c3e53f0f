//! Placeholder while this interface is being written (replaced by its implementation).

use crate::error::ApiError;

pub async fn post_key() -> ApiError {
    ApiError::NotFound("not available yet".into())
}
