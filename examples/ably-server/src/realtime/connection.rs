//! One WebSocket connection's I/O: a writer task drains the connection's
//! outbound queue (the same queue channels deliver into, so frames leave in
//! the order they were queued), while this task reads frames, sends a
//! HEARTBEAT every 10 s and fires the token-renewal timers. Every frame is
//! decoded by its WebSocket type (text = JSON, binary = msgpack).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep_until, Instant};

use super::protocol::{action, Outbound, ProtocolMessage};
use super::session::{AuthTimer, Flow, Session};
use super::ConnectParams;
use crate::app::{App, Stats};
use crate::format::Format;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// How long queued frames may take to flush after the connection is done.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

fn encode(format: Format, pm: &ProtocolMessage) -> Option<WsMessage> {
    match format.encode(pm) {
        Ok(bytes) => Some(match format {
            Format::Json => WsMessage::Text(String::from_utf8_lossy(&bytes).into_owned().into()),
            Format::Msgpack => WsMessage::Binary(bytes.into()),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "could not encode a protocol message");
            None
        }
    }
}

pub async fn run(socket: WebSocket, params: ConnectParams, app: Arc<App>) {
    Stats::bump(&app.stats.connection_attempts, 1);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outbound>();
    let format = params.format;
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Outbound::Frame(pm) => {
                    if let Some(msg) = encode(format, &pm) {
                        if sink.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
                Outbound::Close => {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    break;
                }
            }
        }
    });

    let mut session = match Session::open(app.clone(), &params, tx.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(code = e.code, reason = %e.message, "connection refused");
            let _ = tx.send(Outbound::Frame(Arc::new(ProtocolMessage {
                error: Some(e.info()),
                ..ProtocolMessage::new(action::ERROR)
            })));
            let _ = tx.send(Outbound::Close);
            drop(tx);
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
            return;
        }
    };
    Stats::bump(&app.stats.connections_opened, 1);
    drop(tx);

    let mut heartbeat = interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
    loop {
        let timer = session.auth_timer();
        let deadline = match timer {
            AuthTimer::RequestReauth(at) | AuthTimer::Expire(at) => at,
            AuthTimer::None => Instant::now() + Duration::from_secs(3600),
        };
        let flow = tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => session.handle_frame(Format::Json, text.as_bytes()),
                Some(Ok(WsMessage::Binary(bytes))) => session.handle_frame(Format::Msgpack, &bytes),
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => Flow::Close,
                Some(Ok(_)) => Flow::Continue, // ping/pong: answered by the WebSocket layer
            },
            _ = heartbeat.tick() => {
                session.send(ProtocolMessage::new(action::HEARTBEAT));
                Flow::Continue
            }
            _ = sleep_until(deadline), if !matches!(timer, AuthTimer::None) => session.on_auth_timer(timer),
        };
        if matches!(flow, Flow::Close) {
            break;
        }
    }
    session.close();
    drop(session);
    Stats::bump(&app.stats.connections_closed, 1);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
}
