//! Every decision, allowed or denied, with its reason, from every surface (the front door,
//! IAM Credentials, `/token`, STS, tokeninfo, the metadata server): one structured log event
//! each, and a bounded in-memory list that the google listener serves and the CLI reads.

pub(crate) mod chain;
pub(crate) mod codes;
mod line;
mod log;
mod shown_token;

pub(crate) use chain::Step;
pub(crate) use codes::Code;
pub(crate) use log::DecisionLog;
pub(crate) use shown_token::ShownToken;

use serde::Serialize;

/// How many decisions are kept; older ones are dropped.
pub(crate) const CAPACITY: usize = 1000;
/// And how many bytes of them at most: a flood of long reasons (60 KB audiences, say)
/// drops older entries rather than growing memory or the decisions endpoint's answer.
pub(crate) const CAPACITY_BYTES: usize = 4 * 1024 * 1024;
/// The longest any one field of a decision is kept; longer text is cut, saying how much.
pub(crate) const MAX_FIELD_BYTES: usize = 16 * 1024;

/// The surfaces that decide. A new one (a Google-managed caller, say) is a variant here,
/// with its name in [`Surface::as_str`] and a place in [`ALL_SURFACES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    /// The `*.run.app` front door.
    #[default]
    Frontdoor,
    /// The Admin APIs (Cloud Run, Resource Manager, IAM's service accounts).
    Admin,
    Iamcredentials,
    /// The OAuth2 token endpoint.
    Token,
    Sts,
    Tokeninfo,
    Metadata,
    /// Pub/Sub's API (both transports).
    Pubsub,
    /// Cloud Tasks' API (both transports).
    Tasks,
    /// Cloud Scheduler's API (both transports).
    Scheduler,
    /// Eventarc's API (REST).
    Eventarc,
    /// A surface this build does not know, read from another version's decisions (the CLI
    /// reads the server's); no decision here is made with it.
    #[serde(other)]
    Other,
}

/// Every surface that decides, in the order of their declaration.
pub(crate) const ALL_SURFACES: [Surface; 11] = [
    Surface::Frontdoor,
    Surface::Admin,
    Surface::Iamcredentials,
    Surface::Token,
    Surface::Sts,
    Surface::Tokeninfo,
    Surface::Metadata,
    Surface::Pubsub,
    Surface::Tasks,
    Surface::Scheduler,
    Surface::Eventarc,
];

/// Each deciding surface's name, as decisions, `/metrics` and `?surface=` give it.
pub(crate) const SURFACES: [&str; ALL_SURFACES.len()] = {
    let mut names = [""; ALL_SURFACES.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = ALL_SURFACES[i].as_str();
        i += 1;
    }
    names
};

impl Surface {
    /// Its name, as serde writes it.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Surface::Frontdoor => "frontdoor",
            Surface::Admin => "admin",
            Surface::Iamcredentials => "iamcredentials",
            Surface::Token => "token",
            Surface::Sts => "sts",
            Surface::Tokeninfo => "tokeninfo",
            Surface::Metadata => "metadata",
            Surface::Pubsub => "pubsub",
            Surface::Tasks => "tasks",
            Surface::Scheduler => "scheduler",
            Surface::Eventarc => "eventarc",
            Surface::Other => "other",
        }
    }

    /// The deciding surface named `name`, if one is.
    pub(crate) fn named(name: &str) -> Option<Surface> {
        ALL_SURFACES.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for Surface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Decision {
    /// Which surface decided.
    #[serde(default)]
    pub surface: Surface,
    /// Seconds since the Unix epoch.
    pub time: i64,
    pub allowed: bool,
    pub status: u16,
    pub service: Option<String>,
    /// The service's revision (`K_REVISION`) when the decision was made.
    #[serde(default)]
    pub revision: Option<String>,
    pub method: String,
    pub host: String,
    pub path: String,
    /// `serviceAccount:…`, `user:…`, or absent for an anonymous or unusable credential.
    pub principal: Option<String>,
    /// Which header the credential came from, if any.
    pub credential: Option<String>,
    /// What was asked for, off the front door: the service account acted as, the audience
    /// or provider, the metadata listener's service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The IAM permission checked, where one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    pub reason: String,
    /// A refusal's stable code, on every surface (`codes::all` lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<Code>,
    /// In audit mode (`enforcement: audit`), the status enforcement would have answered
    /// for a request let through anyway; `code` and `reason` say why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_deny: Option<u16>,
    /// The `grpc-status` a gRPC call ended with: from the container's headers (a call it
    /// ended at once), or added from the trailers when the call ends (see
    /// [`DecisionLog::grpc_ended`]); none while the call runs, or if it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u16>,
    /// How long the decision took, in microseconds: for the front door, until the
    /// response headers (the upstream's included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// The front door's chain of checks, in order; for a refusal the failed one is last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// The bearer token's decoded header and claims (never its signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<ShownToken>,
    /// The Google-managed caller that made the request, when one did: `Pub/Sub push,
    /// subscription S, as SA, attempt N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Decision {
    /// A decision of `surface` about a request, to be filled in. The host and path are
    /// taken as given: the front door hands over the ones it read, not copies.
    pub fn about(
        surface: Surface,
        time: i64,
        method: &str,
        host: impl Into<String>,
        path: impl Into<String>,
    ) -> Decision {
        Decision {
            surface,
            time,
            allowed: false,
            status: 0,
            service: None,
            revision: None,
            method: method.to_owned(),
            host: host.into(),
            path: path.into(),
            principal: None,
            credential: None,
            target: None,
            permission: None,
            reason: String::new(),
            code: None,
            would_deny: None,
            grpc_status: None,
            latency_us: None,
            steps: Vec::new(),
            token: None,
            via: None,
        }
    }

    /// Records the time since `started` as this decision's latency.
    pub fn timed(mut self, started: std::time::Instant) -> Decision {
        self.latency_us = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        self
    }
}

/// What a handler off the front door says about the request it answered; the layer that
/// records decisions reads it from the response's extensions (see [`Explanation::attach`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Explanation {
    pub principal: Option<String>,
    pub target: Option<String>,
    pub permission: Option<&'static str>,
    pub reason: Option<String>,
    /// A refusal's code; one the handler leaves out is read from the status.
    pub code: Option<Code>,
}

impl Explanation {
    /// Adds what this explanation knows to `response`'s, keeping what is already there
    /// unless this one says otherwise.
    pub(crate) fn attach<B>(self, response: &mut http::Response<B>) {
        let extensions = response.extensions_mut();
        match extensions.get_mut::<Explanation>() {
            Some(e) => {
                e.principal = self.principal.or(e.principal.take());
                e.target = self.target.or(e.target.take());
                e.permission = self.permission.or(e.permission);
                e.reason = self.reason.or(e.reason.take());
                e.code = self.code.or(e.code);
            }
            None => {
                extensions.insert(self);
            }
        }
    }

    /// `what` the caller did, as the reason: `PRINCIPAL what`.
    pub(crate) fn did(&mut self, what: impl std::fmt::Display) {
        let who = self.principal.as_deref().unwrap_or("the caller");
        self.reason = Some(format!("{who} {what}"));
    }

    /// The reason alone, for an answer that is not a refusal.
    pub(crate) fn because(reason: impl Into<String>) -> Explanation {
        Explanation {
            reason: Some(reason.into()),
            ..Explanation::default()
        }
    }

    /// A refusal's code and reason, for each surface's one rendering function.
    pub(crate) fn refused(code: Code, reason: impl Into<String>) -> Explanation {
        Explanation {
            reason: Some(reason.into()),
            code: Some(code),
            ..Explanation::default()
        }
    }
}

/// Records what a surface off the front door decided about `response`: allowed when its
/// status is a success, with the `Explanation` the handler attached to it (taken off the
/// response), any field it leaves out taken from `defaults`. A refusal always has a code
/// (the handler's, else its status's), and its `CODE: reason` goes into `X-Frontdoor-Reason`
/// as on the front door.
pub(crate) fn record_answer<B>(
    log: &DecisionLog,
    mut decision: Decision,
    defaults: Explanation,
    response: &mut http::Response<B>,
) {
    let explained = response
        .extensions_mut()
        .remove::<Explanation>()
        .unwrap_or_default();
    let status = response.status();
    decision.status = status.as_u16();
    // A gRPC refusal is a 200 whose headers carry its status (a trailers-only answer).
    let grpc_status: Option<u16> = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    decision.grpc_status = grpc_status;
    decision.allowed = status.is_success() && grpc_status.is_none_or(|s| s == 0);
    decision.principal = explained.principal.or(defaults.principal);
    decision.target = explained.target.or(defaults.target);
    decision.permission = explained
        .permission
        .or(defaults.permission)
        .map(str::to_owned);
    decision.reason = explained
        .reason
        .or(defaults.reason)
        .unwrap_or_else(|| format!("answered {status}"));
    if !decision.allowed {
        let code = explained
            .code
            .or(defaults.code)
            .unwrap_or_else(|| Code::of_status(status));
        decision.code = Some(code);
        if let Some(value) = reason_header(&format!("{code}: {}", decision.reason)) {
            response.headers_mut().insert(REASON_HEADER, value);
        }
    }
    log.record(decision);
}

/// gRPC's name for a status code (the gRPC over HTTP/2 protocol's `grpc-status`).
fn grpc_status_name(code: u16) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .get(usize::from(code))
        .copied()
        .unwrap_or("not a gRPC status")
}

/// How the container step names a gRPC status: ` with grpc-status 7 (PERMISSION_DENIED)`.
pub(crate) fn with_grpc_status(code: u16) -> String {
    format!(" with grpc-status {code} ({})", grpc_status_name(code))
}

/// `X-Frontdoor-Reason`, frontdoor's addition on every request it turns away, on every
/// surface: Cloud Run and Google's APIs do not send it.
pub(crate) const REASON_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-frontdoor-reason");

/// The most a reason header may carry. A reason lists a policy's bindings, which can name
/// 1,500 principals: whole, it overflowed clients' header limits (Node's 16 KiB, Python's
/// 64 KiB line) and broke the very call it explained (issue 26).
pub(crate) const REASON_HEADER_MAX: usize = 1024;

/// What ends a reason cut to fit [`REASON_HEADER_MAX`].
const CUT_MARKER: &str =
    " ... [cut; the whole reason is in `frontdoor decisions` and the dashboard]";

/// `reason` as a header value: ASCII, with the few non-ASCII signs our reasons use spelled
/// out and anything else replaced, at most [`REASON_HEADER_MAX`] bytes (cut with a marker
/// that says where the rest is; the decision keeps it whole).
pub(crate) fn reason_header(reason: &str) -> Option<http::HeaderValue> {
    let mut ascii = String::with_capacity(reason.len().min(REASON_HEADER_MAX));
    for c in reason.chars() {
        match c {
            '→' => ascii.push_str("->"),
            '…' => ascii.push_str("..."),
            c if c.is_ascii() && !c.is_ascii_control() => ascii.push(c),
            _ => ascii.push('?'),
        }
        if ascii.len() > REASON_HEADER_MAX {
            ascii.truncate(REASON_HEADER_MAX - CUT_MARKER.len());
            ascii.push_str(CUT_MARKER);
            break;
        }
    }
    http::HeaderValue::from_str(&ascii).ok()
}

/// `s` with every control character (newlines, ESC and the rest of C0 and C1, DEL) written
/// as an escape, so that a token or request cannot forge a log line or drive a terminal:
/// a `kid` of `"x\nALLOW 200 GET vault /"` stays on its own line, as visible text.
pub(crate) fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    // Every decision passes through here, so the common case is a byte scan: C0 and DEL
    // are single bytes, and C1 (U+0080–U+009F) is always encoded with the lead byte 0xC2
    // (which other characters share, so a 0xC2 only sends us to the exact check).
    let suspect = any_byte(s.as_bytes(), |b| (b < 0x20) | (b == 0x7f) | (b == 0xc2));
    if !suspect || !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| match c {
                c if !c.is_control() => c.to_string(),
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                c => format!("\\u{{{:x}}}", u32::from(c)),
            })
            .collect(),
    )
}

/// Whether any byte of `bytes` is a `hit`: the scan every decision's strings and every
/// bearer token go through. It ORs whole 32-byte chunks, without stopping inside one, so
/// that it compiles to vector instructions; a byte-at-a-time `any` was 3% of the warm
/// path's CPU, and `str::contains` with a set of chars 2%.
pub(crate) fn any_byte(bytes: &[u8], hit: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |seen, &b| seen | hit(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| hit(b))
}

/// Escapes `s` (see [`escape_controls`]), cut to length already, and cuts it again if
/// escaping made it longer than [`MAX_FIELD_BYTES`].
fn escape_in_place(s: &mut String) {
    if let std::borrow::Cow::Owned(escaped) = escape_controls(s) {
        *s = escaped;
        cut_in_place(s);
    }
}

/// Cuts `s` to [`MAX_FIELD_BYTES`], saying how much went.
fn cut_in_place(s: &mut String) {
    if s.len() > MAX_FIELD_BYTES {
        let mut cut = MAX_FIELD_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let more = s.len() - cut;
        s.truncate(cut);
        s.push_str(&format!("… ({more} more bytes)"));
    }
}

impl Decision {
    /// About how many bytes the decision takes in memory.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Decision>()
            + [&self.method, &self.host, &self.path, &self.reason]
                .iter()
                .map(|f| f.len())
                .sum::<usize>()
            + [
                &self.service,
                &self.revision,
                &self.principal,
                &self.credential,
                &self.target,
                &self.permission,
            ]
            .iter()
            .filter_map(|f| f.as_ref().map(String::len))
            .sum::<usize>()
            + self
                .steps
                .iter()
                .map(|s| std::mem::size_of::<Step>() + s.detail.len())
                .sum::<usize>()
            + self.token.as_ref().map_or(0, ShownToken::bytes)
    }

    /// Every field cut to [`MAX_FIELD_BYTES`], as the log keeps it: no more. Escaping waits
    /// until the decision is read ([`Decision::escaped`]), which most never are: on the warm
    /// path, fifteen escapes a request were 3,200 instructions (bench/instructions.sh).
    fn cut(mut self) -> Decision {
        self.each_text(true, cut_in_place);
        self
    }

    /// Every client-derived string escaped (see [`escape_controls`]) and cut to length: a
    /// decision as every reader of the log gets it (its API, the dashboard, the log line).
    pub(crate) fn escaped(mut self) -> Decision {
        self.each_text(false, escape_in_place);
        self
    }

    /// `each` on the decision's strings (its steps' own details among them). Without
    /// `all`, those that cannot hold a client's characters are left out: the credential's
    /// header name (an HTTP token, which the parser checked and which is one of two names),
    /// the revision (ours, from a configured service) and the permission (ours).
    fn each_text(&mut self, all: bool, mut each: impl FnMut(&mut String)) {
        let clients = [&mut self.service, &mut self.principal, &mut self.target];
        let ours = [
            &mut self.revision,
            &mut self.credential,
            &mut self.permission,
        ];
        let ours = ours.into_iter().filter(|_| all);
        for field in clients.into_iter().chain(ours).flatten() {
            each(field);
        }
        for field in [
            &mut self.method,
            &mut self.host,
            &mut self.path,
            &mut self.reason,
        ] {
            each(field);
        }
        // Fixed words are ours; only what a step found can hold a client's string.
        for step in &mut self.steps {
            if let std::borrow::Cow::Owned(detail) = &mut step.detail {
                each(detail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn d(n: i64) -> Decision {
        Decision {
            time: n,
            status: 200,
            allowed: true,
            reason: "r".into(),
            ..Decision::about(Surface::Frontdoor, n, "GET", "h", "/")
        }
    }

    #[test]
    fn a_reason_header_is_bounded_and_says_where_the_rest_is() {
        let short = "no_invoker_binding: serviceAccount:a → nothing…";
        assert_eq!(
            reason_header(short).unwrap(),
            "no_invoker_binding: serviceAccount:a -> nothing..."
        );
        let exact = "x".repeat(REASON_HEADER_MAX);
        assert_eq!(reason_header(&exact).unwrap(), exact.as_str());
        // A policy of 15,000 members, and multi-byte signs that grow as they are spelled.
        let long: String = (0..15_000)
            .map(|i| format!("user:u{i}@example.com → "))
            .collect();
        let header = reason_header(&long).unwrap();
        let header = header.to_str().unwrap();
        assert_eq!(header.len(), REASON_HEADER_MAX);
        assert!(
            header.starts_with("user:u0@example.com -> user:u1@"),
            "{header}"
        );
        assert!(header.ends_with(CUT_MARKER), "{header}");
    }

    #[test]
    fn any_byte_finds_a_hit_wherever_it_falls_among_the_chunks() {
        for len in [0, 1, 31, 32, 33, 64, 100] {
            let clean = vec![b'a'; len];
            assert!(!any_byte(&clean, |b| b == b'\n'), "{len}");
            for at in 0..len {
                let mut one = clean.clone();
                one[at] = b'\n';
                assert!(any_byte(&one, |b| b == b'\n'), "{len} {at}");
                assert_eq!(
                    escape_controls(std::str::from_utf8(&one).unwrap()).len(),
                    len + 1
                );
            }
        }
    }

    #[test]
    fn control_characters_are_escaped_before_anything_sees_them() {
        let log = DecisionLog::default();
        let mut hostile = d(1);
        hostile.reason = "the JWT's key id `x\nALLOW 200 GET vault /` is unknown".into();
        hostile.path = "/\u{1b}[2J\u{1b}[31mred\r\u{7f}\u{9b}".into();
        hostile.principal = Some("user:a\tb@example.com".into());
        hostile.steps = vec![Step::failed(
            chain::Check::Audience,
            "audience `x\nALLOW 200 GET vault /`".to_owned(),
        )];
        log.record(hostile);
        let got = log.recent(1).pop().unwrap();
        assert_eq!(
            got.reason,
            "the JWT's key id `x\\nALLOW 200 GET vault /` is unknown"
        );
        assert_eq!(got.path, "/\\u{1b}[2J\\u{1b}[31mred\\r\\u{7f}\\u{9b}");
        assert_eq!(got.principal.as_deref(), Some("user:a\\tb@example.com"));
        assert_eq!(got.steps[0].detail, "audience `x\\nALLOW 200 GET vault /`");
        assert!(!serde_json::to_string(&got).unwrap().contains("\\u001b"));
        assert!(matches!(
            escape_controls("plain ✓ text"),
            std::borrow::Cow::Borrowed(_)
        ));
        // U+00A3 shares C1's lead byte and is no control; U+0085 is one.
        assert!(matches!(
            escape_controls("£5"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(escape_controls("£\u{85}"), "£\\u{85}");
    }

    #[test]
    fn each_surface_has_one_name() {
        for surface in ALL_SURFACES {
            let json = serde_json::to_string(&surface).unwrap();
            assert_eq!(json, format!("\"{}\"", surface.as_str()));
            assert_eq!(Surface::named(surface.as_str()), Some(surface));
        }
        // Every variant but `Other` is listed, in order (discriminants count from 0).
        for (i, surface) in ALL_SURFACES.into_iter().enumerate() {
            assert_eq!(surface as usize, i);
        }
        assert_eq!(Surface::Other as usize, ALL_SURFACES.len());
        assert_eq!(Surface::named("other"), None);
        // Another version's surface reads as `Other`, not as an error.
        let read: Surface = serde_json::from_str("\"cloudtasks\"").unwrap();
        assert_eq!(read, Surface::Other);
    }
}
