//! One WebSocket's I/O: a writer task drains the transport's outbound queue
//! (the same queue channels deliver into, so frames leave in the order they
//! were queued), while this task reads frames, sends a HEARTBEAT every 10 s
//! and fires the token timers. Every frame is decoded by its WebSocket type
//! (text = JSON, binary = msgpack). When the socket ends, the session decides
//! what of the connection is kept (see `lifecycle`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::{interval_at, sleep_until, Instant};

use super::handshake;
use super::session::Flow;
use super::ConnectParams;
use crate::app::App;
use crate::format::Format;
use crate::outbound::{Outbound, Wire};
use crate::protocol::{action, ProtocolMessage};
use crate::stats::Stats;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// How long queued frames may take to flush after the connection is done.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

async fn write_all(mut sink: SplitSink<WebSocket, WsMessage>, mut rx: mpsc::UnboundedReceiver<Outbound>, format: Format) {
    while let Some(out) = rx.recv().await {
        let message = match out {
            Outbound::Frame(frame) => match frame.wire(format) {
                Some(Wire::Text(text)) => WsMessage::Text(text),
                Some(Wire::Binary(bytes)) => WsMessage::Binary(bytes),
                None => continue,
            },
            Outbound::Close => {
                let _ = sink.send(WsMessage::Close(None)).await;
                break;
            }
        };
        if sink.send(message).await.is_err() {
            break;
        }
    }
}

pub async fn run(socket: WebSocket, params: ConnectParams, app: Arc<App>) {
    Stats::bump(&app.stats.connection_attempts, 1);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::unbounded_channel::<Outbound>();
    let writer = tokio::spawn(write_all(sink, rx, params.format));
    let stop = Arc::new(Notify::new());

    let session = match handshake::open(&app, &params, tx.clone(), stop.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(code = e.code, reason = %e.message, "connection refused");
            let _ = tx.send(Outbound::message(ProtocolMessage { error: Some(e.info()), ..ProtocolMessage::new(action::ERROR) }));
            let _ = tx.send(Outbound::Close);
            drop(tx);
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
            return;
        }
    };
    Stats::bump(&app.stats.connections_opened, 1);
    drop(tx);

    let mut heartbeat = interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
    let end = loop {
        let timer = session.token_timer();
        let deadline = timer.map_or_else(|| Instant::now() + Duration::from_secs(3600), |t| t.at());
        let flow = tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => session.handle_frame(Format::Json, text.as_bytes()),
                Some(Ok(WsMessage::Binary(bytes))) => session.handle_frame(Format::Msgpack, &bytes),
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => Flow::Drop,
                Some(Ok(_)) => Flow::Continue, // ping/pong: answered by the WebSocket layer
            },
            _ = heartbeat.tick() => {
                session.send(ProtocolMessage::new(action::HEARTBEAT));
                Flow::Continue
            }
            _ = sleep_until(deadline), if timer.is_some() => session.on_token_timer(),
            _ = stop.notified() => Flow::Drop,
        };
        if !matches!(flow, Flow::Continue) {
            break flow;
        }
    };
    session.end(end);
    drop(session);
    Stats::bump(&app.stats.connections_closed, 1);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
}
