//! Authentication and authorization over HTTP (issue 5, in progress).
//!
//! [`token`] validates bearer JWTs against an issuer's keys, and
//! [`policy`] decides which tools a caller may see and call, from the
//! scopes and roles its token carries; both are pure. [`keys`] fetches
//! and caches the issuer's keys. The HTTP layer (401/403 challenges,
//! protected-resource metadata) and tenants come next.

pub mod keys;
pub mod policy;
pub mod token;
