//! Serving connections: the accept loop, with what keeps a few clients from taking the server
//! down (a time limit on request headers, a cap on open connections), and graceful shutdown.
//!
//! `axum::serve` sets neither limit: a client that sends half a request and waits held its
//! connection forever, and 300 of them made `/healthz` stop answering.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;
use tracing::{debug, warn};

use super::config::WebConfig;

/// How long requests in flight get to finish once the server is told to stop.
const DRAIN: Duration = Duration::from_secs(5);

/// What a connection beyond `max_connections` is told, before it is closed.
const TOO_MANY: &str = "too many connections to this dashboard now\n";

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish (for up to [`DRAIN`]). Each connection must send a request's headers within
/// `config.header_timeout` (also between requests on a kept-alive connection), and at most
/// `config.max_connections` are open at once: one more is answered 503 and closed. An upgraded
/// connection (a WebSocket) leaves the count once upgraded; the WebSocket feed bounds its own.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &WebConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let (stop, stopping) = watch::channel(false);
    let header_timeout = config.header_timeout.ms().max(1) as u64;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: wait for some to be freed.
                    debug!(%error, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, limit = config.max_connections, "Connection refused: too many open.");
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(header_timeout));
            let connection = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let mut told = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(error) = served {
                            debug!(%peer, %error, "Connection ended with an error.");
                        }
                        break;
                    }
                    changed = stopping.changed(), if !told => {
                        told = true;
                        if changed.is_ok() {
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, permits.acquire_many(all))
        .await
        .is_err()
    {
        debug!("Stopped with requests still in flight.");
    }
    Ok(())
}

/// Tells a connection beyond the limit to come back later, and closes it.
async fn refuse(mut stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         retry-after: 5\r\nconnection: close\r\n\r\n{TOO_MANY}",
        TOO_MANY.len()
    );
    let written = stream.write_all(answer.as_bytes());
    let answered = tokio::time::timeout(Duration::from_secs(1), written).await;
    if matches!(answered, Ok(Ok(()))) {
        let _ = stream.shutdown().await;
    }
}

/// The client's address, where the server knows it (not in tests that call the router).
pub fn peer(request: &Request<Body>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}
