//! ably-server: a local server that speaks enough of Ably's REST and realtime
//! protocols for the official SDKs and ably_pg's REST publisher. This file is
//! the binary edge: configuration, logging, binding, and the ready line that
//! scripts wait for (exactly one line on stdout).

mod app;
mod auth;
mod capability;
mod channel;
mod channel_name;
mod channel_params;
mod channels;
mod config;
mod connection;
mod error;
mod format;
mod history;
mod http;
mod idempotency;
mod keys;
mod lenient;
mod message;
mod message_id;
mod outbound;
mod presence;
mod protocol;
mod publish;
mod rate_limit;
mod realtime;
mod rest;
mod routes;
mod stats;
mod token;

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::app::{App, Settings};
use crate::channel::ChannelLimits;
use crate::channels::Channels;
use crate::config::Config;
use crate::keys::KeyStore;
use crate::stats::Stats;
use crate::token::TokenStore;

const MAX_FRAME_SIZE: usize = 524_288;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = match &config.log {
        Some(f) => EnvFilter::try_new(f).context("invalid --log filter")?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let app = Arc::new(App {
        keys: KeyStore::new(config.keys.clone()),
        tokens: TokenStore::default(),
        channels: Channels::new(ChannelLimits {
            history: config.history_limit.max(1),
            history_ttl: config.history_ttl(),
            rate_per_second: config.channel_rate_limit,
        }),
        connections: Default::default(),
        settings: Settings {
            max_message_size: config.max_message_size,
            max_frame_size: MAX_FRAME_SIZE.max(config.max_message_size),
            require_tls_for_basic: config.require_tls_for_basic,
            server_id: format!("ably-server-{}", std::process::id()),
            connection_state_ttl: config.connection_state_ttl(),
            presence_leave_delay: config.presence_leave_delay(),
            debug_endpoints: config.debug_endpoints,
        },
        stats: Stats::default(),
    });
    tokio::spawn(app.clone().sweep_forever());

    // `localhost` means both loopbacks: Node may resolve it to ::1 first.
    let (bind_host, also_v6) = match config.host.as_str() {
        "localhost" => ("127.0.0.1", true),
        other => (other, false),
    };
    let listener = tokio::net::TcpListener::bind((bind_host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let addr = listener.local_addr().context("listener has no local address")?;
    let router = routes::router(app);
    if also_v6 {
        match tokio::net::TcpListener::bind(("::1", addr.port())).await {
            Ok(v6) => {
                let router = router.clone();
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(v6.tap_io(no_delay), router).await {
                        tracing::warn!(error = %e, "ipv6 listener stopped");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot also listen on [::1]; serving IPv4 only"),
        }
    }
    let key_names: Vec<&str> = config.keys.iter().map(|k| k.name.as_str()).collect();
    tracing::info!(%addr, keys = ?key_names, debug_endpoints = config.debug_endpoints, "ably-server ready");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ably-server listening on http://{addr}").context("cannot write the ready line")?;
        out.flush().context("cannot flush the ready line")?;
    }

    tokio::select! {
        result = axum::serve(listener.tap_io(no_delay), router) => result.context("server stopped")?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

/// Small frames (ACKs, single messages) leave at once instead of waiting
/// for Nagle's algorithm to coalesce them: latency over throughput.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
