//! The metadata server's responses: every one carries `Metadata-Flavor: Google` and a
//! `Content-Type` (some clients fail without one).

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use crate::decisions::{Code, Explanation};

fn build(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("metadata-flavor", HeaderValue::from_static("Google"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::SERVER,
        HeaderValue::from_static("Metadata Server for VM"),
    );
    response
}

/// A text value, as the real server sends it: `application/text`.
pub(super) fn text(status: StatusCode, body: &str) -> Response<Body> {
    build(status, "application/text", body.to_owned())
}

/// A refusal, in text as the real server sends it; the text is also its reason in the
/// decision log, beside `code`.
pub(super) fn refuse(status: StatusCode, code: Code, body: &str) -> Response<Body> {
    let mut response = build(status, "application/text", body.to_owned());
    Explanation::refused(code, body.trim()).attach(&mut response);
    response
}

/// A JSON value. Python's google-auth compares the content type to `application/json`
/// exactly before parsing, so no parameters may follow it.
pub(super) fn json(value: Value) -> Response<Body> {
    build(StatusCode::OK, "application/json", value.to_string())
}
