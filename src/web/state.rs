//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;

use super::auth;
use super::config::WebConfig;
use super::ws::{Fanout, WsState};
use crate::db::Store;
use crate::live::LiveState;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub live: Arc<LiveState>,
    /// Where acknowledgements are stored; without it they are refused.
    pub store: Option<Store>,
    /// Who may acknowledge and read (see [`auth`]).
    pub auth: auth::Auth,
    /// How the dashboard is served: its host names and connection limits.
    pub(super) web: Arc<WebConfig>,
    /// The WebSocket feed shared by every dashboard client.
    pub(super) fanout: Arc<Fanout>,
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

impl FromRef<AppState> for WsState {
    fn from_ref(state: &AppState) -> WsState {
        WsState {
            live: state.live.clone(),
            fanout: state.fanout.clone(),
        }
    }
}
