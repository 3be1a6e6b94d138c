//! Authentication and authorization over HTTP.
//!
//! [`token`] validates bearer JWTs against an issuer's keys (and names
//! resource URIs and their metadata paths), and [`policy`] decides which
//! tools a caller may see and call, from the scopes and roles its token
//! carries; both are pure. [`keys`] fetches and caches the issuer's keys,
//! and [`endpoint`] puts them together for one protected MCP endpoint:
//! authenticate a request, authorize a tool, build the challenge or the
//! RFC 9728 metadata. [`AuthConfig`] is what `[auth]` parses into.

pub mod endpoint;
pub mod keys;
pub mod policy;
pub mod token;

use policy::Policy;
use std::time::Duration;
use token::TokenRules;

/// A validated `[auth]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// What tokens must satisfy.
    pub token: TokenRules,
    /// Where the issuer's keys are; `None`: discovered from its metadata.
    pub jwks_uri: Option<String>,
    /// Authorization servers advertised in the protected-resource metadata.
    pub authorization_servers: Vec<String>,
    /// Scopes advertised in the metadata and in challenges.
    pub scopes_supported: Vec<String>,
    /// Scopes a 401 asks for: what a client needs to start. Clients that
    /// follow the MCP specification request exactly these, and more on a
    /// 403 (step-up); default: every supported scope.
    pub challenge_scopes: Vec<String>,
    /// The least time between two fetches of the keys for an unknown `kid`.
    pub jwks_refetch_interval: Duration,
    /// Which tools each caller may use.
    pub policy: Policy,
    /// Moat as an OpenID Connect client of the issuer, to check that the
    /// person finishing a connect link in a browser is the caller it was
    /// made for (`[auth.sign_in]`).
    pub sign_in: Option<SignIn>,
}

/// `[auth.sign_in]`: Moat's client registration at the issuer.
#[derive(Clone, PartialEq, Eq)]
pub struct SignIn {
    /// Moat's client ID there.
    pub client_id: String,
    /// Its secret, for a confidential client.
    pub client_secret: Option<String>,
    /// Where browsers sign in; `None`: from the issuer's metadata.
    pub authorization_endpoint: Option<String>,
    /// Where codes are exchanged; `None`: from the issuer's metadata.
    pub token_endpoint: Option<String>,
}

impl std::fmt::Debug for SignIn {
    /// Without the client secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("client_id", &self.client_id)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .finish_non_exhaustive()
    }
}
