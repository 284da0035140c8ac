//! The web console: server-rendered pages for requesters, approvers and
//! admins, served by the broker at `/console/`. Handlers are thin: they
//! gather data through the same [`Broker`](crate::service::Broker) calls as
//! the REST API, shape it into plain view structs, and render a template
//! compiled into the broker (askama, HTML-escaped). Every action is a plain
//! form POST; a small first-party script adds live updates, countdowns and
//! confirmations.
//!
//! One home each for the cross-cutting pieces:
//! - [`text`]: every string, in English and Japanese.
//! - [`viewer`]: who is looking (the session cookie), and the pages that
//!   sign people in and out.
//! - [`csrf`]: forms bound to the session.
//! - [`security`]: the headers every console response carries.
//! - [`page`]: the frame of every page, rendering and error pages.
//! - [`assets`]: the stylesheet and script.
//! - [`events`]: live updates over Server-Sent Events.
//!
//! The page families: [`requester`] (my access, catalogue, request form
//! and page), [`approver`] (inbox, decisions), [`admin`] (agents and join
//! tokens, configurations, users), [`auditor`] (the audit log), [`view`]
//! (pure shaping of records into what pages show).

pub mod admin;
pub mod approver;
pub mod assets;
pub mod auditor;
pub mod csrf;
pub mod events;
pub mod page;
pub mod requester;
pub mod security;
pub mod text;
pub mod view;
pub mod viewer;

use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;

/// The console's routes, under `/console`, and `/` leading to it.
pub fn router(state: AppState) -> Router<AppState> {
    let console = Router::new()
        .route("/console/", get(requester::home))
        .route("/console", get(page::to_console))
        .route("/console/sign-in", get(viewer::sign_in_page))
        .route(
            "/console/link/{secret}",
            get(viewer::link_page).post(viewer::use_link),
        )
        .route("/console/sign-out", post(viewer::sign_out))
        .route(
            "/console/language",
            get(viewer::choose_language).post(viewer::save_language),
        )
        .route("/console/catalogue", get(requester::catalogue))
        .route("/console/requests/new", get(requester::new_request))
        .route("/console/requests", post(requester::create_request))
        .route("/console/requests/{id}", get(requester::request_page))
        .route("/console/requests/{id}/cancel", post(requester::cancel_request))
        .route("/console/grants/{id}/end", post(requester::end_grant))
        .route("/console/grants/{id}/extend", post(requester::extend_grant))
        .route("/console/inbox", get(approver::inbox))
        .route("/console/requests/{id}/review", post(approver::review))
        .route("/console/admin/agents", get(admin::agents))
        .route("/console/admin/agents/{id}", post(admin::act_on_agent))
        .route("/console/admin/join-tokens", post(admin::create_join_token))
        .route(
            "/console/admin/revokes/{command}/force-close",
            post(admin::force_close),
        )
        .route("/console/admin/users", get(admin::users).post(admin::act_on_user))
        .route("/console/admin/configurations", get(admin::configurations))
        .route("/console/audit", get(auditor::audit))
        .route("/console/audit/export", get(auditor::export))
        .route("/console/audit/check", post(auditor::check_now))
        .route("/console/events", get(events::stream))
        .route("/console/static/{file}", get(assets::serve))
        .route("/console/{*rest}", get(page::not_found))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(state);
    Router::new().route("/", get(page::to_console)).merge(console)
}
