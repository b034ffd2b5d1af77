//! Which headers a caller's data may not set on a request a Google-managed caller sends
//! (a publisher's attributes, a task's or a job's headers): those that change how the
//! request is read, whom it names, or what Google's own headers say.

use std::collections::HashMap;

/// A header no caller's data may set: one that changes how the request is read, whom it
/// names, or what Google's own headers say.
pub fn reserved(name: &str) -> bool {
    const RESERVED: [&str; 12] = [
        "authorization",
        "x-serverless-authorization",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "user-agent",
    ];
    let name = name.to_ascii_lowercase();
    RESERVED.contains(&name.as_str())
        || name.starts_with("x-goog-")
        || name.starts_with("ce-")
        || name.starts_with("x-cloudtasks-")
        || name.starts_with("x-cloudscheduler")
        || name.starts_with("proxy-")
        || name.starts_with("forwarded")
        || name.starts_with("x-forwarded-")
}

/// A task's or a job's own headers as Google sends them: what Cloud Tasks or Cloud
/// Scheduler sets itself goes (Host, Content-Length, User-Agent, their own `X-Cloud*`,
/// `X-Google-*` and `X-AppEngine-*` headers, as Google documents), with whatever would
/// change how the front door reads the request or whom it names; its own Authorization
/// stays only when no token of Google's replaces it, and its own Content-Type stays. A
/// name or value that is not a valid header is refused.
pub fn keep_own(headers: &mut HashMap<String, String>, token: bool) -> Result<(), String> {
    headers.retain(|name, _| {
        let lower = name.to_ascii_lowercase();
        let own = lower == "content-type" || (lower == "authorization" && !token);
        own || !(reserved(&lower) || lower.starts_with("x-appengine-"))
    });
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let valid_value = |v: &str| {
        v.bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    };
    if let Some((name, _)) = headers
        .iter()
        .find(|(n, v)| !valid_name(n) || !valid_value(v))
    {
        return Err(format!(
            "`{}` is not a valid header name, or its value is not a valid header value",
            name.chars().take(100).collect::<String>()
        ));
    }
    Ok(())
}
