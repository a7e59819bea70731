//! Who may do what. One shared token guards the dashboard: API clients send it as
//! `Authorization: Bearer <token>`; people type it once into the login form, which exchanges it
//! for a random session id in an `HttpOnly; SameSite=Strict` cookie (the token itself never
//! sits in the browser). Acknowledging always needs one of the two when a token is set; reading
//! needs it too with `auth.read = true`. Without a token everything is open, which is why the
//! server refuses a non-loopback address without one unless told `--insecure`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{AppState, WebError};

/// The cookie that carries a session id.
pub const SESSION_COOKIE: &str = "tidewatch_session";
/// A session lasts this long after login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest go first (a flood of logins cannot grow memory).
const MAX_SESSIONS: usize = 10_000;

/// The dashboard's access rules and its live sessions.
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<Arc<str>>,
    protect_reads: bool,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

struct Session {
    user: String,
    expires: Instant,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No token is configured: anyone (who can reach the address).
    Anyone,
    /// Presented the token as a bearer token.
    ApiClient,
    /// Logged in through the form, under this name.
    User(String),
}

impl Principal {
    /// The name an acknowledgement is recorded under when the request does not give one.
    pub fn default_name(&self) -> &str {
        match self {
            Principal::Anyone => "anonymous",
            Principal::ApiClient => "api",
            Principal::User(name) => name,
        }
    }
}

impl Auth {
    /// `token`: what acknowledging (and with `protect_reads`, reading) needs; empty is none.
    pub fn new(token: Option<&str>, protect_reads: bool) -> Self {
        Auth {
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
            protect_reads,
            sessions: Arc::default(),
        }
    }

    /// Everything open: no token.
    pub fn open() -> Self {
        Auth::default()
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    pub fn protects_reads(&self) -> bool {
        self.protect_reads && self.token.is_some()
    }

    /// Who is asking; `Unauthorized` when a token is set and neither it nor a live session
    /// comes with the request.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, WebError> {
        let Some(expected) = &self.token else {
            return Ok(Principal::Anyone);
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer {
            return if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
                Ok(Principal::ApiClient)
            } else {
                Err(WebError::Unauthorized)
            };
        }
        session_id(headers)
            .and_then(|id| self.user_of(id))
            .map(Principal::User)
            .ok_or(WebError::Unauthorized)
    }

    /// The logged-in user's name, for the page header.
    pub fn signed_in_user(&self, headers: &HeaderMap) -> Option<String> {
        session_id(headers).and_then(|id| self.user_of(id))
    }

    fn user_of(&self, id: &str) -> Option<String> {
        let sessions = self.lock();
        sessions
            .get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.user.clone())
    }

    /// Checks the token typed into the login form; on success opens a session for `user` and
    /// returns its id.
    pub fn login(&self, token: &str, user: &str) -> Result<String, WebError> {
        let Some(expected) = &self.token else {
            return Err(WebError::BadRequest(
                "no login needed: no token is set".into(),
            ));
        };
        if !constant_time_eq(token.as_bytes(), expected.as_bytes()) {
            return Err(WebError::Unauthorized);
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| WebError::Internal(format!("no randomness for a session id: {e}")))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                user: user.to_owned(),
                expires: now + SESSION_TTL,
            },
        );
        Ok(id)
    }

    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            self.lock().remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The session id of the request's cookie, if any.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session (or, with `None`, one that clears it).
pub fn session_cookie(id: Option<&str>) -> HeaderValue {
    let value = match id {
        Some(id) => format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_TTL.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Compares without an early exit, so response timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// Where to go after login: only a local path, never another site (`//evil.example`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_session_from_the_right_token_identifies_its_user() {
        let auth = Auth::new(Some("s3cret"), false);
        assert!(matches!(
            auth.login("wrong", "ana"),
            Err(WebError::Unauthorized)
        ));
        let id = auth.login("s3cret", "ana").unwrap();
        assert_eq!(id.len(), 64);
        let headers = with_cookie(&format!("theme=dark; {SESSION_COOKIE}={id}"));
        assert_eq!(
            auth.principal(&headers).unwrap(),
            Principal::User("ana".into())
        );
        let forged = with_cookie(&format!("{SESSION_COOKIE}={}", "0".repeat(64)));
        assert!(auth.principal(&forged).is_err());
        auth.logout(&headers);
        assert!(auth.principal(&headers).is_err(), "logged out");
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/alerts?state=open")), "/alerts?state=open");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
