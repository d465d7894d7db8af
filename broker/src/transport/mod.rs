//! The byte streams a connection runs on, behind one [`Reader`] and one [`Writer`]: the
//! same connection task serves every listener kind.
//!
//! Plain TCP is a variant of its own and keeps the path it always had: readiness, then
//! `try_read` / `try_write_vectored` on the socket's halves, with no call through a
//! pointer and no copy. Everything else (TLS, WebSocket, WebSocket over TLS) is a
//! [`Stream`], any `AsyncRead + AsyncWrite` ([`tls`], [`ws`]), split in two halves of one
//! task; such a stream may hold written bytes (a TLS record, a WebSocket frame) until it
//! is flushed, which the writer remembers.
//!
//! [`establish`] turns an accepted socket into the listener's stream (the TLS handshake,
//! the WebSocket upgrade) within the time the client has for its CONNECT, refusing with
//! a log line what does not belong there (a plain MQTT client on a TLS port, an HTTP
//! request that is no upgrade). [`linger`] closes the way a client can read: the write
//! side shut, what the client still sends read and discarded for a bounded time.

pub(crate) mod tls;
pub(crate) mod ws;

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::hooks::CertificateIdentity;
use crate::listener::{Endpoint, ListenerKind};

/// Bytes one read may take. An empty `BytesMut` offers `read_buf` only 64 bytes, a few
/// small PUBLISHes per system call: reading that way halved the broker's throughput
/// (pairs QoS 0: 1.97 M -> 0.87 M msg/s), the kernel's work per read dominating.
pub(crate) const READ_CHUNK: usize = 8192;

/// How long a connection closed by the broker keeps reading (and discarding) what the
/// client still sends, and how much at most. Closing a socket with unread input resets
/// the connection, and a client still sending then gets an error before it reads the
/// DISCONNECT that says why (EPIPE on its next PUBREL, seen with a QoS 2 publisher past
/// Receive Maximum).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_MAX_BYTES: usize = 1024 * 1024;

thread_local! {
    /// Where a connection with no buffer reads (see `read_chunk`): one per worker thread,
    /// zeroed once, where an array on the stack was zeroed on every read.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// A byte stream other than plain TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A TLS or WebSocket stream.
pub(crate) type Stream = Box<dyn Io>;

/// The read side of a connection.
pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    Stream(ReadHalf<Stream>),
}

/// The write side of a connection.
pub(crate) enum Writer {
    Tcp(OwnedWriteHalf),
    Stream {
        half: WriteHalf<Stream>,
        /// Bytes were written since the last flush (they may wait in a TLS record or a
        /// WebSocket frame).
        unflushed: bool,
    },
}

/// A connection's stream, ready for MQTT.
pub(crate) struct Established {
    pub reader: Reader,
    pub writer: Writer,
    /// What the client's verified certificate names (tls, wss with `ca_file`, when the
    /// client sent one).
    pub peer_certificate: Option<CertificateIdentity>,
}

impl Established {
    fn tcp(stream: TcpStream) -> Established {
        let (reader, writer) = stream.into_split();
        Established {
            reader: Reader::Tcp(reader),
            writer: Writer::Tcp(writer),
            peer_certificate: None,
        }
    }

    fn stream(stream: Stream, peer_certificate: Option<CertificateIdentity>) -> Established {
        let (reader, writer) = tokio::io::split(stream);
        Established {
            reader: Reader::Stream(reader),
            writer: Writer::Stream {
                half: writer,
                unflushed: false,
            },
            peer_certificate,
        }
    }
}

/// Makes the listener's stream out of an accepted socket: the TLS handshake and the
/// WebSocket upgrade, before `deadline`. The error says what the client did wrong.
pub(crate) async fn establish(
    stream: TcpStream,
    endpoint: &Endpoint,
    deadline: tokio::time::Instant,
    max_packet_size: u32,
) -> anyhow::Result<Established> {
    if endpoint.kind == ListenerKind::Tcp {
        return Ok(Established::tcp(stream));
    }
    let timeout = |what: &str| anyhow::anyhow!("no {what} within connect_timeout_ms: closed");
    // The first bytes tell a client that speaks the wrong thing, which the handshake
    // would only call a corrupt message.
    let mut first = [0u8; 4];
    let n = tokio::time::timeout_at(deadline, stream.peek(&mut first))
        .await
        .map_err(|_| timeout("data"))??;
    anyhow::ensure!(n > 0, "closed before sending anything");
    wrong_protocol(endpoint.kind, &first[..n])?;
    let (stream, peer_certificate): (Stream, Option<CertificateIdentity>) = match &endpoint.tls {
        Some(tls) => {
            let tls_stream = tokio::time::timeout_at(deadline, tls.acceptor().accept(stream))
                .await
                .map_err(|_| timeout("TLS handshake"))?
                .map_err(|e| anyhow::anyhow!("TLS handshake failed: {e}"))?;
            let peer_certificate = tls::peer_identity(tls_stream.get_ref().1);
            if endpoint.kind == ListenerKind::Tls {
                return Ok(Established::stream(Box::new(tls_stream), peer_certificate));
            }
            (Box::new(tls_stream) as Stream, peer_certificate)
        }
        None => (Box::new(stream) as Stream, None),
    };
    let ws = tokio::time::timeout_at(
        deadline,
        ws::accept(stream, &endpoint.ws_path, max_packet_size),
    )
    .await
    .map_err(|_| timeout("WebSocket upgrade"))??;
    Ok(Established::stream(Box::new(ws), peer_certificate))
}

/// Refuses a client whose first bytes are not what the listener speaks.
fn wrong_protocol(kind: ListenerKind, first: &[u8]) -> anyhow::Result<()> {
    /// CONNECT's first byte, and a TLS handshake record's.
    const MQTT_CONNECT: u8 = 0x10;
    const TLS_HANDSHAKE: u8 = 0x16;
    let http =
        first.starts_with(b"GET ") || first.starts_with(b"POST") || first.starts_with(b"HEAD");
    match (kind.is_tls(), first[0]) {
        (true, MQTT_CONNECT) => anyhow::bail!(
            "a plain MQTT client on a {} listener (it must connect with TLS): closed",
            kind.as_str()
        ),
        (true, _) if http => anyhow::bail!(
            "a plain HTTP request on a {} listener (it must connect with TLS): closed",
            kind.as_str()
        ),
        (false, MQTT_CONNECT) => {
            anyhow::bail!("a plain MQTT client on a ws listener (it must use WebSocket): closed")
        }
        (false, TLS_HANDSHAKE) => anyhow::bail!(
            "a TLS handshake on a ws listener (kind = \"wss\" is WebSocket over TLS): closed"
        ),
        _ => Ok(()),
    }
}

impl Reader {
    /// Reads what is there into `buf` as it is (the CONNECT phase).
    pub(crate) async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Reader::Tcp(tcp) => tcp.read_buf(buf).await,
            Reader::Stream(stream) => stream.read_buf(buf).await,
        }
    }

    /// Reads what the stream has (at most about READ_CHUNK bytes) into `rbuf`, growing it
    /// first when little room is left; 0 at the end of the stream. Cancel safe.
    ///
    /// A connection with no buffer (light traffic, see `Connection::serve`) reads into a
    /// scratch buffer of its thread and keeps only the bytes it got: a PINGREQ or a
    /// SUBSCRIBE then costs a few bytes of heap, not an 8 KiB buffer. Freed 8 KiB buffers
    /// fragmented the heap: the small long-lived allocations of the next connections were
    /// carved out of them, and one PINGREQ per connection added 4.8 KB of resident memory
    /// to each (2,000 connections, debug build).
    pub(crate) async fn read_chunk(&mut self, rbuf: &mut BytesMut) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_chunk(cx, rbuf)).await
    }

    /// [`Reader::read_chunk`] as a poll: the serve loop's read, which keeps no future
    /// of its own across the wait. A TCP socket's readiness is waited for in its own
    /// waker slot (`poll_read_ready`), where `readable()` was a 168-byte future (a node
    /// of the socket's list of waiters) in every idle connection's task.
    pub(crate) fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        rbuf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            Reader::Tcp(tcp) => loop {
                // Waiting for readiness rather than in a read holds no buffer while
                // the connection is quiet.
                ready!(tcp.as_ref().poll_read_ready(cx))?;
                if let Some(n) = try_read_tcp(tcp, rbuf)? {
                    return Poll::Ready(Ok(n));
                }
            },
            Reader::Stream(stream) if rbuf.capacity() == 0 => {
                READ_SCRATCH.with_borrow_mut(|chunk| {
                    let mut read = ReadBuf::new(chunk);
                    ready!(Pin::new(&mut *stream).poll_read(cx, &mut read))?;
                    rbuf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                })
            }
            Reader::Stream(stream) => {
                if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                    rbuf.reserve(READ_CHUNK);
                }
                // `read_buf`'s future holds only its two references: made and polled
                // once per poll, it keeps nothing between polls.
                std::pin::pin!(stream.read_buf(rbuf)).poll(cx)
            }
        }
    }
}

/// One non-blocking read of a TCP socket (see `Reader::read_chunk`); `None` when the
/// readiness was spurious.
fn try_read_tcp(reader: &OwnedReadHalf, rbuf: &mut BytesMut) -> io::Result<Option<usize>> {
    let read = if rbuf.capacity() == 0 {
        READ_SCRATCH.with_borrow_mut(|chunk| {
            reader
                .try_read(chunk)
                .inspect(|&n| rbuf.extend_from_slice(&chunk[..n]))
        })
    } else {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        reader.try_read_buf(rbuf)
    };
    match read {
        Ok(n) => Ok(Some(n)),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(error) => Err(error),
    }
}

impl Writer {
    /// Whether written bytes may still wait in the stream for a flush.
    pub(crate) fn unflushed(&self) -> bool {
        matches!(
            self,
            Writer::Stream {
                unflushed: true,
                ..
            }
        )
    }

    /// Writes and flushes `bytes` (a refusal's CONNACK).
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Writer::Tcp(tcp) => tcp.write_all(bytes).await,
            Writer::Stream { half, unflushed } => {
                half.write_all(bytes).await?;
                half.flush().await?;
                *unflushed = false;
                Ok(())
            }
        }
    }

    /// Shuts the write side down (TLS: close_notify; WebSocket: a Close frame).
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(tcp) => tcp.shutdown().await,
            Writer::Stream { half, .. } => half.shutdown().await,
        }
    }
}

/// Closes a connection the broker ends so the client reads all that was sent: shuts the
/// write side (what was written goes first), then [`drain`]s.
pub(crate) async fn linger(reader: &mut Reader, writer: &mut Writer) {
    let _ = tokio::time::timeout(LINGER, writer.shutdown()).await;
    drain(reader).await;
}

/// Reads and discards what the client still sends until it closes too, for at most
/// [`LINGER`] and [`LINGER_MAX_BYTES`] (the write side is shut already).
pub(crate) async fn drain(reader: &mut Reader) {
    let _ = tokio::time::timeout(LINGER, async {
        let mut discarded = 0;
        let mut buf = BytesMut::new();
        while discarded < LINGER_MAX_BYTES {
            buf.clear();
            match reader.read_chunk(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrong_protocol_is_named() {
        let refused = |kind, first: &[u8], needle: &str| {
            let error = wrong_protocol(kind, first).unwrap_err().to_string();
            assert!(error.contains(needle), "{needle:?} not in {error:?}");
        };
        refused(
            ListenerKind::Tls,
            &[0x10, 0x2a, 0, 4],
            "plain MQTT client on a tls listener",
        );
        refused(
            ListenerKind::Wss,
            b"GET ",
            "plain HTTP request on a wss listener",
        );
        refused(ListenerKind::Ws, &[0x10, 0x2a], "must use WebSocket");
        refused(ListenerKind::Ws, &[0x16, 3, 1], "kind = \"wss\"");
        assert!(wrong_protocol(ListenerKind::Tls, &[0x16, 3, 1, 0]).is_ok());
        assert!(wrong_protocol(ListenerKind::Ws, b"GET ").is_ok());
    }
}
