//! Moat's own pages where a user connects an account: the link a call
//! answers with when it needs a connection the caller has not set up
//! (URL-mode elicitation), the API-key form, the start of the provider's
//! sign-in (authorization code with PKCE, `state` sealed to the caller)
//! and its callback.
//!
//! Every page is reached through a sealed ticket ([`super::ticket`]) that
//! names the caller the credential will belong to and expires after ten
//! minutes; no page keeps state between requests, so replicas sharing
//! the key serve any step.

use super::store::{Credential, Owner, Store};
use super::ticket::{TICKET_LIFETIME_S, Ticket};
use super::{Connections, Kind, now, oauth};
use crate::auth::endpoint::Endpoint;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The path of the provider's redirect back to Moat.
const CALLBACK: &str = "/connect/callback";

/// Bytes an API key may have.
const MAX_KEY_BYTES: usize = 8 << 10;

/// The connect pages of one process.
pub struct Connect {
    store: Arc<Store>,
    connections: Connections,
    /// `[credentials] public_url`: where users' browsers reach Moat.
    public_url: Option<String>,
    /// Where links point: the public URL, or where the pages listen.
    base: OnceLock<String>,
}

impl Connect {
    /// The pages for `connections`, whose credentials go to `store`;
    /// `public_url` is where browsers reach Moat, if configured.
    pub fn new(
        store: Arc<Store>,
        connections: Connections,
        public_url: Option<String>,
    ) -> Arc<Connect> {
        Arc::new(Connect {
            store,
            connections,
            public_url,
            base: OnceLock::new(),
        })
    }

    /// Links point at `public_url`, or else at `listening` (`http://addr`),
    /// where Moat serves HTTP.
    pub fn listening_at(&self, listening: String) {
        let _ = self.base.set(self.public_url.clone().unwrap_or(listening));
    }

    /// Where the pages listen over stdio: on loopback, at `public_url`'s
    /// port when that is a loopback `http://` URL with one (the redirect
    /// URI registered with a provider), else at any free port.
    pub fn local_address(&self) -> std::net::SocketAddr {
        let port = self
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .filter(|u| u.scheme() == "http" && super::loopback(u.host_str()))
            .and_then(|u| u.port())
            .unwrap_or(0);
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Over stdio, links point at the local pages, at `address`.
    pub fn serving_locally(&self, address: std::net::SocketAddr) {
        let _ = self.base.set(format!("http://{address}"));
    }

    /// The link for `owner` to connect their `owner.connection`.
    pub fn link(&self, owner: &Owner) -> String {
        let ticket = self.store.tickets().seal(&Ticket {
            owner: owner.clone(),
            expires_at: now() + TICKET_LIFETIME_S,
            verifier: None,
        });
        format!("{}/connect/{ticket}", self.base())
    }

    fn base(&self) -> &str {
        self.base.get().map_or("", String::as_str)
    }

    /// The routes of the pages, and `DELETE /connections/{name}`, where a
    /// caller with a token for one of `endpoints` (tenant, token rules)
    /// revokes their own credential.
    pub fn routes(self: &Arc<Self>, endpoints: Vec<(Option<String>, Arc<Endpoint>)>) -> Router {
        let revoking = Arc::new(Revoking {
            connect: self.clone(),
            endpoints,
        });
        Router::new()
            .route(CALLBACK, get(callback))
            .route("/connect/{ticket}", get(start).post(submit))
            .with_state(self.clone())
            .merge(
                Router::new()
                    .route("/connections/{name}", axum::routing::delete(revoke))
                    .with_state(revoking),
            )
    }

    /// The ticket in `text`, and the connection it names; or the page
    /// that says why not.
    fn open(&self, text: &str) -> Result<(Ticket, &super::Connection), Box<Response>> {
        let ticket = self.store.tickets().open(text, now()).map_err(|e| {
            Box::new(page(
                StatusCode::BAD_REQUEST,
                "Not connected",
                &e.to_string(),
            ))
        })?;
        match self.connections.get(&ticket.owner.connection) {
            Some(connection) => Ok((ticket, connection)),
            None => Err(Box::new(page(
                StatusCode::NOT_FOUND,
                "Not connected",
                "this server no longer has that connection",
            ))),
        }
    }

    /// Stores `credential` as `owner`'s and says so.
    async fn keep(&self, owner: Owner, credential: Credential) -> Response {
        let store = self.store.clone();
        let who = whom(&owner);
        let connection = owner.connection.clone();
        let stored = tokio::task::spawn_blocking(move || store.put(&owner, &credential)).await;
        match stored {
            Ok(Ok(())) => {
                tracing::info!(connection, who, "a caller connected an account");
                page(
                    StatusCode::OK,
                    "Connected",
                    &format!(
                        "{connection} is connected for {who}. Go back to your client and call the tool again."
                    ),
                )
            }
            Ok(Err(e)) => {
                tracing::error!(connection, "cannot store a credential: {e}");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Not connected",
                    "the server cannot store the credential; tell its operator",
                )
            }
            Err(_) => page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not connected",
                "the server failed while storing the credential",
            ),
        }
    }
}

/// `GET /connect/{ticket}`: what is about to be connected, for whom, and
/// the button (or the key's field) that does it. Nothing happens on a
/// mere visit, so a link opened by a crawler or a preview connects
/// nothing.
async fn start(State(connect): State<Arc<Connect>>, Path(ticket): Path<String>) -> Response {
    let (opened, connection) = match connect.open(&ticket) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    let who = escape(&whom(&opened.owner));
    let name = escape(&connection.name);
    let body = match &connection.kind {
        Kind::OAuth2(oauth) => {
            let provider = url::Url::parse(&oauth.authorization_endpoint)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            format!(
                "<p>A tool asks to act as you on <b>{name}</b>, for <b>{who}</b>.</p>\
                 <p>You will sign in at <b>{}</b> and choose what to allow. The tool never sees \
                 the credential: this server adds it to the tool's requests.</p>\
                 <form method=\"post\"><button type=\"submit\">Continue to {}</button></form>",
                escape(&provider),
                escape(&provider)
            )
        }
        Kind::ApiKey => format!(
            "<p>A tool asks for your <b>{name}</b> API key, for <b>{who}</b>.</p>\
             <p>The tool never sees the key: this server keeps it, encrypted, and adds it to the \
             tool's requests to {name}.</p>\
             <form method=\"post\"><label>API key <input type=\"password\" name=\"key\" \
             autocomplete=\"off\" required></label> <button type=\"submit\">Save</button></form>"
        ),
    };
    html_page(
        StatusCode::OK,
        &format!("Connect {}", connection.name),
        &body,
    )
}

/// `POST /connect/{ticket}`: an API key is stored; for OAuth the browser
/// goes to the provider with a `state` that names the caller and carries
/// the PKCE verifier, sealed.
async fn submit(
    State(connect): State<Arc<Connect>>,
    Path(ticket): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (opened, connection) = match connect.open(&ticket) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    match &connection.kind {
        Kind::OAuth2(oauth) => {
            let (verifier, challenge) = oauth::pkce();
            let state = connect.store.tickets().seal(&Ticket {
                owner: opened.owner,
                expires_at: now() + TICKET_LIFETIME_S,
                verifier: Some(verifier),
            });
            let redirect_uri = format!("{}{CALLBACK}", connect.base());
            Redirect::to(&oauth::authorization_url(
                oauth,
                &redirect_uri,
                &state,
                &challenge,
            ))
            .into_response()
        }
        Kind::ApiKey => {
            let key = form.get("key").map_or("", |k| k.trim());
            if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
                return page(
                    StatusCode::BAD_REQUEST,
                    "Not connected",
                    "the key must be one line of at most 8 KiB",
                );
            }
            let credential = Credential {
                secret: key.to_string(),
                refresh_token: None,
                expires_at: None,
                stored_at: now(),
            };
            connect.keep(opened.owner, credential).await
        }
    }
}

/// `GET /connect/callback`: the provider sends the browser back with a
/// code (or an error) and the `state` Moat sealed; the code is exchanged
/// with the verifier only that state holds.
async fn callback(
    State(connect): State<Arc<Connect>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let state = query.get("state").map_or("", String::as_str);
    let (opened, connection) = match connect.open(state) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    let (Kind::OAuth2(oauth), Some(verifier)) = (&connection.kind, &opened.verifier) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "this link is not a sign-in's return",
        );
    };
    if let Some(error) = query.get("error") {
        let said = query
            .get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("{} did not connect ({error}{said})", connection.name),
        );
    }
    let Some(code) = query.get("code") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "the provider sent no code",
        );
    };
    let redirect_uri = format!("{}{CALLBACK}", connect.base());
    match oauth::exchange_code(oauth, code, &redirect_uri, verifier).await {
        Ok(credential) => connect.keep(opened.owner, credential).await,
        Err(why) => {
            tracing::warn!(
                connection = connection.name,
                "a sign-in's code exchange failed: {why}"
            );
            page(StatusCode::BAD_GATEWAY, "Not connected", &why)
        }
    }
}

/// What revoking needs: the store, and who may be a caller.
struct Revoking {
    connect: Arc<Connect>,
    endpoints: Vec<(Option<String>, Arc<Endpoint>)>,
}

/// `DELETE /connections/{name}` with the caller's bearer token (one any
/// endpoint here accepts): their credential for `name` is deleted, and
/// their next call that needs it asks them to connect again. 204 when
/// one was deleted, 404 when there was none, 401 for a token no endpoint
/// accepts.
async fn revoke(
    State(revoking): State<Arc<Revoking>>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    if !revoking.connect.connections.contains_key(&name) {
        return (StatusCode::NOT_FOUND, "no such connection\n").into_response();
    }
    for (tenant, endpoint) in &revoking.endpoints {
        let Ok(caller) = endpoint.authenticate(&uri, &headers).await else {
            continue;
        };
        if caller.subject.is_empty() {
            break;
        }
        let owner = Owner {
            tenant: tenant.clone(),
            issuer: caller.issuer,
            subject: caller.subject,
            connection: name,
        };
        let store = revoking.connect.store.clone();
        let who = whom(&owner);
        let connection = owner.connection.clone();
        return match tokio::task::spawn_blocking(move || store.remove(&owner)).await {
            Ok(Ok(true)) => {
                tracing::info!(connection, who, "a caller revoked a credential");
                StatusCode::NO_CONTENT.into_response()
            }
            Ok(Ok(false)) => (StatusCode::NOT_FOUND, "no credential to revoke\n").into_response(),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "cannot revoke now\n").into_response(),
        };
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token for one of this server's endpoints is needed\n",
    )
        .into_response()
}

/// "alice at acme", for pages and logs.
fn whom(owner: &Owner) -> String {
    match &owner.tenant {
        Some(tenant) => format!("{} at {tenant}", owner.subject),
        None => owner.subject.clone(),
    }
}

/// A page that says `text`.
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    html_page(status, title, &format!("<p>{}</p>", escape(text)))
}

/// A small page; `body` is HTML, escaped where it needs to be. Never
/// cached, never framed, and its URL (a ticket) never sent on as a
/// referrer.
fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family:sans-serif;max-width:36em;margin:3em auto\">\
         <h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
