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
//!
//! A link can be forwarded, so before anything is connected the person in
//! the browser signs in at the MCP endpoint's own issuer (OpenID Connect,
//! `[auth.sign_in]`), and only the caller the link was made for goes on;
//! a cookie then says who this browser's user is for ten minutes.

use super::store::{Credential, Owner, Store};
use super::ticket::{Return, Step, TICKET_LIFETIME_S, Ticket};
use super::{Connections, Kind, now, oauth};
use crate::audit::{AuditLog, Record};
use crate::auth::endpoint::Endpoint;
use crate::capabilities::identity::LOCAL_ISSUER;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The path of a provider's redirect back to Moat, per connection (so a
/// provider's code can only come back for its own connection: no mix-up
/// between providers).
const CALLBACK: &str = "/connect/callback";

/// The path of the issuer's redirect back after the browser's user signed
/// in there.
const VERIFY: &str = "/connect/verify";

/// The cookie that ties a sign-in to the browser that started it.
const BROWSER_COOKIE: &str = "moat-connect";

/// The cookie that ties a check of the browser's user to the browser.
const VERIFY_COOKIE: &str = "moat-verify";

/// The cookie that says who signed in in this browser.
const USER_COOKIE: &str = "moat-user";

/// Code exchanges under way at once, in the whole process.
const MAX_EXCHANGES: usize = 16;

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
    /// Whether the browser's user must sign in as the link's caller.
    verify_browser_user: bool,
    /// Told whenever a credential is stored here, to wake calls waiting
    /// for their caller to connect.
    arrived: tokio::sync::Notify,
    /// Where connections and refusals are recorded.
    audit: Option<Arc<AuditLog>>,
    /// Places for code exchanges under way: each is a request to an
    /// authorization server with Moat's client secret, which anyone with
    /// a link could otherwise repeat without end (and get Moat's client
    /// throttled for everyone).
    exchanges: tokio::sync::Semaphore,
}

impl Connect {
    /// The pages for `connections`, as `[credentials]` configures them,
    /// recording what happens in `audit`.
    pub fn new(
        config: &super::CredentialsConfig,
        connections: Connections,
        audit: Option<Arc<AuditLog>>,
    ) -> Arc<Connect> {
        Arc::new(Connect {
            store: config.store.clone(),
            connections,
            public_url: config.public_url.clone(),
            base: OnceLock::new(),
            verify_browser_user: config.verify_browser_user,
            arrived: tokio::sync::Notify::new(),
            audit,
            exchanges: tokio::sync::Semaphore::new(MAX_EXCHANGES),
        })
    }

    /// A place for one code exchange, or why there is none now.
    fn exchange(&self) -> Result<tokio::sync::SemaphorePermit<'_>, String> {
        self.exchanges.try_acquire().map_err(|_| {
            "the server is busy connecting other accounts; try again in a minute".into()
        })
    }

    /// Waits, at most `within`, until `owner` has a credential stored at
    /// `since` or later (not one the upstream refused before) that a
    /// request can carry (unexpired, or refreshable); whether they have.
    /// The page that stores it may be another replica's, so the store is
    /// read again every second as well as whenever a page here stores one.
    pub async fn connected(&self, owner: &Owner, since: u64, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Made before the store is read, so a credential stored in
            // between still wakes it.
            let arrived = self.arrived.notified();
            let store = self.store.clone();
            let whose = owner.clone();
            let usable = tokio::task::spawn_blocking(move || store.get(&whose))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .is_some_and(|c| {
                    c.stored_at >= since && (!c.expired() || c.refresh_token.is_some())
                });
            let now = tokio::time::Instant::now();
            if usable || now >= deadline {
                return usable;
            }
            let next = deadline.min(now + std::time::Duration::from_secs(1));
            let _ = tokio::time::timeout_at(next, arrived).await;
        }
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
        self.link_until(owner, now() + TICKET_LIFETIME_S)
    }

    fn link_until(&self, owner: &Owner, expires_at: u64) -> String {
        let ticket = self.store.tickets().seal(&Ticket {
            owner: owner.clone(),
            expires_at,
            step: Step::Link,
        });
        format!("{}/connect/{ticket}", self.base())
    }

    /// A `state` for an authorization server's return to `step`, for
    /// `owner` until the link's `expires_at` at the latest (a sign-in does
    /// not renew it), tied to this browser by the cookie `name`.
    fn leave(
        &self,
        owner: Owner,
        expires_at: u64,
        step: fn(Return) -> Step,
        name: &str,
    ) -> Leaving {
        let (verifier, challenge) = oauth::pkce();
        let (nonce, _) = oauth::pkce();
        let browser = hex::encode(Sha256::digest(nonce.as_bytes()));
        let state = self.store.tickets().seal(&Ticket {
            owner,
            expires_at: expires_at.min(now() + TICKET_LIFETIME_S),
            step: step(Return {
                verifier,
                browser: browser.clone(),
            }),
        });
        Leaving {
            state,
            cookie: self.cookie(name, &nonce, TICKET_LIFETIME_S),
            challenge,
            browser,
        }
    }

    /// A `Set-Cookie` value for the cookie `name`: HttpOnly, SameSite=Lax
    /// (sent on the top-level navigation back from an authorization
    /// server, never with another site's POST); on https, Secure and
    /// `__Host-` (so no other host, a sibling subdomain included, can set
    /// one for this one).
    fn cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = match self.https() {
            true => "; Secure",
            false => "",
        };
        let name = self.cookie_name(name);
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }

    /// The name of the cookie `name` as browsers send it.
    fn cookie_name(&self, name: &str) -> String {
        match self.https() {
            true => format!("__Host-{name}"),
            false => name.to_string(),
        }
    }

    /// The value of this browser's (`headers`) cookie `name`; `None` when
    /// it has none, or more than one (one planted beside Moat's own).
    fn read_cookie<'a>(&self, headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
        cookie(headers, &self.cookie_name(name))
    }

    fn https(&self) -> bool {
        self.base().starts_with("https://")
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
    /// revokes their own credential. The browser's user signs in at the
    /// issuer of the endpoint whose callers the link is for.
    pub fn routes(self: &Arc<Self>, endpoints: Vec<(Option<String>, Arc<Endpoint>)>) -> Router {
        let pages = Arc::new(Pages {
            connect: self.clone(),
            endpoints,
        });
        Router::new()
            .route(&format!("{CALLBACK}/{{connection}}"), get(callback))
            .route(VERIFY, get(verify))
            .route("/connect/{ticket}", get(start).post(submit))
            .route("/connections/{name}", axum::routing::delete(revoke))
            .with_state(pages)
    }

    /// The ticket in `text` for the kind of `step`, and the connection it
    /// names; or the page that says why not.
    fn open(&self, text: &str, step: &Step) -> Result<(Ticket, &super::Connection), Box<Response>> {
        let ticket = self.store.tickets().open(text, now(), step).map_err(|e| {
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

    /// The ticket in an authorization server's redirect back (its
    /// `state`), of the kind `step` makes, and the connection it names;
    /// only in the browser that left with it (holding the cookie `name`
    /// whose nonce the state was sealed with); with what the state keeps
    /// to finish. Else the page that says why not.
    fn returned(
        &self,
        query: &HashMap<String, String>,
        headers: &axum::http::HeaderMap,
        step: fn(Return) -> Step,
        name: &str,
    ) -> Result<(Ticket, &super::Connection, Return), Box<Response>> {
        let state = query.get("state").map_or("", String::as_str);
        let (opened, connection) = self.open(state, &step(Return::default()))?;
        let (Step::SignIn(back) | Step::Verify(back)) = &opened.step else {
            return Err(Box::new(page(
                StatusCode::BAD_REQUEST,
                "Not connected",
                "this link is not a sign-in's return",
            )));
        };
        let nonce = self.read_cookie(headers, name);
        if nonce.is_none_or(|n| hex::encode(Sha256::digest(n.as_bytes())) != back.browser) {
            let why = "this browser did not start this sign-in: open the link you were given and start again here";
            self.record(&opened.owner, "refused", "other_browser", why);
            return Err(Box::new(page(
                StatusCode::BAD_REQUEST,
                "Not connected",
                why,
            )));
        }
        let back = back.clone();
        Ok((opened, connection, back))
    }

    /// Stores `credential` as `owner`'s and says so.
    async fn keep(&self, owner: Owner, credential: Credential) -> Response {
        let store = self.store.clone();
        let who = whom(&owner);
        let connection = owner.connection.clone();
        let whose = owner.clone();
        let stored = tokio::task::spawn_blocking(move || store.put(&whose, &credential)).await;
        match stored {
            Ok(Ok(())) => {
                self.arrived.notify_waiters();
                tracing::info!(connection, who, "a caller connected an account");
                self.record(&owner, "ok", "connected", "the account was connected");
                crate::metrics::get().credential(&connection, "connected");
                page(
                    StatusCode::OK,
                    "Connected",
                    &format!(
                        "{connection} is connected for {who}. Go back to your client: a call that \
                         waited for this goes on; else call the tool again."
                    ),
                )
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the store's task failed".into(),
                };
                tracing::error!(connection, "cannot store a credential: {why}");
                self.record(&owner, "error", "store_failed", &why);
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Not connected",
                    "the server cannot store the credential; tell its operator",
                )
            }
        }
    }

    /// Records in the audit log what happened at a page for `owner`
    /// (`method` `connect`, the connection as `tool`). Written beside the
    /// answer, which does not wait for the disk: nothing runs on the
    /// strength of it. Only what concerns a caller's valid link is
    /// recorded; anybody could send a garbled one, without end.
    fn record(&self, owner: &Owner, outcome: &'static str, kind: &str, reason: &str) {
        record(self.audit.as_ref(), "connect", owner, outcome, kind, reason);
    }
}

/// Writes the audit record of a connect page's or revoke's event.
fn record(
    audit: Option<&Arc<AuditLog>>,
    method: &'static str,
    owner: &Owner,
    outcome: &'static str,
    kind: &str,
    reason: &str,
) {
    let Some(audit) = audit.cloned() else {
        return;
    };
    let record = Record {
        tenant: owner.tenant.clone(),
        subject: Some(owner.subject.clone()),
        tool: Some(owner.connection.clone()),
        method: Some(method),
        outcome,
        kind: kind.to_string(),
        reason: Some(reason.to_string()),
        ..Record::new()
    };
    tokio::spawn(async move {
        // A failing log is reported by the log itself; the page's answer
        // stands.
        let _ = audit.write(&record).await;
    });
}

/// A browser leaving for an authorization server.
struct Leaving {
    /// The sealed `state`.
    state: String,
    /// The `Set-Cookie` that ties it to this browser.
    cookie: String,
    /// PKCE's S256 challenge.
    challenge: String,
    /// The hash of the cookie's nonce, which the state holds.
    browser: String,
}

/// What the pages need: the store, and each endpoint's token rules and
/// sign-in (by tenant), to know the browser's user and revoking callers.
struct Pages {
    connect: Arc<Connect>,
    endpoints: Vec<(Option<String>, Arc<Endpoint>)>,
}

/// Why the browser's user may not go on yet.
enum Gate {
    /// They must sign in at this endpoint's issuer first.
    SignIn(Arc<Endpoint>),
    /// Nobody can check who they are here: the page that says so.
    Refused(Box<Response>),
}

impl Pages {
    /// Whether the person in this browser (`headers`) may connect an
    /// account for `owner`: the one local user over stdio; anybody, where
    /// the operator turned the check off; else only who signed in at the
    /// issuer as the owner (the cookie [`verify`] sets).
    fn admit(&self, owner: &Owner, headers: &axum::http::HeaderMap) -> Result<(), Gate> {
        if owner.issuer == LOCAL_ISSUER || !self.connect.verify_browser_user {
            return Ok(());
        }
        let endpoint = self.verifier(owner).ok_or_else(|| {
            Gate::Refused(Box::new(page(
                StatusCode::FORBIDDEN,
                "Not connected",
                &format!(
                    "this server cannot check who you are at {}, so it cannot connect an account for \
                     this link; tell its operator ([auth.sign_in])",
                    owner.issuer
                ),
            )))
        })?;
        let signed_in = self
            .connect
            .read_cookie(headers, USER_COOKIE)
            .and_then(|c| {
                self.connect
                    .store
                    .tickets()
                    .open(c, now(), &Step::Verified)
                    .ok()
            })
            .is_some_and(|t| same_person(&t.owner, owner));
        match signed_in {
            true => Ok(()),
            false => Err(Gate::SignIn(endpoint.clone())),
        }
    }

    /// The endpoint whose issuer vouches for `owner`'s callers and where
    /// Moat can sign them in.
    fn verifier(&self, owner: &Owner) -> Option<&Arc<Endpoint>> {
        self.endpoints
            .iter()
            .find(|(tenant, endpoint)| {
                *tenant == owner.tenant
                    && endpoint.config().token.issuer == owner.issuer
                    && endpoint.config().sign_in.is_some()
            })
            .map(|(_, endpoint)| endpoint)
    }

    /// Where the issuer sends the browser back after its user signed in.
    fn verify_uri(&self) -> String {
        format!("{}{VERIFY}", self.connect.base())
    }
}

/// Whether two owners are one person (whatever their connection).
fn same_person(a: &Owner, b: &Owner) -> bool {
    (&a.tenant, &a.issuer, &a.subject) == (&b.tenant, &b.issuer, &b.subject)
}

/// `GET /connect/{ticket}`: what is about to be connected, for whom, and
/// the button (or the key's field) that does it; first, unless this
/// browser's user signed in as the link's caller, the way to the issuer's
/// sign-in (`?again` asks the issuer for a fresh one, to switch users).
/// Nothing is connected on a mere visit, so a link opened by a crawler or
/// a preview connects nothing.
async fn start(
    State(pages): State<Arc<Pages>>,
    Path(ticket): Path<String>,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let connect = &pages.connect;
    let (opened, connection) = match connect.open(&ticket, &Step::Link) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    match pages.admit(&opened.owner, &headers) {
        Ok(()) => {}
        Err(Gate::Refused(page)) => return *page,
        Err(Gate::SignIn(endpoint)) => {
            let client = match endpoint.sign_in().await {
                Some(Ok(client)) => client,
                Some(Err(why)) => {
                    tracing::warn!(
                        issuer = opened.owner.issuer,
                        "cannot sign a browser in: {why}"
                    );
                    return page(
                        StatusCode::BAD_GATEWAY,
                        "Not connected",
                        "the server cannot reach its sign-in now; try again later",
                    );
                }
                None => {
                    return page(
                        StatusCode::FORBIDDEN,
                        "Not connected",
                        "this server has no sign-in at that issuer",
                    );
                }
            };
            let leaving =
                connect.leave(opened.owner, opened.expires_at, Step::Verify, VERIFY_COOKIE);
            // The ID token must carry the nonce: the hash of this browser's
            // cookie, which the state holds too.
            let mut extra = vec![("nonce", leaving.browser.as_str())];
            if query.contains_key("again") {
                extra.push(("prompt", "login"));
            }
            let to = oauth::authorization_url(
                client,
                &pages.verify_uri(),
                &leaving.state,
                &leaving.challenge,
                &extra,
            );
            return ([(header::SET_COOKIE, leaving.cookie)], Redirect::to(&to)).into_response();
        }
    }
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

/// `GET /connect/verify`: the issuer sends the browser back with a code
/// (or an error) and the `state` the link's page sealed; the code is
/// exchanged (with the verifier only that state holds, in the browser that
/// left) for an ID token, and only if it names the link's caller does the
/// browser get the cookie saying so and go back to the link.
async fn verify(
    State(pages): State<Arc<Pages>>,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let connect = &pages.connect;
    let (opened, _, back) = match connect.returned(&query, &headers, Step::Verify, VERIFY_COOKIE) {
        Ok(returned) => returned,
        Err(page) => return *page,
    };
    let forget = connect.cookie(VERIFY_COOKIE, "", 0);
    let answer = match returned_code(&query, "the sign-in") {
        Err(page) => *page,
        Ok(code) => match pages.verifier(&opened.owner) {
            None => page(
                StatusCode::FORBIDDEN,
                "Not connected",
                "this server no longer checks who you are at that issuer",
            ),
            Some(endpoint) => match identify(&pages, endpoint, code, &back).await {
                Err(why) => {
                    tracing::warn!(
                        issuer = opened.owner.issuer,
                        "a browser's sign-in failed: {why}"
                    );
                    connect.record(&opened.owner, "refused", "sign_in_failed", &why);
                    page(StatusCode::BAD_GATEWAY, "Not connected", &why)
                }
                Ok(caller)
                    if caller.issuer != opened.owner.issuer
                        || caller.subject != opened.owner.subject =>
                {
                    tracing::warn!(
                        link_for = whom(&opened.owner),
                        signed_in = caller.subject,
                        "a connect link was opened by someone other than its caller; refused"
                    );
                    connect.record(
                        &opened.owner,
                        "refused",
                        "wrong_user",
                        &format!("the browser's user signed in as {:?}", caller.subject),
                    );
                    let again = format!(
                        "{}?again",
                        connect.link_until(&opened.owner, opened.expires_at)
                    );
                    html_page(
                        StatusCode::FORBIDDEN,
                        "Not connected",
                        &format!(
                            "<p>You signed in as <b>{}</b>, but this link was made for <b>{}</b>. \
                             Only they can connect an account with it.</p>\
                             <p><a href=\"{}\">Sign in as someone else</a></p>",
                            escape(&caller.subject),
                            escape(&whom(&opened.owner)),
                            escape(&again)
                        ),
                    )
                }
                Ok(_) => {
                    let person = Owner {
                        connection: String::new(),
                        ..opened.owner.clone()
                    };
                    let signed_in = connect.store.tickets().seal(&Ticket {
                        owner: person,
                        expires_at: now() + TICKET_LIFETIME_S,
                        step: Step::Verified,
                    });
                    let cookie = connect.cookie(USER_COOKIE, &signed_in, TICKET_LIFETIME_S);
                    let link = connect.link_until(&opened.owner, opened.expires_at);
                    ([(header::SET_COOKIE, cookie)], Redirect::to(&link)).into_response()
                }
            },
        },
    };
    (AppendHeaders([(header::SET_COOKIE, forget)]), answer).into_response()
}

/// The caller the issuer's ID token for `code` names, which must carry
/// the `nonce` the sign-in was sent with (see [`Return::browser`]).
async fn identify(
    pages: &Pages,
    endpoint: &Endpoint,
    code: &str,
    back: &Return,
) -> Result<crate::auth::policy::Caller, String> {
    let client = match endpoint.sign_in().await {
        Some(client) => client?,
        None => return Err("this server has no sign-in at that issuer".into()),
    };
    let _exchanging = pages.connect.exchange()?;
    let id_token = oauth::sign_in(client, code, &pages.verify_uri(), &back.verifier).await?;
    endpoint
        .validate_id_token(&id_token, &back.browser)
        .await
        .map_err(|e| format!("the issuer's ID token is refused: {e}"))
}

/// `POST /connect/{ticket}`: an API key is stored; for OAuth the browser
/// goes to the provider with a `state` that names the caller, carries the
/// PKCE verifier and is tied to this browser by a cookie, sealed. Only
/// the caller the link is for, signed in in this browser, may post; and a
/// post from another site's page is refused: it would start a sign-in in
/// the visitor's browser for whoever made the page.
async fn submit(
    State(pages): State<Arc<Pages>>,
    Path(ticket): Path<String>,
    headers: axum::http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let connect = &pages.connect;
    if cross_site(&headers) {
        return page(
            StatusCode::FORBIDDEN,
            "Not connected",
            "this form can only be sent from its own page",
        );
    }
    let (opened, connection) = match connect.open(&ticket, &Step::Link) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    match pages.admit(&opened.owner, &headers) {
        Ok(()) => {}
        Err(Gate::Refused(page)) => return *page,
        Err(Gate::SignIn(_)) => {
            let why = "sign in first: open the link you were given again";
            connect.record(&opened.owner, "refused", "not_signed_in", why);
            return page(StatusCode::FORBIDDEN, "Not connected", why);
        }
    }
    match &connection.kind {
        Kind::OAuth2(oauth) => {
            let leaving = connect.leave(
                opened.owner,
                opened.expires_at,
                Step::SignIn,
                BROWSER_COOKIE,
            );
            let to = oauth::authorization_url(
                oauth,
                &connect.redirect_uri(&connection.name),
                &leaving.state,
                &leaving.challenge,
                &[],
            );
            ([(header::SET_COOKIE, leaving.cookie)], Redirect::to(&to)).into_response()
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

/// The code an authorization server's redirect back carries, or the page
/// that says why there is none (its `error`, or nothing).
fn returned_code<'a>(
    query: &'a HashMap<String, String>,
    what: &str,
) -> Result<&'a str, Box<Response>> {
    if let Some(error) = query.get("error") {
        let said = query
            .get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(Box::new(page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("{what} did not succeed ({error}{said})"),
        )));
    }
    query.get("code").map(String::as_str).ok_or_else(|| {
        Box::new(page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("{what} sent no code back"),
        ))
    })
}

/// `GET /connect/callback/{connection}`: the provider sends the browser
/// back with a code (or an error) and the `state` Moat sealed; the code is
/// exchanged with the verifier only that state holds, and only in the
/// browser that started the sign-in (its cookie), for the connection the
/// state names.
async fn callback(
    State(pages): State<Arc<Pages>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let connect = &pages.connect;
    let (opened, connection, back) =
        match connect.returned(&query, &headers, Step::SignIn, BROWSER_COOKIE) {
            Ok(returned) => returned,
            Err(page) => return *page,
        };
    let Kind::OAuth2(oauth) = &connection.kind else {
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
    // The cookie has done its work.
    let forget = connect.cookie(BROWSER_COOKIE, "", 0);
    let what = format!("connecting {}", connection.name);
    let answer = match returned_code(&query, &what) {
        Err(page) => {
            // Most often the user declined at the provider.
            let error = query.get("error").map_or("no code", String::as_str);
            connect.record(&opened.owner, "refused", "provider_refused", error);
            *page
        }
        Ok(code) => {
            let redirect_uri = connect.redirect_uri(&connection.name);
            let exchanged = match connect.exchange() {
                Ok(_exchanging) => {
                    oauth::exchange_code(oauth, code, &redirect_uri, &back.verifier).await
                }
                Err(busy) => Err(busy),
            };
            match exchanged {
                Ok(credential) => connect.keep(opened.owner, credential).await,
                Err(why) => {
                    tracing::warn!(
                        connection = connection.name,
                        "a sign-in's code exchange failed: {why}"
                    );
                    connect.record(&opened.owner, "refused", "sign_in_failed", &why);
                    page(StatusCode::BAD_GATEWAY, "Not connected", &why)
                }
            }
        }
    };
    (AppendHeaders([(header::SET_COOKIE, forget)]), answer).into_response()
}

/// The value of cookie `name` in `headers`; `None` when there is none, or
/// more than one (which one a browser sends first depends on its paths
/// and ages, so neither is trusted).
fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        });
    let first = found.next();
    match found.next() {
        None => first,
        Some(_) => None,
    }
}

/// `DELETE /connections/{name}` with the caller's bearer token (one any
/// endpoint here accepts): their credential for `name` is deleted, and
/// their next call that needs it asks them to connect again. 204 when
/// one was deleted, 404 when there was none, 401 for a token no endpoint
/// accepts.
async fn revoke(
    State(revoking): State<Arc<Pages>>,
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
    let connection = revoking.connect.connections.get(&name).map(|c| &**c);
    let mut removed = 0;
    for owner in owners {
        match super::revoke(&revoking.connect.store, connection, &owner, true).await {
            Ok(false) => {}
            Ok(true) => {
                removed += 1;
                let who = whom(&owner);
                tracing::info!(connection = name, who, "a caller revoked a credential");
                let audit = revoking.connect.audit.as_ref();
                record(
                    audit,
                    "revoke",
                    &owner,
                    "ok",
                    "revoked",
                    "the caller revoked it",
                );
                crate::metrics::get().credential(&name, "revoked");
            }
            Err(e) => {
                tracing::error!(connection = name, "cannot revoke a credential: {e}");
                return (StatusCode::INTERNAL_SERVER_ERROR, "cannot revoke now\n").into_response();
            }
        }
    }
    match removed {
        0 => (StatusCode::NOT_FOUND, "no credential to revoke\n").into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
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
        let mut config = super::super::CredentialsConfig {
            store: Arc::new(Store::new(dir.path().to_path_buf(), &[1; 32])),
            public_url: None,
            verify_browser_user: true,
        };
        let connect = Connect::new(&config, Connections::new(), None);
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

        config.public_url = Some("https://tools.example.com".to_string());
        let connect = Connect::new(&config, Connections::new(), None);
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
        // On https no other host can set Moat's cookies (`__Host-`).
        assert_eq!(
            connect.cookie(USER_COOKIE, "v", 600),
            "__Host-moat-user=v; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure"
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
        // One planted beside Moat's: neither is trusted.
        h.append(header::COOKIE, "moat-connect=planted".parse().unwrap());
        assert_eq!(cookie(&h, BROWSER_COOKIE), None);
    }
}
