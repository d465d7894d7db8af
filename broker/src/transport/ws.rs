//! WebSocket listeners (ws, wss): tokio-tungstenite, subprotocol `mqtt`, one path.
//!
//! MQTT over WebSocket (MQTT 5.0 §6) carries the packets as a byte stream in binary
//! frames: a frame may hold part of a packet or several. [`WsStream`] is that byte
//! stream, an `AsyncRead + AsyncWrite`, so the connection task reads and writes it as it
//! does TLS: each write leaves as one binary message. The crate exports it
//! ([`crate::WsStream`]) for the client side too: the load generator (`wasmq-bench`)
//! runs its clients on it over a `tokio_tungstenite::client_async` socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::Stream;

/// The subprotocol MQTT clients offer and the broker answers [MQTT-6.0.0-3] [MQTT-6.0.0-4].
const SUBPROTOCOL: &str = "mqtt";

/// Room for the WebSocket framing around the largest packet accepted.
const FRAME_OVERHEAD: usize = 1024;

/// Reads a WebSocket upgrade on `path` offering subprotocol `mqtt`, and answers it. The
/// error says what the request lacked (it was answered 400 or 404, or not at all when it
/// was no HTTP).
pub(crate) async fn accept(
    stream: Stream,
    path: &str,
    max_packet_size: u32,
) -> anyhow::Result<WsStream<Stream>> {
    let mut refused: Option<String> = None;
    #[expect(
        clippy::result_large_err,
        reason = "the error type is tungstenite's, an HTTP response"
    )]
    let callback = |request: &Request, mut response: Response| {
        if request.uri().path() != path {
            let why = format!(
                "WebSocket upgrade to {:?}: MQTT is at {path:?}",
                request.uri().path()
            );
            refused = Some(why.clone());
            return Err(error_response(StatusCode::NOT_FOUND, why));
        }
        let offered = request
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == SUBPROTOCOL);
        if !offered {
            let why = format!(
                "WebSocket upgrade without subprotocol \"mqtt\" (offered: {:?})",
                request
                    .headers()
                    .get(header::SEC_WEBSOCKET_PROTOCOL)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
            );
            refused = Some(why.clone());
            return Err(error_response(StatusCode::BAD_REQUEST, why));
        }
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(response)
    };
    let limit = max_packet_size as usize + FRAME_OVERHEAD;
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        // tungstenite's default read buffer is 128 KiB per connection.
        .read_buffer_size(super::READ_CHUNK);
    let accepted =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await;
    match accepted {
        Ok(ws) => Ok(WsStream::new(ws)),
        Err(error) => match refused {
            Some(why) => Err(anyhow::anyhow!("{why}: refused")),
            None => Err(anyhow::anyhow!(
                "not a WebSocket upgrade request ({error}): closed"
            )),
        },
    }
}

fn error_response(status: StatusCode, why: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why));
    *response.status_mut() = status;
    response
}

fn io_error(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(error) => error,
        other => io::Error::other(other),
    }
}

/// The byte stream of an MQTT WebSocket connection, server or client side: what is
/// read is the content of the binary messages, and each write leaves as one binary
/// message (buffered by tungstenite until the stream is flushed).
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message read.
    pending: Bytes,
}

impl<S> WsStream<S> {
    /// The byte stream of a WebSocket whose handshake is done (accepted or connected).
    pub fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            pending: Bytes::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // Pings are answered by tungstenite; pongs need nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "[MQTT-6.0.0-1] a text WebSocket frame",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(io_error(error))),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// Everything given leaves as one binary message.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
        let len = bufs.iter().map(|b| b.len()).sum();
        let mut frame = BytesMut::with_capacity(len);
        for buf in bufs {
            frame.extend_from_slice(buf);
        }
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(frame.freeze()))
            .map_err(io_error)?;
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(error) => Poll::Ready(Err(io_error(error))),
        }
    }
}
