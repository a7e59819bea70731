//! The stylesheet, the script modules and the vendored uPlot, embedded in the binary.

use axum::http::header;
use axum::response::IntoResponse;

use crate::web::error::WebError;

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/css; charset=utf-8"
                    .parse()
                    .unwrap_or(header::HeaderValue::from_static("text/css")),
            ),
            asset_cache(),
        ],
        include_str!("../../../static/app.css"),
    )
}

/// The dashboard's script modules (`static/js/`), embedded in the binary.
const SCRIPTS: [(&str, &str); 9] = [
    ("main.js", include_str!("../../../static/js/main.js")),
    ("alerts.js", include_str!("../../../static/js/alerts.js")),
    ("chrome.js", include_str!("../../../static/js/chrome.js")),
    ("format.js", include_str!("../../../static/js/format.js")),
    ("live.js", include_str!("../../../static/js/live.js")),
    (
        "overview.js",
        include_str!("../../../static/js/overview.js"),
    ),
    ("series.js", include_str!("../../../static/js/series.js")),
    ("spark.js", include_str!("../../../static/js/spark.js")),
    ("streams.js", include_str!("../../../static/js/streams.js")),
];

/// `GET /static/js/{file}`: one of the dashboard's script modules.
pub async fn script(
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Result<impl IntoResponse, WebError> {
    let (_, body) = SCRIPTS
        .iter()
        .find(|(name, _)| *name == file)
        .ok_or_else(|| WebError::NotFound(format!("script {file:?}")))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            asset_cache(),
        ],
        *body,
    ))
}

pub async fn uplot_script() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            asset_cache(),
        ],
        include_str!("../../../static/vendor/uplot/uPlot.iife.min.js"),
    )
}

pub async fn uplot_style() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            asset_cache(),
        ],
        include_str!("../../../static/vendor/uplot/uPlot.min.css"),
    )
}

/// `Cache-Control` for assets embedded in the binary: they change only with it.
fn asset_cache() -> (header::HeaderName, header::HeaderValue) {
    (
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=3600"),
    )
}
