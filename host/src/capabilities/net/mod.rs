//! Network: outbound HTTP only to granted hosts (issue 4, in progress).
//! [`allow`] is the allow-list itself: parsed once, matched per request,
//! on the URL and again on every address a name resolves to.

pub mod allow;
