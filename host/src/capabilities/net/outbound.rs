//! The wasi:http send hook: every outgoing request of a call is checked
//! against the plugin's [`NetGrant`] by scheme, host and port, the name is
//! resolved here and every address checked, and the connection goes to an
//! address that passed (no second lookup). A refusal is the guest-visible
//! `HTTP-request-denied` error, which the plugin can handle.
//!
//! Connections are kept alive between requests of the same plugin
//! ([`Pool`]): a connection goes back to its plugin's idle list only
//! once its response was read to the end, and is taken again only for the
//! same scheme, host and port, so a reused connection is one whose address
//! was checked when it was opened.

use super::NetGrant;
use super::allow::{Host, Origin, Scheme, canonical, special_range};
use crate::capabilities::per_caller::Principal;
use crate::credentials::inject::Scrubber;
use crate::credentials::store::{Credential, Owner};
use crate::credentials::{Connection, Kind, oauth};
use crate::tls::{Io, TLS};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error, RequestOptions, Result, WasiBody, WasiHttpHooks};

/// What a call was refused, for its audit record.
pub type Denials = Arc<Mutex<Vec<String>>>;

/// Denials kept per call; more are counted, not described.
const MAX_DENIALS: usize = 16;

fn note(denials: &Denials, what: String) {
    let mut list = denials.lock().expect("denial list");
    if list.len() < MAX_DENIALS {
        list.push(what);
    }
}

/// Logs and notes a refused request; the guest sees `HTTP-request-denied`.
fn refuse(plugin: &str, denials: &Denials, target: &str, reason: &str) -> Error {
    tracing::warn!(plugin, target, reason, "outbound request refused");
    note(denials, format!("http {target}: {reason}"));
    Error::HttpRequestDenied
}

/// The send hook of one call.
pub struct Outbound {
    grant: Arc<NetGrant>,
    plugin: Arc<str>,
    /// The verified caller, whose credentials go to connections' hosts.
    caller: Option<Arc<Principal>>,
    /// Requests sent so far in this call.
    sent: u32,
    /// Requests refused so far in this call.
    denials: Denials,
    /// A connection the caller has not set up, which a request needed.
    needs: Needs,
}

/// The connection a call needed and its caller has not set up.
type Needs = Arc<Mutex<Option<Need>>>;

/// A connection a call needed, whose caller must connect it (again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// Whose, for which connection.
    pub owner: Owner,
    /// The upstream refused what was sent (401), after the plugin's
    /// request went out: the call did things, and is not run again.
    pub refused: bool,
}

impl Outbound {
    /// The hook for one call of `plugin` by `caller` under `grant`.
    pub fn new(grant: Arc<NetGrant>, plugin: Arc<str>, caller: Option<Principal>) -> Self {
        Outbound {
            grant,
            plugin,
            caller: caller.map(Arc::new),
            sent: 0,
            denials: Denials::default(),
            needs: Needs::default(),
        }
    }

    /// The connection a request of the call needed and the caller has
    /// not set up, if any.
    pub fn needed(&self) -> Option<Need> {
        self.needs.lock().expect("needs").clone()
    }

    /// The requests refused so far.
    pub fn denials(&self) -> Vec<String> {
        self.denials.lock().expect("denial list").clone()
    }

    fn deny(&self, target: &str, reason: &str) -> Error {
        refuse(&self.plugin, &self.denials, target, reason)
    }

    /// The checked destination of `uri`, or why it is refused.
    fn check(&mut self, uri: &http::Uri) -> Result<Destination> {
        let shown = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("?"),
            uri.authority().map_or("?", |a| a.as_str())
        );
        let scheme = uri
            .scheme_str()
            .and_then(Scheme::parse)
            .ok_or_else(|| self.deny(&shown, "only http and https are supported"))?;
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        // Judge the real destination: WHATWG host parsing turns decimal,
        // hex and octal IPv4 spellings into addresses, and the authority's
        // host excludes any `user@` part.
        let host = match url::Host::parse(authority.host()) {
            Ok(parsed) => {
                Host::from_url(parsed).ok_or_else(|| self.deny(&shown, "not a valid host name"))?
            }
            Err(_) => return Err(self.deny(&shown, "not a valid host")),
        };
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        let target = format!("{scheme}://{host}:{port}");
        if !self.grant.allow.allows(scheme, &host, port) {
            return Err(self.deny(&target, "not in the plugin's allow_hosts"));
        }
        if self.sent >= self.grant.max_requests {
            return Err(self.deny(&target, "the call's max_http_requests is used up"));
        }
        self.sent += 1;
        let origin = Origin { scheme, host, port };
        let connection = self
            .grant
            .connections
            .iter()
            .find(|c| c.serves(&origin))
            .cloned();
        Ok(Destination {
            origin,
            target,
            connection,
        })
    }
}

/// A destination that passed the URL check.
struct Destination {
    origin: Origin,
    /// `scheme://host:port`, for logs.
    target: String,
    /// The connection whose credential requests there carry.
    connection: Option<Arc<Connection>>,
}

/// Idle connections one plugin keeps, over all its destinations. Each is
/// a socket and a task, so they are few and short-lived.
pub const MAX_IDLE: usize = 16;
/// How long a connection may sit idle before it is closed.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// The request body every connection of a plugin carries.
type Outgoing = CappedBody<WasiBody>;

struct Idle {
    origin: Origin,
    /// Whose credential its requests carried: a connection that carried
    /// one caller's is never given to another's request, in case the
    /// server ties anything to the connection.
    caller: Option<Arc<Principal>>,
    sender: hyper::client::conn::http1::SendRequest<Outgoing>,
    since: Instant,
}

/// A plugin's idle keep-alive connections (shared by its calls; dropped,
/// and so closed, with the plugin on reload or shutdown).
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    /// An idle connection to `origin` that is ready for a request, if one
    /// is kept. Expired and closed ones are dropped on the way. One not
    /// ready (still sending an earlier request's body, say) is left: no
    /// request waits on another call's.
    fn take(&self, origin: &Origin, caller: &Option<Arc<Principal>>) -> Option<Idle> {
        let mut idle = self.live();
        let at = idle
            .iter()
            .rposition(|c| &c.origin == origin && &c.caller == caller && c.sender.is_ready())?;
        Some(idle.swap_remove(at))
    }

    /// Keeps `sender` for the next request to `origin`; the oldest idle
    /// connection is closed to make room.
    fn give_back(
        &self,
        origin: Origin,
        caller: Option<Arc<Principal>>,
        sender: hyper::client::conn::http1::SendRequest<Outgoing>,
    ) {
        let mut idle = self.live();
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            origin,
            caller,
            sender,
            since: Instant::now(),
        });
    }

    /// The idle list, without the expired and closed connections.
    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        let mut idle = self.idle.lock().expect("idle connections");
        idle.retain(|c| c.since.elapsed() < IDLE_FOR && !c.sender.is_closed());
        idle
    }

    /// How many connections are idle now.
    pub fn idle(&self) -> usize {
        self.idle.lock().expect("idle connections").len()
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} idle)", self.idle())
    }
}

/// Idle connections are not part of what is granted: grants that allow
/// the same are equal whatever either has open.
impl PartialEq for Pool {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Pool {}

/// Bytes of one write to an outgoing body that the host buffers. One
/// chunk is buffered per body, so this and the call's handle cap bound
/// what unsent bodies can make the host hold (wasmtime's default is 1 MiB
/// a body: a thousand unsent bodies held a gigabyte).
const BODY_CHUNK_BYTES: usize = 16 << 10;

impl WasiHttpHooks for Outbound {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK_BYTES
    }

    /// A request body over `max_request_bytes` fails inside hyper; the
    /// plugin is told so by name, not as a protocol error.
    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> ErrorCode {
        let mut source = std::error::Error::source(err);
        while let Some(e) = source {
            if let Some(Error::HttpRequestBodySize(size)) = e.downcast_ref::<Error>() {
                return ErrorCode::HttpRequestBodySize(*size);
            }
            source = e.source();
        }
        tracing::debug!(plugin = &*self.plugin, "outbound request failed: {err}");
        ErrorCode::HttpProtocolError
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                )>,
            > + Send,
    > {
        let checked = self.check(request.uri());
        let grant = self.grant.clone();
        let plugin = self.plugin.clone();
        let denials = self.denials.clone();
        let caller = self.caller.clone();
        let needs = self.needs.clone();
        Box::new(async move {
            let destination = checked?;
            // The credential's look-up (and refresh) is part of the
            // request's time.
            let work = async {
                let (request, caller, scrubber, sent_as) = match &destination.connection {
                    None => (request, None, None, None),
                    Some(connection) => {
                        let found = credential(connection, caller.as_deref(), &needs).await;
                        let sent_as = found.as_ref().ok().map(|(c, owner)| Sent {
                            owner: owner.clone(),
                            stored_at: c.stored_at,
                            refreshable: c.refresh_token.is_some(),
                        });
                        let (request, scrubber) = with_credential(
                            request,
                            &destination.origin,
                            connection,
                            found.map(|(credential, _)| credential),
                        )
                        .map_err(|why| refuse(&plugin, &denials, &destination.target, &why))?;
                        (request, caller, Some(scrubber), sent_as)
                    }
                };
                let answer = send(
                    request,
                    &destination,
                    caller,
                    scrubber,
                    &grant,
                    &plugin,
                    &denials,
                )
                .await?;
                if let (Some(sent_as), Some(connection)) = (sent_as, &destination.connection)
                    && answer.0.status() == http::StatusCode::UNAUTHORIZED
                {
                    refused(connection, sent_as, &needs).await;
                }
                Ok(answer)
            };
            match tokio::time::timeout(grant.request_timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(Error::ConnectionTimeout),
            }
        })
    }
}

type Answer = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Whose credential a request carried, and which one.
struct Sent {
    owner: Owner,
    stored_at: u64,
    refreshable: bool,
}

/// The upstream refused the credential `sent` carried (401): the provider
/// revoked it, or the key the user typed is wrong. A refreshable one is
/// marked expired, so the next request refreshes it (and, when the grant
/// is gone too, asks the user); any other makes the call ask its caller
/// to connect again (what is stored stays until they do: a plugin that
/// provokes a 401 cannot delete it).
async fn refused(connection: &Connection, sent: Sent, needs: &Needs) {
    crate::metrics::get().credential(&connection.name, "refused_upstream");
    if !sent.refreshable {
        *needs.lock().expect("needs") = Some(Need {
            owner: sent.owner,
            refused: true,
        });
        return;
    }
    // A token refreshed lately is not refreshed again for a 401: a plugin
    // could provoke one with every request, and have Moat's client hammer
    // the provider (and rotate the user's refresh token) without end.
    if sent.stored_at + MIN_REFRESH_AGE_S > crate::credentials::now() {
        return;
    }
    let store = &connection.store;
    // Under the owner's turn: not between another request's refresh and
    // its storing, which this would undo.
    let _turn = store.refreshing(&sent.owner).await;
    let store = store.clone();
    let marked = tokio::task::spawn_blocking(move || {
        let Some(mut current) = store.get(&sent.owner)? else {
            return Ok(false);
        };
        current.expires_at = Some(0);
        store.replace(&sent.owner, sent.stored_at, &current)
    })
    .await;
    if !matches!(marked, Ok(Ok(_))) {
        tracing::error!(
            connection = connection.name,
            "cannot mark a refused credential for refresh"
        );
    }
}

/// Seconds a credential must have been stored before a 401 to it makes
/// Moat refresh it.
const MIN_REFRESH_AGE_S: u64 = 60;

/// The caller's credential for `connection` and whose it is, or why there
/// is none to send.
async fn credential(
    connection: &Arc<Connection>,
    caller: Option<&Principal>,
    needs: &Needs,
) -> std::result::Result<(Credential, Owner), String> {
    let Some(caller) = caller else {
        return Err(format!(
            "needs the caller's `{}` connection, and no caller is verified here",
            connection.name
        ));
    };
    let owner = Owner {
        tenant: caller.tenant.clone(),
        issuer: caller.issuer.clone(),
        subject: caller.subject.clone(),
        connection: connection.name.clone(),
    };
    let store = connection.store.clone();
    let key = owner.clone();
    let found = tokio::task::spawn_blocking(move || store.get(&key))
        .await
        .map_err(|_| "the credential store's read failed".to_string())?;
    let missing = || {
        format!(
            "needs the caller's `{}` connection, which they have not set up",
            connection.name
        )
    };
    let found = match found {
        Ok(Some(credential)) if credential.expired() => refreshed(connection, &owner).await,
        Ok(found) => found,
        Err(e) => {
            tracing::error!(
                connection = connection.name,
                "cannot read a credential: {e}"
            );
            return Err("the credential store cannot be read".to_string());
        }
    };
    match found {
        Some(credential) if !credential.secret.is_empty() => {
            crate::metrics::get().credential(&connection.name, "injected");
            Ok((credential, owner))
        }
        _ => {
            crate::metrics::get().credential(&connection.name, "missing");
            *needs.lock().expect("needs") = Some(Need {
                owner,
                refused: false,
            });
            Err(missing())
        }
    }
}

/// A fresh credential for `owner`, whose stored one has expired: from the
/// provider with its refresh token, stored for the next call; `None` when
/// there is none to be had (the user connects again).
async fn refreshed(connection: &Connection, owner: &Owner) -> Option<Credential> {
    let Kind::OAuth2(oauth) = &connection.kind else {
        return None;
    };
    let store = &connection.store;
    // One refresh per owner at a time: a provider that rotates refresh
    // tokens takes a second use of one as theft and revokes the grant.
    let _turn = store.refreshing(owner).await;
    // And one per owner among replicas that share a limit store.
    let _shared_turn = store.refreshing_shared(owner).await;
    // Meanwhile another call may have refreshed it, or the user connected
    // again or revoked it: go on from what is stored now.
    let current = read(store, owner).await?;
    if !current.expired() {
        return Some(current);
    }
    current.refresh_token.as_ref()?;
    let fresh = match oauth::refresh(oauth, &current).await {
        Ok(fresh) => {
            crate::metrics::get().credential(&connection.name, "refreshed");
            fresh
        }
        Err(why) => {
            crate::metrics::get().credential(&connection.name, "refresh_failed");
            tracing::warn!(
                connection = connection.name,
                "cannot refresh a credential: {why}"
            );
            return None;
        }
    };
    let (store, key, kept) = (store.clone(), owner.clone(), fresh.clone());
    let since = current.stored_at;
    let stored = tokio::task::spawn_blocking(move || store.replace(&key, since, &kept)).await;
    match stored {
        Ok(Ok(true)) => Some(fresh),
        // Revoked or connected anew while refreshing: that stands.
        Ok(Ok(false)) => None,
        // This call still has a working token; the next refreshes again.
        _ => {
            tracing::error!(
                connection = connection.name,
                "cannot store a refreshed credential"
            );
            Some(fresh)
        }
    }
}

/// `owner`'s credential as stored now; `None` when there is none or it
/// cannot be read.
async fn read(store: &Arc<crate::credentials::store::Store>, owner: &Owner) -> Option<Credential> {
    let (store, key) = (store.clone(), owner.clone());
    tokio::task::spawn_blocking(move || store.get(&key))
        .await
        .ok()?
        .ok()?
}

/// `request` with the plugin's own credentials taken out and the caller's
/// `credential` for `connection` put in, with what keeps it out of the
/// answer; or why it cannot be sent.
fn with_credential(
    request: http::Request<WasiBody>,
    origin: &Origin,
    connection: &Connection,
    credential: std::result::Result<Credential, String>,
) -> std::result::Result<(http::Request<WasiBody>, Scrubber), String> {
    let credential = credential?;
    // TRACE answers with the request itself; CONNECT would make the
    // connection a tunnel that nothing checks.
    if matches!(
        request.method(),
        &http::Method::TRACE | &http::Method::CONNECT
    ) {
        return Err(format!(
            "{} is not sent with a caller's credential",
            request.method()
        ));
    }
    let scrubber = Scrubber::new(&credential.secret).ok_or("the stored credential is empty")?;
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = connection
        .inject
        .apply(&mut parts.headers, path, &credential.secret)
        .map_err(|e| e.to_string())?;
    let unusable = || "the credential cannot go in a URL".to_string();
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = Some(path.parse().map_err(|_| unusable())?);
    parts.uri = http::Uri::from_parts(uri).map_err(|_| unusable())?;
    // The server routes by the name the credential was meant for, not by
    // another spelling of the authority (a `user@` part, an odd IP form).
    let host = match origin.port == origin.scheme.default_port() {
        true => origin.host.to_string(),
        false => format!("{}:{}", origin.host, origin.port),
    };
    parts.headers.insert(
        http::header::HOST,
        http::HeaderValue::from_str(&host).map_err(|_| unusable())?,
    );
    Ok((http::Request::from_parts(parts, body), scrubber))
}

/// Why an answer from a connection's host cannot be handed to the plugin,
/// if it cannot: encoded so that the credential could pass unseen, or a
/// part of a resource (which could be a piece of the credential).
fn unreadable(headers: &http::HeaderMap, status: http::StatusCode) -> Option<&'static str> {
    let values = |name| {
        headers
            .get_all(name)
            .into_iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    if values(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| v != "identity")
        || values(http::header::TRANSFER_ENCODING)
            .iter()
            .any(|v| v != "chunked")
    {
        return Some(
            "the upstream encoded its answer although asked not to, so it cannot be checked for the credential",
        );
    }
    (status == http::StatusCode::PARTIAL_CONTENT).then_some(
        "the upstream answered with part of a resource, which could be part of the credential",
    )
}

async fn send(
    mut request: http::Request<WasiBody>,
    to: &Destination,
    caller: Option<Arc<Principal>>,
    scrubber: Option<Scrubber>,
    grant: &Arc<NetGrant>,
    plugin: &str,
    denials: &Denials,
) -> Result<Answer> {
    // Requests to an origin server carry only the path and query.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let limit = grant.max_request_bytes;
    // Whether the request went out whole: a connection whose request
    // body was cut short (the server answered early, the guest dropped
    // its body) is not kept, whatever became of its response.
    let sent_whole = Arc::new(AtomicBool::new(request.body().is_end_stream()));
    let whole = sent_whole.clone();
    let mut request = request.map(|body| CappedBody {
        inner: body,
        left: limit,
        too_big: || Error::HttpRequestBodySize(None),
        at_end: Some(Box::new(move || whole.store(true, Ordering::Release))),
    });
    let metrics = crate::metrics::get();
    // A kept connection the server has closed meanwhile hands the request
    // back unsent, and the next one (or a new one) carries it.
    let (sender, response) = loop {
        if let Some(mut kept) = grant.pool.take(&to.origin, &caller) {
            match kept.sender.try_send_request(request).await {
                Ok(response) => {
                    metrics.outbound_reused.inc();
                    break (kept.sender, response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(Error::from(e.into_error())),
                },
            }
        } else {
            let mut sender = connect(to, grant, plugin, denials).await?;
            metrics.outbound_connections.inc();
            let response = sender.send_request(request).await.map_err(Error::from)?;
            break (sender, response);
        }
    };
    let limit = grant.max_response_bytes;
    let (origin, grant) = (to.origin.clone(), grant.clone());
    // A response read to its end gives its connection back; one dropped
    // or failed before that takes it along (hyper closes it).
    let give_back = move || {
        if sent_whole.load(Ordering::Acquire) {
            grant.pool.give_back(origin, caller, sender);
        }
    };
    let (mut parts, body) = response.into_parts();
    if let Some(scrubber) = &scrubber {
        if let Some(why) = unreadable(&parts.headers, parts.status) {
            return Err(refuse(plugin, denials, &to.target, why));
        }
        // A session the upstream opens for the user's token is theirs.
        parts.headers.remove(http::header::SET_COOKIE);
        parts.headers.remove("set-cookie2");
        scrubber.mask_headers(&mut parts.headers);
    }
    let body = Scrubbed {
        inner: body,
        scrubber,
        trailers: None,
    };
    let response = http::Response::from_parts(parts, body).map(|body| {
        CappedBody {
            inner: body,
            left: limit,
            too_big: || Error::HttpResponseBodySize(None),
            at_end: Some(Box::new(give_back)),
        }
        .boxed_unsync()
    });
    tracing::debug!(plugin, target = to.target, "outbound request sent");
    // The connection's task outlives the request (it is kept alive), so
    // there is nothing of it for the caller to wait on.
    Ok((response, Box::new(async { Ok(()) })))
}

/// A new connection to `to`'s first granted address, over TLS for https.
async fn connect(
    to: &Destination,
    grant: &NetGrant,
    plugin: &str,
    denials: &Denials,
) -> Result<hyper::client::conn::http1::SendRequest<Outgoing>> {
    let addr = resolve(to, grant, plugin, denials).await?;
    let tcp = TcpStream::connect(addr).await.map_err(Error::Connect)?;
    let io: Box<dyn Io> = match to.origin.scheme {
        Scheme::Http => Box::new(tcp),
        Scheme::Https => {
            let name = match &to.origin.host {
                Host::Name(n) => {
                    ServerName::try_from(n.clone()).map_err(|_| Error::HttpRequestUriInvalid)?
                }
                Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            };
            Box::new(TLS.connect(name, tcp).await.map_err(Error::Tls)?)
        }
    };
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(Error::from)?;
    // The task ends when the connection closes: the server closes it, or
    // its sender is dropped (a response not read to the end, an idle
    // connection expired or pushed out).
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("an outbound connection ended: {e}");
        }
    });
    Ok(sender)
}

/// The address to connect to: the first resolved address that passes the
/// address check. Every refused address is logged.
async fn resolve(
    to: &Destination,
    grant: &NetGrant,
    plugin: &str,
    denials: &Denials,
) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = match &to.origin.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, to.origin.port)],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), to.origin.port))
            .await
            .map_err(|_| Error::DnsError {
                rcode: Some("address not found".into()),
                info_code: None,
            })?
            .collect(),
    };
    let mut chosen = None;
    for addr in addrs {
        let ip = canonical(addr.ip());
        if grant
            .allow
            .allows_address(to.origin.scheme, to.origin.port, ip)
        {
            chosen.get_or_insert(SocketAddr::new(ip, addr.port()));
        } else {
            let reason = special_range(ip).unwrap_or("special");
            tracing::warn!(
                plugin,
                target = to.target,
                address = %ip,
                reason,
                "outbound request refused: the name resolves to an address that is not granted"
            );
            note(
                denials,
                format!(
                    "http {}: resolves to {ip} ({reason}), not granted",
                    to.target
                ),
            );
        }
    }
    chosen.ok_or(Error::HttpRequestDenied)
}

/// A response body with a connection's credential masked wherever it
/// appears (see [`Scrubber`]); without a scrubber, the body as it is.
struct Scrubbed<B> {
    inner: B,
    scrubber: Option<Scrubber>,
    /// Trailers that came while masked bytes were still held back.
    trailers: Option<Frame<Bytes>>,
}

impl<B> Body for Scrubbed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        let Some(scrubber) = &mut this.scrubber else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        loop {
            return match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = scrubber.feed(&data);
                        if out.is_empty() {
                            continue;
                        }
                        Poll::Ready(Some(Ok(Frame::data(out.into()))))
                    }
                    Err(frame) => {
                        let trailers = match frame.into_trailers() {
                            Ok(mut trailers) => {
                                scrubber.mask_headers(&mut trailers);
                                Frame::trailers(trailers)
                            }
                            Err(frame) => frame,
                        };
                        let rest = scrubber.finish();
                        if rest.is_empty() {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        this.trailers = Some(trailers);
                        Poll::Ready(Some(Ok(Frame::data(rest.into()))))
                    }
                },
                Poll::Ready(None) => {
                    let rest = scrubber.finish();
                    match rest.is_empty() {
                        true => Poll::Ready(None),
                        false => Poll::Ready(Some(Ok(Frame::data(rest.into())))),
                    }
                }
                other => other,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailers.is_none()
            && self.scrubber.as_ref().is_none_or(|s| s.holds_nothing())
            && self.inner.is_end_stream()
    }
}

/// A body that fails with `too_big` once more than `left` bytes pass:
/// responses a plugin reads, and requests a plugin sends.
struct CappedBody<B> {
    inner: B,
    left: u64,
    too_big: fn() -> Error,
    /// Run once, when the body has ended cleanly (never after an error).
    at_end: Option<Box<dyn FnOnce() + Send>>,
}

impl<B> CappedBody<B> {
    fn end(&mut self) {
        if let Some(at_end) = self.at_end.take() {
            at_end();
        }
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    Error: From<B::Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > self.left {
                    self.at_end = None;
                    return Poll::Ready(Some(Err((self.too_big)())));
                }
                self.left -= len;
                if self.inner.is_end_stream() {
                    self.end();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.at_end = None;
                Poll::Ready(Some(Err(Error::from(e))))
            }
            Poll::Ready(None) => {
                self.end();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
