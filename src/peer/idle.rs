//! Connections that hold a place and do nothing (issue 26): a socket that never sends a
//! byte was never closed, because hyper's header-read deadline starts only once a request
//! has begun, and the HTTP version sniffing before it has no deadline at all; ~4,100 such
//! sockets shut a listener out, and 1,024 idle TLS tunnels every later `CONNECT`.
//!
//! - [`FirstByte`] gives a connection a deadline for its first byte;
//! - [`Connections`] caps how many are open at once, and at the cap asks the oldest to
//!   close (it finishes a request in flight first; an idle one closes at once) instead of
//!   turning the newcomer away.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// `io` that fails with `TimedOut` if its first byte has not arrived within the deadline;
/// after that byte it is `io` unchanged (HTTP's own deadlines take over).
pub(crate) struct FirstByte<IO> {
    io: IO,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> FirstByte<IO> {
    pub(crate) fn new(io: IO, within: Duration) -> FirstByte<IO> {
        FirstByte {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
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
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    next: u64,
    /// Each open connection's signal to close, by the order they came in.
    by_age: BTreeMap<u64, Arc<Notify>>,
}

/// One connection's place among [`Connections`], given back when dropped.
pub(crate) struct Slot {
    id: u64,
    told: Arc<Notify>,
    open: Arc<Mutex<Open>>,
    _permit: OwnedSemaphorePermit,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Connections {
        Connections {
            max,
            permits: Arc::new(Semaphore::new(max)),
            open: Arc::default(),
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// A place for a new connection: at once under the cap; at it, the oldest open
    /// connection is told to close and the newcomer waits up to `wait` for its place
    /// (`None` if none came free: the oldest was busy and is finishing its request).
    pub(crate) async fn admit(&self, wait: Duration) -> Option<Slot> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let oldest = self.lock().by_age.pop_first();
                if let Some((_, told)) = oldest {
                    told.notify_one();
                }
                tokio::time::timeout(wait, self.permits.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let told = Arc::new(Notify::new());
        let mut open = self.lock();
        let id = open.next;
        open.next += 1;
        open.by_age.insert(id, told.clone());
        Some(Slot {
            id,
            told,
            open: self.open.clone(),
            _permit: permit,
        })
    }

    /// Completes once every connection has given its place back.
    pub(crate) async fn all_closed(&self) {
        let max = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(max).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // A panic elsewhere while holding it leaves the map whole: take it as it is.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Slot {
    /// Completes when this connection is asked to make room for a newer one.
    pub(crate) async fn shed(&self) {
        self.told.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.by_age.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn at_the_cap_the_oldest_is_asked_to_make_room() {
        let connections = Connections::new(2);
        let first = connections.admit(Duration::ZERO).await.unwrap();
        let second = connections.admit(Duration::ZERO).await.unwrap();
        // The third asks the oldest to close; once it does, the third has its place.
        let third = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit(Duration::from_secs(5)).await }
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
        assert!(connections.admit(Duration::from_millis(50)).await.is_none());
        drop((second, third));
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_and_a_talking_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut silent = FirstByte::new(server, Duration::from_millis(50));
        let mut buf = [0u8; 8];
        let err = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = FirstByte::new(server, Duration::from_millis(50));
        client.write_all(b"G").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 1);
        // After the first byte the deadline is gone: a pause is HTTP's business.
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"ET").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 2);
    }
}
