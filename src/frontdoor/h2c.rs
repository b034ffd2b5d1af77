//! Containers spoken to in HTTP/2 with prior knowledge (h2c), as Cloud Run speaks to a
//! service that is HTTP/2 end to end, and to every container for native gRPC requests.
//!
//! One connection per container address and thread carries every stream to it: HTTP/2
//! multiplexes, so there is no pool of idle connections to keep, only one to replace when
//! the container closes it. A response's body is streamed through [`Streamed`], which holds
//! the service's timeout over the whole exchange and, for gRPC, ends a stream the container
//! broke off with a status a gRPC client reads rather than a reset it cannot explain.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::pool::SendError;
use crate::upstream::supervisor::InFlight;

/// A native gRPC request: `application/grpc`, alone or with a subtype (`+proto`) or
/// parameters. gRPC-Web (`application/grpc-web…`) is HTTP/1-friendly and is not one.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..16)
                .filter(|p| p.eq_ignore_ascii_case("application/grpc"))
                .map(|_| &v[16..])
        })
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
}

/// A connection to a container, and what the container first sent on it.
type Kept = (SendRequest<Body>, Arc<FirstBytes>);

/// Marks the response to a native gRPC request (an extension the proxy sets), so that only
/// such an answer is searched for a `grpc-status`.
#[derive(Clone, Copy)]
pub(crate) struct GrpcCall;

thread_local! {
    /// By container `host:port`, the configuration's own addresses (bounded by it).
    static CONNECTIONS: RefCell<HashMap<String, Kept>> = RefCell::new(HashMap::new());
}

/// Sends `req` (its URI absolute: scheme, the client's authority and the path) to the
/// container at `address` on the thread's connection to it, opening one if there is none
/// or the container closed it. A request the connection gave back unsent goes once more,
/// on a new connection.
pub(crate) async fn send(
    address: &str,
    req: Request<Body>,
) -> Result<Response<Incoming>, SendError> {
    let kept = CONNECTIONS.with(|c| {
        let mut c = c.borrow_mut();
        match c.get(address) {
            Some((sender, _)) if sender.is_closed() => {
                c.remove(address);
                None
            }
            other => other.cloned(),
        }
    });
    let req = match kept {
        Some((mut sender, first)) => match sender.try_send_request(req).await {
            Ok(response) => return Ok(response),
            Err(mut e) => match e.take_message() {
                Some(unsent) => unsent,
                None => return Err(failed(e.into_error(), &first)),
            },
        },
        None => req,
    };
    let (mut sender, first) = connect(address).await?;
    CONNECTIONS.with(|c| {
        let mut c = c.borrow_mut();
        // A new container address (a restarted command's port): drop the closed ones.
        c.retain(|_, (s, _)| !s.is_closed());
        c.insert(address.to_owned(), (sender.clone(), first.clone()));
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| failed(e, &first))
}

async fn connect(address: &str) -> Result<Kept, SendError> {
    let stream = super::pool::open(address).await?;
    let first = Arc::new(FirstBytes::default());
    let sniffed = Sniffed {
        inner: stream,
        first: first.clone(),
    };
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(sniffed))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, first))
}

/// The first bytes a container sent on a connection, kept to tell, when an exchange
/// fails, a container that speaks HTTP/2 from one that does not: an HTTP/2 server's first
/// frame is SETTINGS (RFC 9113 §3.4), an HTTP/1 server's answer to HTTP/2's preface is
/// `HTTP/1.1 400 …`, and an HTTP/1-only server may close without a word.
#[derive(Default)]
pub(crate) struct FirstBytes(std::sync::OnceLock<Vec<u8>>);

impl FirstBytes {
    /// How the container showed that it does not speak HTTP/2, if it did.
    fn other_protocol(&self) -> Option<String> {
        const SETTINGS: u8 = 0x4;
        match self.0.get() {
            None => Some(
                "it sent nothing and closed the connection, as an HTTP/1-only server does on reading HTTP/2's preface"
                    .to_owned(),
            ),
            Some(first) if first.len() >= 4 && first[3] == SETTINGS => None,
            Some(first) => {
                let shown: String = first
                    .iter()
                    .take_while(|b| b.is_ascii_graphic() || **b == b' ')
                    .map(|b| char::from(*b))
                    .collect();
                Some(if shown.is_empty() {
                    "its first bytes were no HTTP/2 frame".to_owned()
                } else {
                    format!("it answered `{shown}…`, not an HTTP/2 frame")
                })
            }
        }
    }
}

/// A failed exchange: the container's other protocol when it showed one, else the error.
fn failed(e: hyper::Error, first: &FirstBytes) -> SendError {
    match first.other_protocol() {
        Some(how) => SendError::NotHttp2(how),
        None => SendError::Exchange(e),
    }
}

/// A connection to a container that keeps what it first reads (see [`FirstBytes`]).
struct Sniffed {
    inner: TcpStream,
    first: Arc<FirstBytes>,
}

impl AsyncRead for Sniffed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() && self.first.0.get().is_none() {
            let _ = self.first.0.set(read[..read.len().min(24)].to_vec());
        }
        polled
    }
}

impl AsyncWrite for Sniffed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// gRPC's status codes that the front door itself may end a stream with.
#[derive(Clone, Copy)]
enum GrpcStatus {
    DeadlineExceeded = 4,
    Unavailable = 14,
}

/// A container's response body, streamed: cut off when the service's timeout, counted from
/// the request's arrival, runs out (Cloud Run's timeout covers the whole stream), and, for
/// gRPC, ended with `grpc-status` trailers when the container breaks the stream off or the
/// time runs out, so the client sees `UNAVAILABLE` or `DEADLINE_EXCEEDED` after whatever
/// output had arrived. A started command's request stays counted in flight until then.
pub(crate) struct Streamed {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout_secs: u64,
    grpc: bool,
    ended: bool,
    _in_flight: Option<InFlight>,
}

impl Streamed {
    pub(crate) fn new(
        inner: Incoming,
        deadline: Instant,
        timeout_secs: u64,
        grpc: bool,
        in_flight: Option<InFlight>,
    ) -> Streamed {
        Streamed {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timeout_secs,
            grpc,
            ended: false,
            _in_flight: in_flight,
        }
    }

    /// The stream's last frame: gRPC trailers for a gRPC call, an error for the rest.
    fn end(
        &mut self,
        status: GrpcStatus,
        message: String,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.ended = true;
        if !self.grpc {
            return Poll::Ready(Some(Err(message.into())));
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(status as u16));
        if let Ok(value) = HeaderValue::from_str(&grpc_message(&message)) {
            trailers.insert("grpc-message", value);
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }
}

impl Streamed {
    fn timed_out(&mut self) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let secs = self.timeout_secs;
        self.end(
            GrpcStatus::DeadlineExceeded,
            format!(
                "the service's timeout of {secs} s ran out before the container ended the stream"
            ),
        )
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // First, so that a container sending faster than the client reads is cut off too.
        if self.deadline.is_elapsed() {
            return self.timed_out();
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.ended = frame.is_trailers();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => self.end(
                GrpcStatus::Unavailable,
                format!("the container broke the stream off: {e}"),
            ),
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => self.timed_out(),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            return SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}

/// A gRPC response's body, passed through, that adds the `grpc-status` of its trailers to
/// the decision recorded as `number` (the status comes after the decision was made).
pub(crate) struct StatusNoted {
    inner: Body,
    state: crate::state::AppState,
    number: u64,
}

impl StatusNoted {
    pub(crate) fn new(inner: Body, state: crate::state::AppState, number: u64) -> StatusNoted {
        StatusNoted {
            inner,
            state,
            number,
        }
    }
}

impl http_body::Body for StatusNoted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            let code = frame
                .trailers_ref()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok()?.parse().ok());
            if let Some(code) = code {
                self.state.decisions().grpc_ended(self.number, code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `grpc-message`'s encoding: percent-encoded UTF-8, every byte outside printable ASCII and
/// `%` itself escaped (the gRPC over HTTP/2 protocol, "Responses").
fn grpc_message(message: &str) -> String {
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(0x7f);
    percent_encoding::utf8_percent_encode(message, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_is_its_content_type_and_subtypes_not_grpc_web() {
        for (content_type, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc;charset=utf-8", true),
            ("Application/GRPC", true),
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/grpcx", false),
            ("application/json", false),
            ("", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            assert_eq!(is_grpc(&h), grpc, "{content_type}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_messages_escape_percent_and_non_ascii() {
        assert_eq!(grpc_message("plain text: ok"), "plain text: ok");
        assert_eq!(grpc_message("100% café\n"), "100%25 caf%C3%A9%0A");
    }
}
