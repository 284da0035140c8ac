//! The console's stylesheet and script, compiled into the broker. Served
//! from the broker itself (nothing from elsewhere at run time); cached
//! briefly, and revalidated through their `ETag`.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../../templates/console/console.css");
const JS: &str = include_str!("../../templates/console/console.js");

fn asset(file: &str) -> Option<(&'static str, &'static str)> {
    match file {
        "console.css" => Some((CSS, "text/css; charset=utf-8")),
        "console.js" => Some((JS, "text/javascript; charset=utf-8")),
        _ => None,
    }
}

pub async fn serve(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some((body, content_type)) = asset(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(body.as_bytes()))[..16]);
    let cache = [
        (CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        (
            ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        ),
    ];
    if headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        StatusCode::OK,
        cache,
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}
