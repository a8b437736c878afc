//! The console's Deliveries page (`/deliveries`): dead letters with a Retry button
//! (CSRF-protected form) and messages posted per channel today against the daily cap.

use std::sync::OnceLock;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, context};
use serde::Deserialize;
use switchboard_core::Actor;

use crate::AppState;
use crate::api_deliveries::{daily_views, dead_letter_views, retry_dead_letter};
use crate::session::{COOKIE, Session};

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, src) in [
            ("layout.html", include_str!("../templates/layout.html")),
            (
                "deliveries.html",
                include_str!("../templates/deliveries.html"),
            ),
        ] {
            // Part of the binary; a syntax error is a build defect caught by the tests.
            env.add_template(name, src)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, id)| state.sessions.get(id))
}

fn render(status: StatusCode, ctx: minijinja::Value) -> Response {
    match templates()
        .get_template("deliveries.html")
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the deliveries page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// What the page was sent back with after a retry.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// The dead letter just queued again.
    retried: Option<i64>,
}

async fn page_with(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let org = &session.principal.org;
    let loaded = async {
        Ok::<_, crate::error::AppError>((
            dead_letter_views(state.store.as_ref(), org, None, 200).await?,
            daily_views(state.store.as_ref(), org).await?,
        ))
    }
    .await;
    match loaded {
        Ok((dead_letters, daily)) => render(
            status,
            context! {
                title => "Deliveries", section => "deliveries", signed_in => true,
                csrf => session.csrf.clone(), dead_letters, daily, notice, error,
            },
        ),
        Err(e) => {
            tracing::error!(error = ?e, "loading deliveries failed");
            render(
                StatusCode::SERVICE_UNAVAILABLE,
                context! {
                    title => "Deliveries", section => "deliveries", signed_in => true,
                    csrf => session.csrf.clone(),
                    error => "The database could not be reached. Try again in a moment.",
                },
            )
        }
    }
}

/// `GET /deliveries`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(session) = session_of(&state, &headers) else {
        return Redirect::to("/signin").into_response();
    };
    let notice = q
        .retried
        .map(|id| format!("Delivery {id} was queued again."));
    page_with(&state, &session, StatusCode::OK, notice, None).await
}

/// The Retry form.
#[derive(Debug, Deserialize)]
pub struct RetryForm {
    csrf: String,
}

/// `POST /deliveries/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RetryForm>,
) -> Response {
    let Some(session) = session_of(&state, &headers) else {
        return Redirect::to("/signin").into_response();
    };
    if !session.csrf_ok(&form.csrf) {
        return page_with(
            &state,
            &session,
            StatusCode::FORBIDDEN,
            None,
            Some("This form is out of date. Reload the page and try again.".into()),
        )
        .await;
    }
    let Ok(id) = id.parse::<i64>() else {
        return page_with(
            &state,
            &session,
            StatusCode::NOT_FOUND,
            None,
            Some("There is no such dead letter.".into()),
        )
        .await;
    };
    let actor = Actor::Admin {
        name: session.principal.name.clone(),
    };
    match retry_dead_letter(state.store.as_ref(), &session.principal.org, id, actor).await {
        Ok(()) => Redirect::to(&format!("/deliveries?retried={id}")).into_response(),
        Err(e) if e.status() == StatusCode::NOT_FOUND => {
            page_with(
                &state,
                &session,
                StatusCode::NOT_FOUND,
                None,
                Some(format!(
                    "Dead letter {id} does not exist (it may have been retried already)."
                )),
            )
            .await
        }
        Err(e) => {
            tracing::error!(error = ?e, "retrying a dead letter failed");
            page_with(
                &state,
                &session,
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                Some("The database could not be reached. Try again in a moment.".into()),
            )
            .await
        }
    }
}
