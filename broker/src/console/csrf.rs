//! Forms bound to the session: every console form carries the session's
//! token in a hidden `csrf` field; [`Submitted`] refuses a form without it
//! before the handler runs, so no action can forget the check. (The
//! session cookie is also `SameSite=Lax`; the token is what is relied on.)

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::page::{self, Chrome, Here};
use super::viewer::Viewer;
use crate::api::AppState;

/// The form field holding the token.
pub const FIELD: &str = "csrf";

/// A form posted by the signed-in viewer, with the session's token.
#[derive(Debug)]
pub struct Submitted<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Submitted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|r| refuse(&viewer, r.status(), r.body_text()))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| refuse(&viewer, StatusCode::BAD_REQUEST, e.to_string()))?;
        let sent = fields
            .iter()
            .find(|(k, _)| k == FIELD)
            .map_or("", |(_, v)| v.as_str());
        if !viewer.csrf_matches(sent) {
            tracing::warn!(user = %viewer.user.id, "console form refused: missing or wrong CSRF token");
            let message = viewer.lang.texts().csrf_refused.to_owned();
            return Err(refuse(&viewer, StatusCode::FORBIDDEN, message));
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            refuse(
                &viewer,
                StatusCode::BAD_REQUEST,
                format!("the form is malformed: {e}"),
            )
        })?;
        Ok(Submitted { viewer, form })
    }
}

fn refuse(viewer: &Viewer, status: StatusCode, message: String) -> Response {
    page::error(
        Chrome::of(viewer, Here::Other, "", "/console/"),
        status,
        message,
        "/console/",
    )
}
