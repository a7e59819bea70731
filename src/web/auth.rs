//! Who may do what. One shared token guards the dashboard: API clients send it as
//! `Authorization: Bearer <token>`; people type it once into the login form, which exchanges it
//! for a random session id in an `HttpOnly; SameSite=Strict` cookie (the token itself never
//! sits in the browser). Acknowledging always needs one of the two when a token is set; reading
//! needs it too with `auth.read = true`. Without a token everything is open, which is why the
//! server refuses a non-loopback address without one unless told `--insecure`.
//!
//! Guessing is slow: a client that presents a wrong token [`MAX_FAILURES`] times within
//! [`FAILURE_WINDOW`] is refused (429) until the window has passed, and every wrong guess at
//! the login form waits a second for its answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};

use super::error::WebError;

/// The cookie that carries a session id.
pub const SESSION_COOKIE: &str = "tidewatch_session";
/// A session lasts this long after login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest go first (a flood of logins cannot grow memory).
const MAX_SESSIONS: usize = 10_000;
/// Wrong tokens a client may present within [`FAILURE_WINDOW`] before it is refused.
pub const MAX_FAILURES: u32 = 10;
/// How long a client's wrong tokens count against it.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Clients whose failures are remembered at most (a flood from many addresses cannot grow
/// memory: the oldest go first).
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The dashboard's access rules and its live sessions.
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<Token>,
    protect_reads: bool,
    secure_cookies: bool,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    /// Wrong tokens by client address (`None`: a request that came without one).
    failures: Arc<Mutex<HashMap<Option<IpAddr>, Failures>>>,
}

/// The token, kept as a keyed digest: a presented token is digested with the same key and the
/// two 16-byte digests compared, so the time taken does not depend on how much of the token,
/// or of its length, a guess got right.
#[derive(Clone)]
struct Token {
    key: u64,
    digest: u128,
}

impl Token {
    fn new(token: &str) -> Token {
        let mut key = [0u8; 8];
        // Without randomness the key is fixed: the comparison is still of two digests.
        let _ = getrandom::fill(&mut key);
        let key = u64::from_le_bytes(key);
        Token {
            key,
            digest: twox_hash::XxHash3_128::oneshot_with_seed(key, token.as_bytes()),
        }
    }

    fn matches(&self, presented: &str) -> bool {
        let digest = twox_hash::XxHash3_128::oneshot_with_seed(self.key, presented.as_bytes());
        (digest ^ self.digest) == 0
    }
}

/// A client's recent wrong tokens.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// When the first of them was presented.
    since: Instant,
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
            token: token.filter(|t| !t.is_empty()).map(Token::new),
            protect_reads,
            ..Auth::default()
        }
    }

    /// Session cookies get the `Secure` attribute (a TLS proxy serves the dashboard).
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
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
        if let Some(token) = bearer_token(headers) {
            return if expected.matches(token) {
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
        if !expected.matches(token) {
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

    /// `Set-Cookie` for a new session (or, with `None`, one that clears it).
    pub fn session_cookie(&self, id: Option<&str>) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let value = match id {
            Some(id) => format!(
                "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                SESSION_TTL.as_secs()
            ),
            None => {
                format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
            }
        };
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// How long `client` must wait before presenting a token again, if it presented too
    /// many wrong ones lately.
    pub(super) fn locked_out(&self, client: Option<IpAddr>) -> Option<Duration> {
        let failures = self.failures_lock();
        let f = failures.get(&client)?;
        let left = FAILURE_WINDOW.checked_sub(f.since.elapsed())?;
        (f.count >= MAX_FAILURES).then_some(left)
    }

    /// Counts a wrong token presented by `client`.
    pub(super) fn failed(&self, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures_lock();
        if failures.len() >= MAX_TRACKED_CLIENTS && !failures.contains_key(&client) {
            failures.retain(|_, f| now.duration_since(f.since) < FAILURE_WINDOW);
            if failures.len() >= MAX_TRACKED_CLIENTS {
                if let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| *k)
                {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(client).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(entry.since) >= FAILURE_WINDOW {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count += 1;
    }

    fn failures_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<IpAddr>, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, as HTTP
/// has it).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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
