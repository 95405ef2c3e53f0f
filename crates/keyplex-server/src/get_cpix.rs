//! Placeholder while this interface is being written (replaced by its implementation).

use axum::extract::Path;

use crate::error::ApiError;

pub async fn get_cpix(
    Path((_tenant, _format, _content_id)): Path<(String, String, String)>,
) -> ApiError {
    ApiError::NotFound("not available yet".into())
}
