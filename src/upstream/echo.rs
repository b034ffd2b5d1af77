//! `builtin:echo`: an in-process upstream that answers with JSON describing the request
//! exactly as a container would receive it — the teaching aid, and the tests' oracle for
//! what the container sees.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Response, header};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};

use crate::config::Service;
use crate::tokens;

/// The body could not be read whole (over the size limit, malformed, or the client went
/// away); the cause says which.
#[derive(Debug)]
pub(crate) struct BodyError(pub(crate) axum::Error);

pub(crate) async fn echo(service: &Service, req: Request) -> Result<Response<Body>, BodyError> {
    let (parts, mut body) = req.into_parts();
    // Count the body as it streams; never hold it.
    let mut body_length: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError)?;
        if let Some(data) = frame.data_ref() {
            body_length += data.len() as u64;
        }
    }

    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = if values.len() == 1 {
            values.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(values)
        };
        headers.insert(name.as_str().to_owned(), value);
    }

    // What the container could read from the tokens it got (never a decision: the front
    // door has decided already).
    let mut claims = Map::new();
    for name in ["authorization", "x-serverless-authorization"] {
        let token = parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, t)| tokens::peek_claims(t.trim()));
        if let Some(c) = token {
            claims.insert(name.to_owned(), Value::Object(c));
        }
    }

    let described = json!({
        "service": service.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_length": body_length,
        "claims": claims,
    });
    let mut response = Response::new(Body::from(described.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
