//! Request guards, run on every request before its handler: the allowed host names, the
//! guessing throttle and read access.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::error::WebError;
use super::hosts::is_allowed;
use super::server;
use super::state::AppState;

/// Refuses a request whose `Host` is not an address, a loopback name or an allowed name.
/// Requests without a `Host` (HTTP/1.0 clients, tests calling the router) are not from a
/// browser and pass.
pub async fn require_allowed_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("\u{fffd}"));
    match host {
        Some(host) if !is_allowed(host, &state.web.allowed_hosts) => refuse(host),
        _ => next.run(request).await,
    }
}

fn refuse(host: &str) -> Response {
    let shown: String = host.chars().take(100).collect();
    (
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "This dashboard does not answer to the host name {shown:?}. If that is how you \
             reach it, add the name to web.allowed_hosts in the pipeline file (or pass \
             --allowed-host).\n"
        ),
    )
        .into_response()
}

/// Refuses a client that presented too many wrong tokens lately (429, with `Retry-After`),
/// and counts each request with a token (a bearer token, or the login form's) that is
/// refused. Requests with neither are never held back: they guess nothing.
pub async fn throttle_guesses(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presents_token = request.headers().contains_key(header::AUTHORIZATION)
        || (request.method() == Method::POST && request.uri().path() == "/login");
    if !presents_token || !state.auth.token_required() {
        return next.run(request).await;
    }
    let client = server::peer(&request).map(|peer| peer.ip());
    if let Some(wait) = state.auth.locked_out(client) {
        let seconds = wait.as_secs().max(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds.to_string())],
            format!("too many wrong tokens from this address: try again in {seconds} s\n"),
        )
            .into_response();
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        state.auth.failed(client);
    }
    response
}

/// Paths open even when reads are protected: the login itself, liveness, and the assets the
/// login page uses.
fn always_open(path: &str) -> bool {
    path == "/login" || path == "/logout" || path == "/healthz" || path.starts_with("/static/")
}

/// With `auth.read = true`, every other route needs the token or a session: pages redirect to
/// the login form, the API, `/metrics` and `/ws` answer 401.
pub async fn require_read_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !state.auth.protects_reads()
        || always_open(path)
        || state.auth.principal(request.headers()).is_ok()
    {
        return next.run(request).await;
    }
    let is_page = !(path.starts_with("/api/") || path == "/ws" || path == "/metrics");
    if is_page {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        Redirect::to(&format!("/login?next={}", urlencode(&target))).into_response()
    } else {
        WebError::Unauthorized.into_response()
    }
}

/// Percent-encodes a path for a query parameter.
fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
