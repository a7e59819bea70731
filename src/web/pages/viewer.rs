//! Who is looking at a page, and what they may do there.

use axum::http::HeaderMap;

use crate::web::state::AppState;

/// What the page header shows of the person looking, and what they may do.
#[derive(Clone)]
pub struct Viewer {
    /// A token is set: show the login or logout link.
    pub login_enabled: bool,
    /// The logged-in user's name; empty when not logged in.
    pub user: String,
    /// May acknowledge: no token is set, or logged in.
    pub can_write: bool,
}

impl Viewer {
    pub(super) fn of(state: &AppState, headers: &HeaderMap) -> Viewer {
        let user = state.auth.signed_in_user(headers);
        Viewer {
            login_enabled: state.auth.token_required(),
            can_write: !state.auth.token_required() || user.is_some(),
            user: user.unwrap_or_default(),
        }
    }
}
