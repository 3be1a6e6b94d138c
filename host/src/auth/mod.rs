//! Authentication and authorization over HTTP (issue 5, in progress).
//!
//! [`token`] validates bearer JWTs against an issuer's keys, and
//! [`policy`] decides which tools a caller may see and call, from the
//! scopes and roles its token carries; both are pure. [`keys`] fetches
//! and caches the issuer's keys, and [`endpoint`] puts them together for
//! one protected MCP endpoint: authenticate a request, authorize a tool,
//! build the challenge or the RFC 9728 metadata. Tenants come next.

pub mod endpoint;
pub mod keys;
pub mod policy;
pub mod token;
