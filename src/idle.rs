//! Idle connections: an I/O wrapper that notes when a connection last moved a byte, and a
//! future that completes once it has been still for a given time, so the server can close
//! connections a client opened and left (each holds a descriptor and buffers).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's I/O that records the time of its last read or write.
#[derive(Debug)]
pub struct IdleIo<T> {
    inner: T,
    activity: Activity,
}

/// When a connection last moved a byte (ms since it was opened), and whether the client
/// has sent any.
#[derive(Debug, Clone)]
pub struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
    read_any: Arc<std::sync::atomic::AtomicBool>,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Completes once the client has sent nothing for `first_byte` after connecting, or the
    /// connection has moved no byte for `idle` after that: a client that connects and stays
    /// silent is held no longer than one that sends half a request.
    pub async fn idle(&self, first_byte: Duration, idle: Duration) {
        loop {
            let deadline = if self.read_any.load(Ordering::Relaxed) {
                self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
            } else {
                self.opened + first_byte
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

impl<T> IdleIo<T> {
    /// Wraps `inner`; the [`Activity`] watches it.
    pub fn new(inner: T) -> (Self, Activity) {
        let activity = Activity {
            opened: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            read_any: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        (Self { inner, activity: activity.clone() }, activity)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_any.store(true, Ordering::Relaxed);
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
