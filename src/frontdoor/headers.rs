//! The headers the front door rewrites on the way to a container (SPEC §4): hop-by-hop
//! and client-supplied `X-Google-*` headers dropped, `X-Forwarded-*` and the trace context
//! (`X-Cloud-Trace-Context`, `traceparent`) added or completed, the checked token's
//! signature redacted when the service asks; a WebSocket upgrade keeps its own.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use super::auth::Credential;

/// A WebSocket upgrade, the one protocol change the front door passes on: any other
/// `Upgrade` (h2c, say) is a hop-by-hop header and is dropped.
pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Drops hop-by-hop headers, including any the `Connection` header names. On an upgrade
/// request, `Connection: upgrade` and `Upgrade` stay so the container can accept it.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let kept =
        |name: &HeaderName| keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE);
    // One look at the names present (most messages carry none of these) rather than a
    // removal, each a hash lookup, for every name that might be: 20 lookups a proxied
    // request took about 2,000 instructions (bench/instructions.sh).
    let mut gone: Vec<HeaderName> = headers
        .keys()
        .filter(|n| (HOP_BY_HOP.contains(n) || *n == header::UPGRADE) && !kept(n))
        .cloned()
        .collect();
    gone.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !kept(n)),
    );
    for name in gone {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_CLOUD_TRACE_CONTEXT: HeaderName = HeaderName::from_static("x-cloud-trace-context");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) const REDACTED_SIGNATURE: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

pub(super) fn rewrite_request_headers(
    headers: &mut HeaderMap,
    peer: IpAddr,
    credential: Option<&Credential>,
    upgrade: bool,
) {
    // Read before the hop-by-hop headers go: the checked token is redacted, never dropped.
    let redacted = credential.filter(|c| c.redact).and_then(|c| {
        let token = headers
            .get(&c.header)
            .and_then(|v| super::auth::bearer(v).ok())?;
        let unsigned = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
        Some((
            c.header.clone(),
            format!("Bearer {unsigned}.{REDACTED_SIGNATURE}"),
        ))
    });
    strip_hop_by_hop(headers, upgrade);
    // Identity headers are never trusted from the client.
    let google: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-google-"))
        .cloned()
        .collect();
    for name in google {
        headers.remove(name);
    }

    // A client's X-Forwarded-For is kept and our view of the client appended, so the
    // container can tell what the client claimed from what we saw.
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ip = ip_text(peer);
    let forwarded = match peer {
        IpAddr::V4(_) => ["for=\"", &ip, "\";proto=https"].concat(),
        IpAddr::V6(_) => ["for=\"[", &ip, "]\";proto=https"].concat(),
    };
    let xff = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    insert(headers, X_FORWARDED_FOR, &xff);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    insert(headers, header::FORWARDED, &forwarded);
    trace_headers(headers);

    if let Some((name, value)) = redacted {
        insert(headers, name, &value);
    }
}

/// `ip` as text: an IPv4 address's four numbers joined by hand, since `Ipv4Addr`'s
/// `Display` (padding and all) was 2% of a warm request's instructions.
pub(super) fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(itoa::Buffer::new().format(octet));
            }
            text
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

pub(super) fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Keeps the caller's trace context; fills in whichever of the two forms is missing from
/// the other, or starts a new trace.
fn trace_headers(headers: &mut HeaderMap) {
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let w3c = text(&TRACEPARENT).and_then(|v| parse_traceparent(&v));
    let cloud = text(&X_CLOUD_TRACE_CONTEXT).and_then(|v| parse_cloud_trace(&v));
    let (trace, span) = match (&w3c, &cloud) {
        (Some(t), _) | (None, Some(t)) => t.clone(),
        // A new trace. These ids need to be unique, not secret: a fast thread-local
        // generator saves a getrandom system call on every request.
        (None, None) => {
            let mut trace = String::with_capacity(32);
            push_hex(&mut trace, fastrand::u128(1..), 32);
            (trace, fastrand::u64(1..))
        }
    };
    // Written by hand rather than with `format!`: these run on every request, and the
    // formatting machinery was 1% of the warm path.
    if w3c.is_none() {
        let mut value = String::with_capacity(55);
        value.push_str("00-");
        value.push_str(&trace);
        value.push('-');
        push_hex(&mut value, u128::from(span), 16);
        value.push_str("-01");
        insert(headers, TRACEPARENT, &value);
    }
    if cloud.is_none() {
        let mut value = String::with_capacity(58);
        value.push_str(&trace);
        value.push('/');
        value.push_str(itoa::Buffer::new().format(span));
        value.push_str(";o=1");
        insert(headers, X_CLOUD_TRACE_CONTEXT, &value);
    }
}

/// The last `digits` hex digits of `n`, lowercase, zero-padded.
fn push_hex(out: &mut String, n: u128, digits: u32) {
    for i in (0..digits).rev() {
        out.push(char::from(
            b"0123456789abcdef"[(n >> (4 * i)) as usize & 0xf],
        ));
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `00-TRACE(32 hex)-SPAN(16 hex)-FLAGS`
fn parse_traceparent(v: &str) -> Option<(String, u64)> {
    let mut it = v.trim().split('-');
    let (version, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    (is_hex(version, 2) && is_hex(trace, 32) && is_hex(span, 16) && is_hex(flags, 2))
        .then(|| {
            Some((
                trace.to_ascii_lowercase(),
                u64::from_str_radix(span, 16).ok()?,
            ))
        })
        .flatten()
}

/// `TRACE(32 hex)/SPAN(decimal);o=N`
fn parse_cloud_trace(v: &str) -> Option<(String, u64)> {
    let (trace, rest) = v.trim().split_once('/')?;
    let span = rest.split(';').next()?;
    (is_hex(trace, 32))
        .then(|| Some((trace.to_ascii_lowercase(), span.parse().ok()?)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joined address is `Display`'s, for every kind of address.
    #[test]
    fn ip_text_writes_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "fe80::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_google_headers_are_dropped_and_forwarding_added() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-google-user", "admin"),
            ("X-Google-Internal", "1"),
            ("x-forwarded-for", "10.9.9.9"),
            ("x-keep", "yes"),
        ]);
        rewrite_request_headers(&mut h, "127.0.0.7".parse().unwrap(), None, false);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "te",
            "upgrade",
            "x-google-user",
            "x-google-internal",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["x-keep"], "yes");
        assert_eq!(h["x-forwarded-for"], "10.9.9.9, 127.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=\"127.0.0.7\";proto=https");
        let tp = h["traceparent"].to_str().unwrap().to_owned();
        let (trace, span) = parse_traceparent(&tp).unwrap();
        assert_eq!(
            h["x-cloud-trace-context"],
            format!("{trace}/{span};o=1").as_str()
        );
    }

    #[test]
    fn hex_is_zero_padded_lowercase_and_cut_to_its_digits() {
        for (n, digits) in [
            (0u128, 16),
            (0xAB, 4),
            (u128::MAX, 32),
            (0x1_0000_0000_0000_00ff, 16),
        ] {
            let mut out = String::new();
            push_hex(&mut out, n, digits);
            let mask = if digits == 32 {
                u128::MAX
            } else {
                (1 << (4 * digits)) - 1
            };
            assert_eq!(
                out,
                format!("{:0width$x}", n & mask, width = digits as usize)
            );
        }
    }

    #[test]
    fn trace_context_is_kept_and_completed() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut h = headers(&[("x-cloud-trace-context", &format!("{trace}/17;o=1"))]);
        trace_headers(&mut h);
        assert_eq!(
            h["traceparent"],
            format!("00-{trace}-0000000000000011-01").as_str()
        );
        assert_eq!(
            h["x-cloud-trace-context"],
            format!("{trace}/17;o=1").as_str()
        );

        let mut h = headers(&[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))]);
        trace_headers(&mut h);
        assert_eq!(
            h["traceparent"],
            format!("00-{trace}-00f067aa0ba902b7-01").as_str()
        );
        assert_eq!(
            h["x-cloud-trace-context"],
            format!("{trace}/{};o=1", 0x00f067aa0ba902b7u64).as_str()
        );
    }

    #[test]
    fn the_checked_token_is_redacted_when_asked() {
        let credential = Credential {
            header: HeaderName::from_static("x-serverless-authorization"),
            redact: true,
        };
        let mut h = headers(&[
            ("x-serverless-authorization", "Bearer aaa.bbb.ccc"),
            ("authorization", "Bearer mine"),
        ]);
        rewrite_request_headers(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            Some(&credential),
            false,
        );
        assert_eq!(
            h["x-serverless-authorization"],
            "Bearer aaa.bbb.SIGNATURE_REMOVED_BY_GOOGLE"
        );
        assert_eq!(h["authorization"], "Bearer mine");

        let kept = Credential {
            redact: false,
            header: header::AUTHORIZATION,
        };
        let mut h = headers(&[("authorization", "Bearer aaa.bbb.ccc")]);
        rewrite_request_headers(&mut h, "127.0.0.1".parse().unwrap(), Some(&kept), false);
        assert_eq!(h["authorization"], "Bearer aaa.bbb.ccc");
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade(&h));
        rewrite_request_headers(&mut h, "127.0.0.1".parse().unwrap(), None, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn only_websocket_is_an_upgrade_the_rest_is_hop_by_hop() {
        for protocol in ["h2c", "TLS/1.0", "websocketx", ""] {
            let mut h = headers(&[("connection", "Upgrade"), ("upgrade", protocol)]);
            assert!(!is_upgrade(&h), "{protocol}");
            rewrite_request_headers(&mut h, "127.0.0.1".parse().unwrap(), None, false);
            assert!(!h.contains_key("upgrade"), "{protocol}");
        }
        let h = headers(&[
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "h2c, WebSocket"),
        ]);
        assert!(is_upgrade(&h));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
    }
}
