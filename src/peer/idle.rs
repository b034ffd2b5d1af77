//! Connections that hold a place and do nothing (issue 26): a socket that never sends a
//! byte was never closed, because hyper's header-read deadline starts only once a request
//! has begun, and the HTTP version sniffing before it has no deadline at all; ~4,100 such
//! sockets shut a listener out, and 1,024 idle TLS tunnels every later `CONNECT`.
//!
//! - [`FirstByte`] gives a connection a deadline for its first byte;
//! - [`Connections`] caps how many are open at once, and at the cap asks one to close
//!   instead of turning the newcomer away: the oldest that has not sent a byte yet (idle
//!   for certain, and most likely a flood's), else the oldest (it finishes a request in
//!   flight first; an idle one closes at once).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `io` that fails with `TimedOut` if its first byte has not arrived within the deadline;
/// after that byte it is `io` unchanged (HTTP's own deadlines take over). Made by
/// [`Slot::first_byte`], which it tells when the byte came.
pub(crate) struct FirstByte<IO> {
    io: IO,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    signals: Arc<Signals>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstByte<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.deadline = None;
                this.signals.spoke.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the connection sent nothing within its deadline",
                )))
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstByte<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// At most `max` connections open at once, oldest first in line to be shed.
#[derive(Clone)]
pub(crate) struct Connections {
    max: usize,
    permits: Arc<Semaphore>,
    /// Newcomers waiting at the cap for the oldest to make room: bounded, so that a flood
    /// at a cap of busy connections is refused at once rather than held open.
    waiting: Arc<Semaphore>,
    open: Arc<Mutex<Open>>,
    /// When a refusal was last logged, so that a flood does not flood the log too.
    refused_said: Arc<Mutex<Option<Instant>>>,
}

/// How many newcomers may wait at the cap at once.
const MAX_WAITING: usize = 64;

#[derive(Default)]
struct Open {
    next: u64,
    /// Each open connection, by the order they came in.
    by_age: BTreeMap<u64, Arc<Signals>>,
    /// Set by [`Connections::close_all`]: no newcomer is let in after it.
    closing: bool,
}

impl Open {
    /// Takes the connection to ask to close: the oldest that has not spoken, else the
    /// oldest. (A scan, at the cap only.)
    fn take_sheddable(&mut self) -> Option<Arc<Signals>> {
        let id = self
            .by_age
            .iter()
            .find(|(_, signals)| !signals.spoke.load(Ordering::Relaxed))
            .or_else(|| self.by_age.first_key_value())
            .map(|(id, _)| *id)?;
        self.by_age.remove(&id)
    }
}

/// What one connection and [`Connections`] tell each other. Polled on every wake of the
/// connection's task, so an atomic and an `AtomicWaker`, not a lock: a `Notify` and a
/// `watch` there cost the warm front door about 900 instructions a request (callgrind,
/// 80,190 against 79,270; 79,000 before issue 26).
#[derive(Default)]
struct Signals {
    /// It has sent a byte.
    spoke: AtomicBool,
    /// It is asked to close.
    told: AtomicBool,
    waker: AtomicWaker,
}

impl Signals {
    fn tell(&self) {
        self.told.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// One connection's place among [`Connections`], given back when dropped.
pub(crate) struct Slot {
    id: u64,
    signals: Arc<Signals>,
    open: Arc<Mutex<Open>>,
    _permit: OwnedSemaphorePermit,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Connections {
        Connections {
            max,
            permits: Arc::new(Semaphore::new(max)),
            waiting: Arc::new(Semaphore::new(MAX_WAITING)),
            open: Arc::default(),
            refused_said: Arc::default(),
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// How many connections hold a place now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// A place for a new connection: at once under the cap; at it, the oldest open
    /// connection is told to close and the newcomer waits up to `wait` for its place.
    /// `None` if none came free (the oldest was busy and is finishing its request), or if
    /// [`MAX_WAITING`] newcomers are waiting already; the refusal is logged, at most once a
    /// second, as `what`.
    pub(crate) async fn admit(&self, wait: Duration, what: &str) -> Option<Slot> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => self.make_room(wait).await,
        };
        let Some(permit) = permit else {
            self.say_refused(what);
            return None;
        };
        let signals = Arc::new(Signals::default());
        let mut open = lock(&self.open);
        if open.closing {
            return None;
        }
        let id = open.next;
        open.next += 1;
        open.by_age.insert(id, signals.clone());
        Some(Slot {
            id,
            signals,
            open: self.open.clone(),
            _permit: permit,
        })
    }

    async fn make_room(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let _waiting = self.waiting.try_acquire().ok()?;
        if let Some(signals) = lock(&self.open).take_sheddable() {
            signals.tell();
        }
        tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn say_refused(&self, what: &str) {
        let mut said = lock(&self.refused_said);
        if said.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
            tracing::warn!(max = self.max, "{what}");
            *said = Some(Instant::now());
        }
    }

    /// Asks every open connection to close (each finishes a request in flight first), and
    /// lets no newcomer in from now on.
    pub(crate) fn close_all(&self) {
        let mut open = lock(&self.open);
        open.closing = true;
        for signals in open.by_age.values() {
            signals.tell();
        }
    }

    /// Completes once every connection has given its place back.
    pub(crate) async fn all_closed(&self) {
        let max = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(max).await;
    }
}

/// A panic elsewhere while holding one leaves what it guards whole: take it as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    /// `io`, this connection's, with a deadline of `within` for its first byte; the byte
    /// marks the connection as one that has spoken.
    pub(crate) fn first_byte<IO>(&self, io: IO, within: Duration) -> FirstByte<IO> {
        FirstByte {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            signals: self.signals.clone(),
        }
    }

    /// Never asks this connection to make room: for one that cannot tell idle from busy
    /// (a tunnel of bytes), which keeps its place until it closes.
    pub(crate) fn keep(&self) {
        lock(&self.open).by_age.remove(&self.id);
    }

    /// Completes when this connection is asked to close: to make room for a newer one, or
    /// because the listener stops.
    pub(crate) async fn shed(&self) {
        std::future::poll_fn(|cx| {
            let told = || self.signals.told.load(Ordering::Acquire);
            if told() {
                return Poll::Ready(());
            }
            self.signals.waker.register(cx.waker());
            // Told between the first look and the registration: seen now.
            if told() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.open).by_age.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn at_the_cap_the_oldest_is_asked_to_make_room() {
        let connections = Connections::new(2);
        let first = connections.admit(Duration::ZERO, "full").await.unwrap();
        let second = connections.admit(Duration::ZERO, "full").await.unwrap();
        // The third asks the oldest to close; once it does, the third has its place.
        let third = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit(Duration::from_secs(5), "full").await }
        });
        tokio::time::timeout(Duration::from_secs(1), first.shed())
            .await
            .expect("the oldest is told");
        drop(first);
        let third = third.await.unwrap().expect("the third has its place");
        // Only the oldest was told.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second.shed())
                .await
                .is_err()
        );
        // One that does not close in time leaves the newcomer out, not waiting forever.
        assert!(
            connections
                .admit(Duration::from_millis(50), "full")
                .await
                .is_none()
        );
        drop((second, third));
    }

    #[tokio::test]
    async fn past_the_waiting_bound_a_newcomer_is_refused_at_once() {
        let connections = Connections::new(1);
        // The one place is held by a connection that never makes room.
        let _busy = connections.admit(Duration::ZERO, "full").await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..MAX_WAITING {
            let connections = connections.clone();
            waiting.push(tokio::spawn(async move {
                connections
                    .admit(Duration::from_secs(30), "full")
                    .await
                    .is_some()
            }));
        }
        // Every waiter has taken its place in line before the next one comes.
        while connections.waiting.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        assert!(
            connections
                .admit(Duration::from_secs(30), "full")
                .await
                .is_none()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        for w in waiting {
            w.abort();
        }
    }

    #[tokio::test]
    async fn one_that_never_spoke_makes_room_before_an_older_one_that_did() {
        let connections = Connections::new(3);
        let (mut client, server) = tokio::io::duplex(64);
        let spoke = connections.admit(Duration::ZERO, "full").await.unwrap();
        let mut io = spoke.first_byte(server, Duration::from_secs(5));
        client.write_all(b"G").await.unwrap();
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        let silent = connections.admit(Duration::ZERO, "full").await.unwrap();
        let kept = connections.admit(Duration::ZERO, "full").await.unwrap();
        kept.keep();
        let newcomer = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit(Duration::from_secs(5), "full").await }
        });
        tokio::time::timeout(Duration::from_secs(1), silent.shed())
            .await
            .expect("the silent one is told, though the one that spoke is older");
        drop(silent);
        let newcomer = newcomer.await.unwrap().expect("the newcomer has its place");
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = newcomer.first_byte(server, Duration::from_secs(5));
        client.write_all(b"G").await.unwrap();
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        // Next at the cap, with every one spoken: the oldest, never the kept one.
        let next = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit(Duration::from_millis(300), "full").await }
        });
        tokio::time::timeout(Duration::from_secs(1), spoke.shed())
            .await
            .expect("the oldest is told");
        assert!(
            next.await.unwrap().is_none(),
            "it did not close, so no place came free"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), kept.shed())
                .await
                .is_err()
        );
        drop((spoke, kept, newcomer));
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_and_a_talking_one_does_not() {
        let connections = Connections::new(2);
        let slot = connections.admit(Duration::ZERO, "full").await.unwrap();
        let (client, server) = tokio::io::duplex(64);
        let mut silent = slot.first_byte(server, Duration::from_millis(50));
        let mut buf = [0u8; 8];
        let err = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = slot.first_byte(server, Duration::from_millis(50));
        client.write_all(b"G").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 1);
        // After the first byte the deadline is gone: a pause is HTTP's business.
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"ET").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 2);
    }
}
