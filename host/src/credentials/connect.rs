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
use super::ticket::{Step, TICKET_LIFETIME_S, Ticket};
use super::{Connections, Kind, now, oauth};
use crate::auth::endpoint::Endpoint;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The path of a provider's redirect back to Moat, per connection (so a
/// provider's code can only come back for its own connection: no mix-up
/// between providers).
const CALLBACK: &str = "/connect/callback";

/// The cookie that ties a sign-in to the browser that started it.
const BROWSER_COOKIE: &str = "moat-connect";

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

    /// Links point at `public_url`, or else at `address`, where Moat
    /// serves HTTP; that needs `public_url` unless it is on loopback (an
    /// internal address is no link for a user's browser, and a key or a
    /// code would cross the network in the clear).
    pub fn listening_at(&self, address: std::net::SocketAddr) -> anyhow::Result<()> {
        let base = match &self.public_url {
            Some(url) => url.clone(),
            None if address.ip().is_loopback() => format!("http://{address}"),
            None => anyhow::bail!(
                "[credentials] public_url is needed when listening on {address}: the address users' \
                 browsers reach Moat at (its connect pages), such as \"https://tools.example.com\""
            ),
        };
        let _ = self.base.set(base);
        Ok(())
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
            step: Step::Link,
        });
        format!("{}/connect/{ticket}", self.base())
    }

    /// Where `connection`'s provider sends the browser back.
    fn redirect_uri(&self, connection: &str) -> String {
        format!("{}{CALLBACK}/{connection}", self.base())
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
            .route(&format!("{CALLBACK}/{{connection}}"), get(callback))
            .route("/connect/{ticket}", get(start).post(submit))
            .with_state(self.clone())
            .merge(
                Router::new()
                    .route("/connections/{name}", axum::routing::delete(revoke))
                    .with_state(revoking),
            )
    }

    /// The ticket in `text` for the step `link` says, and the connection
    /// it names; or the page that says why not.
    fn open(&self, text: &str, link: bool) -> Result<(Ticket, &super::Connection), Box<Response>> {
        let ticket = self.store.tickets().open(text, now(), link).map_err(|e| {
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
    let (opened, connection) = match connect.open(&ticket, true) {
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
/// goes to the provider with a `state` that names the caller, carries the
/// PKCE verifier and is tied to this browser by a cookie, sealed. A post
/// from another site's page is refused: it would start a sign-in in the
/// visitor's browser for whoever made the page.
async fn submit(
    State(connect): State<Arc<Connect>>,
    Path(ticket): Path<String>,
    headers: axum::http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if cross_site(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            "Not connected",
            "this form can only be sent from its own page",
        );
    }
    let (opened, connection) = match connect.open(&ticket, true) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    match &connection.kind {
        Kind::OAuth2(oauth) => {
            let (verifier, challenge) = oauth::pkce();
            let (nonce, _) = oauth::pkce();
            let state = connect.store.tickets().seal(&Ticket {
                owner: opened.owner,
                // Never past the link's own end: a sign-in does not renew it.
                expires_at: opened.expires_at.min(now() + TICKET_LIFETIME_S),
                step: Step::SignIn {
                    verifier,
                    browser: hex::encode(Sha256::digest(nonce.as_bytes())),
                },
            });
            let secure = match connect.base().starts_with("https://") {
                true => "; Secure",
                false => "",
            };
            let cookie = format!(
                "{BROWSER_COOKIE}={nonce}; Path={CALLBACK}; Max-Age={TICKET_LIFETIME_S}; HttpOnly; SameSite=Lax{secure}"
            );
            let to = oauth::authorization_url(
                oauth,
                &connect.redirect_uri(&connection.name),
                &state,
                &challenge,
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to(&to)).into_response()
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

/// Whether a browser says the request comes from another site's page.
/// Clients that are no browser send neither header.
fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    !matches!(site, None | Some("same-origin") | Some("none"))
}

/// `GET /connect/callback/{connection}`: the provider sends the browser
/// back with a code (or an error) and the `state` Moat sealed; the code is
/// exchanged with the verifier only that state holds, and only in the
/// browser that started the sign-in (its cookie), for the connection the
/// state names.
async fn callback(
    State(connect): State<Arc<Connect>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let state = query.get("state").map_or("", String::as_str);
    let (opened, connection) = match connect.open(state, false) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    let (Kind::OAuth2(oauth), Step::SignIn { verifier, browser }) =
        (&connection.kind, &opened.step)
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "this link is not a sign-in's return",
        );
    };
    if connection.name != name {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "this sign-in came back for another connection",
        );
    }
    let nonce = cookie(&headers, BROWSER_COOKIE);
    if nonce.is_none_or(|n| hex::encode(Sha256::digest(n.as_bytes())) != *browser) {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "this browser did not start this sign-in: open the link you were given and start again here",
        );
    }
    // The cookie has done its work.
    let forget = format!("{BROWSER_COOKIE}=; Path={CALLBACK}; Max-Age=0; HttpOnly; SameSite=Lax");
    let answer = if let Some(error) = query.get("error") {
        let said = query
            .get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("{} did not connect ({error}{said})", connection.name),
        )
    } else if let Some(code) = query.get("code") {
        let redirect_uri = connect.redirect_uri(&connection.name);
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
    } else {
        page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "the provider sent no code",
        )
    };
    ([(header::SET_COOKIE, forget)], answer).into_response()
}

/// The value of cookie `name` in `headers`.
fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
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
    let mut owners = Vec::new();
    for (tenant, endpoint) in &revoking.endpoints {
        // A token may be good at several endpoints: the caller is revoked
        // at each.
        if let Ok(caller) = endpoint.authenticate(&uri, &headers).await
            && !caller.subject.is_empty()
        {
            owners.push(Owner {
                tenant: tenant.clone(),
                issuer: caller.issuer,
                subject: caller.subject,
                connection: name.clone(),
            });
        }
    }
    if owners.is_empty() {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token for one of this server's endpoints is needed\n",
        )
            .into_response();
    }
    if !revoking.connect.connections.contains_key(&name) {
        return (StatusCode::NOT_FOUND, "no such connection\n").into_response();
    }
    let store = revoking.connect.store.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let mut removed = Vec::new();
        for owner in owners {
            if store.remove(&owner)? {
                removed.push(whom(&owner));
            }
        }
        Ok::<_, std::io::Error>(removed)
    })
    .await;
    match removed {
        Ok(Ok(removed)) if removed.is_empty() => {
            (StatusCode::NOT_FOUND, "no credential to revoke\n").into_response()
        }
        Ok(Ok(removed)) => {
            for who in removed {
                tracing::info!(connection = name, who, "a caller revoked a credential");
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "cannot revoke now\n").into_response(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            tenant: None,
            issuer: "https://issuer".into(),
            subject: "alice".into(),
            connection: "gh".into(),
        }
    }

    #[test]
    fn links_need_a_public_url_beyond_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(dir.path().to_path_buf(), &[1; 32]));
        let connect = Connect::new(store.clone(), Connections::new(), None);
        let e = connect
            .listening_at("0.0.0.0:8080".parse().unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("public_url is needed"), "{e}");
        connect
            .listening_at("127.0.0.1:8080".parse().unwrap())
            .unwrap();
        assert!(
            connect
                .link(&owner())
                .starts_with("http://127.0.0.1:8080/connect/")
        );

        let public = Some("https://tools.example.com".to_string());
        let connect = Connect::new(store, Connections::new(), public);
        connect
            .listening_at("0.0.0.0:8080".parse().unwrap())
            .unwrap();
        assert!(
            connect
                .link(&owner())
                .starts_with("https://tools.example.com/connect/")
        );
        assert_eq!(
            connect.redirect_uri("gh"),
            "https://tools.example.com/connect/callback/gh"
        );
    }

    #[test]
    fn a_browser_post_from_another_site_is_cross_site() {
        let headers = |site: Option<&str>| {
            let mut h = axum::http::HeaderMap::new();
            if let Some(site) = site {
                h.insert("sec-fetch-site", site.parse().unwrap());
            }
            h
        };
        assert!(!cross_site(&headers(None)));
        assert!(!cross_site(&headers(Some("same-origin"))));
        assert!(!cross_site(&headers(Some("none"))));
        assert!(cross_site(&headers(Some("cross-site"))));
        assert!(cross_site(&headers(Some("same-site"))));
        let mut h = headers(None);
        h.insert(
            header::COOKIE,
            "a=1; moat-connect=n0nce; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, BROWSER_COOKIE), Some("n0nce"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
