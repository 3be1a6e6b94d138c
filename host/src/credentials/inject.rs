//! Where a connection's credential goes in an outgoing request, what of
//! the plugin's own is taken out first, and how the credential is kept out
//! of what comes back. Pure: headers, paths and bytes in and out.

use aho_corasick::{AhoCorasick, MatchKind};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Where a connection's credential goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inject {
    /// A header, its value `format` with `{token}` replaced.
    Header {
        /// The header's name.
        name: HeaderName,
        /// The value, with `{token}` exactly once.
        format: String,
    },
    /// A query parameter of this name.
    Query(String),
}

/// Headers a plugin may not send to a connection's host: with the user's
/// credential added, a credential of the plugin's own (or a cookie) would
/// make the upstream act for someone else; an encoding (`TE`) could carry
/// the credential back past the [`Scrubber`], and a range could return it
/// in pieces no scrubber recognises.
const PLUGIN_CREDENTIALS: [HeaderName; 6] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    http::header::TE,
    http::header::RANGE,
    http::header::IF_RANGE,
];

/// The credential could not be put in a request (a secret with a line
/// break or other bytes no header may carry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored credential cannot be sent in a header")]
pub struct Unsendable;

impl Inject {
    /// Takes the plugin's credentials out of `headers` and the query of
    /// `path` (a path and query), and puts `secret` in where this says.
    /// Returns the path to send.
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        path: &str,
        secret: &str,
    ) -> Result<String, Unsendable> {
        for name in &PLUGIN_CREDENTIALS {
            headers.remove(name);
        }
        // A compressed answer could carry the credential past [`Scrubber`].
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        match self {
            Inject::Header { name, format } => {
                let mut value = HeaderValue::from_str(&format.replace("{token}", secret))
                    .map_err(|_| Unsendable)?;
                // Kept out of hyper's debug output and HPACK tables.
                value.set_sensitive(true);
                headers.remove(name);
                headers.insert(name.clone(), value);
                Ok(path.to_string())
            }
            Inject::Query(param) => {
                let (base, query) = path.split_once('?').unwrap_or((path, ""));
                let mut out = url::form_urlencoded::Serializer::new(String::new());
                for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
                    if key != param.as_str() {
                        out.append_pair(&key, &value);
                    }
                }
                out.append_pair(param, secret);
                Ok(format!("{base}?{}", out.finish()))
            }
        }
    }
}

/// Masks a secret wherever it appears in a stream of chunks, also across
/// chunk boundaries: an upstream that echoes requests (as debugging
/// endpoints do, and redirects and links that repeat a query) must not
/// hand the plugin the credential it was sent. It looks for every
/// spelling the secret may come back in: as sent, percent-encoded (upper
/// and lower case, `+` or `%20` for spaces) and JSON-escaped. Each byte of
/// a match becomes `*`, so lengths do not change.
pub struct Scrubber {
    spellings: AhoCorasick,
    /// The longest spelling's length less one: what may be the start of a
    /// match at the end of a chunk.
    overlap: usize,
    /// The end of the stream so far, which may be the start of a match.
    carry: Vec<u8>,
}

impl Scrubber {
    /// A scrubber of `secret`; `None` for an empty one, which is never
    /// sent.
    pub fn new(secret: &str) -> Option<Scrubber> {
        if secret.is_empty() {
            return None;
        }
        let mut spellings = vec![secret.to_string()];
        let percent = |upper: bool, space: &str| -> String {
            secret
                .bytes()
                .map(|b| match b {
                    b' ' => space.to_string(),
                    b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                        (b as char).to_string()
                    }
                    b if upper => format!("%{b:02X}"),
                    b => format!("%{b:02x}"),
                })
                .collect()
        };
        spellings.push(percent(true, "+"));
        spellings.push(percent(true, "%20"));
        spellings.push(percent(false, "+"));
        spellings.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        let json = serde_json::to_string(secret).expect("a string serialises");
        let json = json[1..json.len() - 1].to_string();
        spellings.push(json.replace('/', "\\/"));
        spellings.push(json);
        spellings.sort();
        spellings.dedup();
        let overlap = spellings.iter().map(String::len).max().unwrap_or(1) - 1;
        let spellings = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&spellings)
            .expect("a few short patterns");
        Some(Scrubber {
            spellings,
            overlap,
            carry: Vec::new(),
        })
    }

    /// What of the stream, with `chunk` added, can be passed on.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(chunk);
        self.mask(&mut bytes);
        let keep = bytes.len().min(self.overlap);
        self.carry = bytes.split_off(bytes.len() - keep);
        bytes
    }

    /// The rest of the stream, at its end.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    /// Whether no bytes are held back.
    pub fn holds_nothing(&self) -> bool {
        self.carry.is_empty()
    }

    /// `bytes` with every match masked: a whole header value, say.
    pub fn mask(&self, bytes: &mut [u8]) {
        let found: Vec<_> = self
            .spellings
            .find_iter(&*bytes)
            .map(|m| m.range())
            .collect();
        for range in found {
            bytes[range].fill(b'*');
        }
    }

    /// `headers` with every match in their values masked.
    pub fn mask_headers(&self, headers: &mut HeaderMap) {
        for value in headers.values_mut() {
            if self.spellings.is_match(value.as_bytes()) {
                let mut bytes = value.as_bytes().to_vec();
                self.mask(&mut bytes);
                *value = HeaderValue::from_bytes(&bytes).expect("`*` is a header byte");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_header_credential_replaces_whatever_the_plugin_set() {
        let bearer = Inject::Header {
            name: http::header::AUTHORIZATION,
            format: "Bearer {token}".into(),
        };
        let mut h = headers(&[
            ("authorization", "Bearer plugin-own"),
            ("Authorization", "Basic second"),
            ("cookie", "session=plugin"),
            ("proxy-authorization", "x"),
            ("accept", "application/json"),
        ]);
        let path = bearer.apply(&mut h, "/user?x=1", "gho_user").unwrap();
        assert_eq!(path, "/user?x=1");
        let auth: Vec<_> = h.get_all("authorization").iter().collect();
        assert_eq!(auth, ["Bearer gho_user"]);
        assert!(auth[0].is_sensitive());
        assert!(h.get("cookie").is_none() && h.get("proxy-authorization").is_none());
        assert_eq!(h["accept"], "application/json");

        let named = Inject::Header {
            name: HeaderName::from_static("x-api-key"),
            format: "{token}".into(),
        };
        let mut h = headers(&[("x-api-key", "plugin"), ("authorization", "mine")]);
        named.apply(&mut h, "/", "key-1").unwrap();
        assert_eq!(h["x-api-key"], "key-1");
        assert!(h.get("authorization").is_none());

        // A secret that would split the header is not sent.
        assert_eq!(
            named.apply(&mut HeaderMap::new(), "/", "a\r\nX-Evil: 1"),
            Err(Unsendable)
        );
    }

    #[test]
    fn a_query_credential_replaces_the_plugins_parameter_of_that_name() {
        let query = Inject::Query("api_key".into());
        let mut h = headers(&[("authorization", "Bearer plugin")]);
        assert_eq!(
            query
                .apply(&mut h, "/v1/items?api_key=mine&q=a+b&api_key=again", "k&=1")
                .unwrap(),
            "/v1/items?q=a+b&api_key=k%26%3D1"
        );
        assert!(h.get("authorization").is_none());
        assert_eq!(query.apply(&mut h, "/", "k").unwrap(), "/?api_key=k");
        assert_eq!(h["accept-encoding"], "identity");
    }

    #[test]
    fn a_secret_is_masked_wherever_the_stream_splits_it() {
        let secret = "gho_SECRET";
        let text = format!("{{\"auth\":\"Bearer {secret}\",\"again\":\"{secret}{secret}\"}}x");
        let expected = text.replace(secret, &"*".repeat(secret.len()));
        // Every split into two chunks, and one byte at a time.
        for split in 0..=text.len() {
            let mut s = Scrubber::new(secret).unwrap();
            let mut out = s.feed(&text.as_bytes()[..split]);
            out.extend(s.feed(&text.as_bytes()[split..]));
            out.extend(s.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected,
                "split at {split}"
            );
        }
        let mut s = Scrubber::new(secret).unwrap();
        let mut out: Vec<u8> = text.bytes().flat_map(|b| s.feed(&[b])).collect();
        out.extend(s.finish());
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        let mut headers = headers(&[("x-echo", "Bearer gho_SECRET"), ("other", "fine")]);
        Scrubber::new(secret).unwrap().mask_headers(&mut headers);
        assert_eq!(headers["x-echo"], "Bearer **********");
        assert_eq!(headers["other"], "fine");
        assert!(Scrubber::new("").is_none());
    }

    #[test]
    fn a_secret_is_masked_in_every_spelling_it_comes_back_in() {
        let secret = "a+b/c= d";
        let s = Scrubber::new(secret).unwrap();
        for spelled in [
            "a+b/c= d",
            "a%2Bb%2Fc%3D+d",
            "a%2Bb%2Fc%3D%20d",
            "a%2bb%2fc%3d+d",
            "a+b\\/c= d",
        ] {
            let mut bytes = format!("x{spelled}y").into_bytes();
            s.mask(&mut bytes);
            let masked = String::from_utf8(bytes).unwrap();
            assert_eq!(
                masked,
                format!("x{}y", "*".repeat(spelled.len())),
                "{spelled}"
            );
        }
    }
}
