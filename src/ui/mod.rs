//! The status page of SPEC section 5: `GET /ui/` (the fleet) and
//! `GET /ui/accounts/NAME` (one account's month), server-rendered HTML with
//! maud templates compiled in, inline CSS, no script and nothing loaded from
//! elsewhere.
//!
//! [`router`] serves the pages from a [`UiState`]; who may read them is the
//! HTTP surface's business ([`crate::http`] wraps this router in its token
//! check), so this module neither knows nor checks tokens. A page reads the
//! ledger for what it shows: the fleet's figures and flagged accounts in one
//! [`crate::store::Store::fleet`] call, then the hundred accounts of the page
//! (or the one account) row by row. Every value from outside (names, appids,
//! `errmsg`, source errors) goes through maud, which escapes it.
//!
//! - `layout.rs`: the page around the content, its style and time formats.
//! - `overview.rs`: the fleet: summary, health, accounts.
//! - `account.rs`: one account: its month as a [`crate::timeline`], its
//!   attempts and refusals, the months before.

mod account;
mod layout;
mod overview;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use tokio::sync::watch;

use crate::dispatcher::Runtime;
use crate::read_model::StateFilter;
use crate::sets::refresh::Sets;
use crate::sources::SourceHealth;

/// Accounts on one page of the overview.
pub const PAGE_SIZE: usize = 100;

/// What the pages read: the running config and ledger, and the sources' and
/// account sets' health that `/readyz` shows too.
#[derive(Clone)]
pub struct UiState {
    pub runtime: watch::Receiver<Runtime>,
    pub health: SourceHealth,
    pub sets: Sets,
}

pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview_page))
        .route("/ui/accounts/{name}", get(account_page))
        .layer(axum::middleware::map_response(no_store))
        .with_state(state)
}

/// A page shows the ledger behind a token: no cache along the way keeps it.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Why a page could not be shown, as a small page of its own.
#[derive(Debug)]
enum PageError {
    NotFound(String),
    /// The ledger could not be read.
    Unavailable(String),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Self::NotFound(t) => (StatusCode::NOT_FOUND, t),
            Self::Unavailable(t) => {
                // A server-side failure: logged once, here.
                tracing::error!(error = %t, "Status page failed");
                (StatusCode::SERVICE_UNAVAILABLE, t)
            }
        };
        let body = layout::page("quotawatch", maud::html! { p.error { (text) } });
        (status, body).into_response()
    }
}

/// Runs a ledger read off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, PageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PageError::Unavailable(e.to_string()))?
        .map_err(|e| {
            let why = crate::error_chain::display(e.as_ref());
            PageError::Unavailable(format!("cannot read the ledger: {why}"))
        })
}

/// `?state=`, `?q=`, `?page=` of the overview.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
struct OverviewQuery {
    state: StateFilter,
    q: Option<String>,
    page: Option<usize>,
}

async fn overview_page(
    State(state): State<UiState>,
    Query(query): Query<OverviewQuery>,
) -> Result<Markup, PageError> {
    let rt = state.runtime.borrow().clone();
    let health = state.health.snapshot();
    let sets = state.sets.health();
    blocking(move || overview::render(&rt, &health, &sets, &query)).await
}

async fn account_page(
    State(state): State<UiState>,
    Path(name): Path<String>,
) -> Result<Markup, PageError> {
    let rt = state.runtime.borrow().clone();
    let Some(account) = rt.config.account(&name).cloned() else {
        return Err(PageError::NotFound(format!("No account named {name}.")));
    };
    blocking(move || account::render(&rt, &account)).await
}

#[cfg(test)]
mod tests;
