//! The web server: server-rendered pages and a JSON API over the live state and the store.
//!
//! Routes are listed in [`router`]; handlers live beside their resource (`pages.rs`, `api.rs`, `metrics.rs`, `ws.rs`).
//! The only write is an alert acknowledgement: stored first, then broadcast.

mod api;
pub mod auth;
mod error;
mod hosts;
mod interest;
mod listing;
mod metrics;
mod pages;
mod server;
mod ws;

pub use ws::{PROTOCOL_VERSION, SEND_TIMEOUT};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::WebError;

use crate::db::Store;
use crate::live::LiveState;
use crate::types::{Duration as ConfigDuration, Invalid};

/// Largest request body accepted (an acknowledgement with its note).
pub const BODY_LIMIT: usize = 16 * 1024;
/// Longest acknowledgement note, in characters.
pub const NOTE_LIMIT: usize = 2000;

/// How the dashboard is served: the pipeline file's `[web]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Host names the dashboard answers to besides `localhost` and IP addresses, as browsers
    /// send them in `Host` (e.g. `["dash.example.com"]`; `.example.com` takes its subdomains
    /// too). Any other name is refused, so that a web page cannot reach the dashboard by
    /// pointing a name of its own at this address (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Marks the session cookie `Secure`, so browsers send it over HTTPS only: set it when a
    /// TLS proxy serves the dashboard.
    pub secure_cookies: bool,
    /// Most connections open at once; one more is answered 503 and closed. Default 512.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (or, between two requests, to
    /// start the next) before the connection is closed; default "10s".
    pub header_timeout: ConfigDuration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            allowed_hosts: Vec::new(),
            secure_cookies: false,
            max_connections: 512,
            header_timeout: ConfigDuration::from_secs(10),
        }
    }
}

impl WebConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            hosts::validate_pattern(host).map_err(|e| e.under(format!("allowed_hosts[{i}]")))?;
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return Err(Invalid::new(
                "max_connections",
                "must be between 1 and 65536",
            ));
        }
        self.header_timeout.positive("header_timeout")?;
        Ok(())
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub live: Arc<LiveState>,
    /// Where acknowledgements are stored; without it they are refused.
    pub store: Option<Store>,
    /// Who may acknowledge and read (see [`auth`]).
    pub auth: auth::Auth,
    /// How the dashboard is served: its host names and connection limits.
    web: Arc<WebConfig>,
    /// The WebSocket feed shared by every dashboard client.
    fanout: Arc<ws::Fanout>,
}

impl AppState {
    pub fn new(live: Arc<LiveState>, store: Option<Store>, auth: auth::Auth) -> Self {
        AppState {
            live,
            store,
            auth,
            web: Arc::default(),
            fanout: Arc::default(),
        }
    }

    /// Serves as `web` says (instead of [`WebConfig::default`]).
    pub fn with_web(mut self, web: WebConfig) -> Self {
        self.web = Arc::new(web);
        self
    }
}

/// All routes, in one place.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/alerts", get(pages::alerts))
        .route("/series/{stream}/{series}", get(pages::series))
        .route("/status", get(pages::status))
        .route("/static/vendor/uplot.js", get(pages::uplot_script))
        .route("/static/vendor/uplot.css", get(pages::uplot_style))
        .route("/static/app.css", get(pages::stylesheet))
        .route("/static/js/{file}", get(pages::script))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/series", get(api::series_list))
        .route("/api/series/{stream}/{series}", get(api::series_one))
        .route("/api/alerts", get(api::alerts))
        .route("/api/status", get(api::status))
        .route("/api/alerts/{id}/ack", post(api::acknowledge))
        .route(
            "/api/alerts/{id}/notifications",
            get(api::alert_notifications),
        )
        .route(
            "/api/alerts/{id}/acknowledgements",
            get(api::alert_acknowledgements),
        )
        .route("/api/alerts/ack", post(api::acknowledge_many))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/ws", get(ws::upgrade))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_read_access,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::throttle_guesses,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hosts::require_allowed_host,
        ))
        // No other site may frame the pages (their buttons acknowledge alerts), and no
        // browser may guess a type other than the one sent.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(15),
        ))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Checks a host name given on the command line as `web.allowed_hosts` checks its entries.
pub fn check_allowed_host(host: &str) -> Result<(), Invalid> {
    hosts::validate_pattern(host)
}

/// Why the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "refusing to listen on {0}, which is not a loopback address, without an auth token: \
         set TIDEWATCH_AUTH_TOKEN (acknowledging alerts then needs it), or pass --insecure to \
         expose the dashboard without one"
    )]
    NeedsToken(SocketAddr),
}

/// Anyone who can reach a non-loopback address could acknowledge alerts: require a token there
/// unless the user says `--insecure`.
pub fn check_listen(addr: SocketAddr, has_token: bool, insecure: bool) -> Result<(), ListenError> {
    if addr.ip().is_loopback() || has_token || insecure {
        Ok(())
    } else {
        Err(ListenError::NeedsToken(addr))
    }
}

/// Serves on `listener` until `shutdown` completes, within the limits of the state's
/// [`WebConfig`] (see [`server::serve`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let web = state.web.clone();
    server::serve(listener, router(state), &web, shutdown).await
}

/// Refuses a browser request whose `Origin` is not this server: cross-site acknowledgements
/// and cross-site WebSocket connections (which browsers do not restrict by themselves).
pub(crate) fn check_same_origin(headers: &HeaderMap) -> Result<(), WebError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(()); // not a browser, or a same-origin GET-style request
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if origin_host == host {
        Ok(())
    } else {
        Err(WebError::CrossOrigin)
    }
}

/// `Cache-Control` for assets embedded in the binary: they change only with it.
fn asset_cache() -> (header::HeaderName, HeaderValue) {
    (
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token_or_insecure() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(check_listen(local, false, false).is_ok());
        let refused = check_listen(public, false, false).unwrap_err().to_string();
        assert!(refused.contains("--insecure") && refused.contains("TIDEWATCH_AUTH_TOKEN"));
        assert!(check_listen(public, true, false).is_ok());
        assert!(check_listen(public, false, true).is_ok());
    }
}
