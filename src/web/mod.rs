//! The web server: server-rendered pages and a JSON API over the live state and the store.
//!
//! Routes are listed in [`router`]; handlers live beside their resource (`pages/`, `api.rs`,
//! `metrics.rs`, `ws.rs`), request guards in `guard.rs`.
//! The only write is an alert acknowledgement: stored first, then broadcast.

mod api;
pub mod auth;
pub(crate) mod config;
mod error;
mod guard;
mod hosts;
mod interest;
mod listing;
mod metrics;
mod pages;
mod queries;
mod server;
mod state;
mod ws;

pub use self::ws::{PROTOCOL_VERSION, SEND_TIMEOUT};

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use self::api::NOTE_LIMIT;

/// How pages write values as text: what `static/js/format.js` must agree with.
pub mod text {
    pub use super::pages::format::{
        band_text, byte_size, millis, number, score_text, seconds, why_text,
    };
    pub use crate::clock::format_ms;
}
pub use self::config::WebConfig;
pub use self::error::WebError;
pub use self::state::AppState;

use crate::types::Invalid;

/// Largest request body accepted (an acknowledgement with its note).
pub const BODY_LIMIT: usize = 16 * 1024;

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
            guard::require_read_access,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::throttle_guesses,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::require_allowed_host,
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
