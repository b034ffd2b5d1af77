//! The Google Front End's error page: the one place the front door's error bodies are made.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};

/// The `WWW-Authenticate` value Cloud Run sends with a 401.
pub(crate) const WWW_AUTHENTICATE: &str =
    r#"Bearer error="invalid_token" error_description="The access token could not be verified""#;

/// An error page in the GFE's shape for `status`, naming `path`. `cause` adds a line in
/// plain words for the errors the container caused (503, 504, 500).
pub(crate) fn error(status: StatusCode, path: &str, cause: Option<&str>) -> Response<Body> {
    let path = escape(path);
    let (title, h2) = match status {
        StatusCode::FORBIDDEN => (
            "Forbidden",
            format!(
                "Your client does not have permission to get URL <code>{path}</code> from this server."
            ),
        ),
        StatusCode::UNAUTHORIZED => (
            "Unauthorized",
            format!(
                "Your client does not have permission to the requested URL <code>{path}</code>."
            ),
        ),
        StatusCode::NOT_FOUND => (
            "Not Found",
            format!("The requested URL <code>{path}</code> was not found on this server."),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "Request Entity Too Large",
            format!("Your client issued a request to <code>{path}</code> that was too large."),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "Service Unavailable",
            format!("The service behind <code>{path}</code> is not available."),
        ),
        StatusCode::GATEWAY_TIMEOUT => (
            "Gateway Timeout",
            format!("The service did not answer <code>{path}</code> in time."),
        ),
        _ => (
            status.canonical_reason().unwrap_or("Error"),
            format!("The server could not answer <code>{path}</code>."),
        ),
    };
    let cause = cause.map_or_else(String::new, escape);
    let body = format!(
        "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n\
         <title>{code} {title}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n\
         <h1>Error: {title}</h1>\n<h2>{h2}</h2>\n<h2>{cause}</h2>\n</body></html>\n",
        code = status.as_u16(),
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE),
        );
    }
    response
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response<Body>) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn pages_have_the_gfe_shape() {
        let r = error(StatusCode::FORBIDDEN, "/a<b>", None);
        assert_eq!(r.headers()["content-type"], "text/html; charset=UTF-8");
        assert!(r.headers().get("www-authenticate").is_none());
        let b = body(r).await;
        assert!(b.contains("<title>403 Forbidden</title>"), "{b}");
        assert!(b.contains("<h1>Error: Forbidden</h1>"), "{b}");
        assert!(
            b.contains("get URL <code>/a&lt;b&gt;</code> from this server."),
            "{b}"
        );

        let r = error(StatusCode::UNAUTHORIZED, "/", None);
        assert_eq!(r.headers()["www-authenticate"], WWW_AUTHENTICATE);
        assert!(body(r).await.contains("<title>401 Unauthorized</title>"));

        let b = body(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "/x",
            Some("connection refused"),
        ))
        .await;
        assert!(b.contains("<h2>connection refused</h2>"), "{b}");
    }
}
