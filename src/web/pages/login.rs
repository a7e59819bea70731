//! `/login` and `/logout`: the token form and the session cookie.

use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;

use super::viewer::Viewer;
use crate::web::auth::safe_next;
use crate::web::error::{PageError, WebError};
use crate::web::hosts::check_same_origin;
use crate::web::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub next: String,
    pub error: String,
    pub open_alerts: usize,
    pub viewer: Viewer,
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: the form that exchanges the token for a session cookie.
pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let next = safe_next(query.next.as_deref());
    if !state.auth.token_required() {
        return Ok(Redirect::to(&next).into_response());
    }
    let page = LoginPage {
        next,
        error: String::new(),
        open_alerts: 0,
        viewer: Viewer::of(&state, &headers),
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    name: String,
    next: Option<String>,
}

/// How long a wrong token typed into the login form waits for its answer.
const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);

/// Longest user name an acknowledgement records.
const NAME_LIMIT: usize = 100;

/// `POST /login`: checks the token, opens a session, and goes back where the user was.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    check_same_origin(&headers)?;
    let next = safe_next(form.next.as_deref());
    let name: String = match form.name.trim() {
        "" => "dashboard user".to_owned(),
        name => name.chars().take(NAME_LIMIT).collect(),
    };
    match state.auth.login(&form.token, &name) {
        Ok(session) => Ok((
            [(
                header::SET_COOKIE,
                state.auth.session_cookie(Some(&session)),
            )],
            Redirect::to(&next),
        )
            .into_response()),
        Err(WebError::Unauthorized) => {
            // Every wrong guess costs a second: guessing a token through the form is slow.
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            let page = LoginPage {
                next,
                error: "That token is not the one this dashboard was started with.".into(),
                open_alerts: 0,
                viewer: Viewer::of(&state, &headers),
            };
            Ok((StatusCode::UNAUTHORIZED, Html(page.render()?)).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    check_same_origin(&headers)?;
    state.auth.logout(&headers);
    Ok((
        [(header::SET_COOKIE, state.auth.session_cookie(None))],
        Redirect::to("/"),
    )
        .into_response())
}
