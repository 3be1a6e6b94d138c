//! Turns malformed request bodies into the JSON-RPC errors the
//! specification prescribes, before they reach the MCP service: invalid
//! JSON is a parse error (-32700), JSON that is not one JSON-RPC 2.0
//! message is an invalid request (-32600), and an oversized body is 413.
//! The same single parse also finds the tool a `tools/call` names and its
//! arguments, which admission needs before the MCP service runs.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rmcp::model::RequestId;
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::fmt;

/// A POST body that is one JSON-RPC message.
pub struct Checked {
    /// The body.
    pub bytes: Bytes,
    /// The tool it calls and the arguments, when it is a `tools/call`
    /// whose arguments are an object (or absent).
    pub call: Option<ToolCall>,
    /// Whether it is an `initialize` request (it opens a session).
    pub initialize: bool,
    /// Whether it is a `subscriptions/listen` request (a stream that lasts
    /// until the client or the server closes it).
    pub listen: bool,
    /// The ID of a `tools/call` whose params hold its `name` and
    /// `arguments` and nothing else (no `_meta`, no round-trip state), as
    /// rmcp would read it: a call the transport may answer itself.
    pub plain: Option<RequestId>,
}

/// The tool a `tools/call` names and its arguments.
pub type ToolCall = (String, Map<String, Value>);

/// Reads the checked body of a POST, or the error response for it.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<Checked, Response> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: the request body exceeds {limit} bytes\n"),
        )
            .into_response()
    })?;
    match inspect(&bytes) {
        Ok(found) => Ok(Checked {
            bytes,
            initialize: found.kind == Some(Kind::Initialize),
            listen: found.kind == Some(Kind::Listen),
            call: found.call,
            plain: found.plain,
        }),
        Err((code, message)) => {
            let error = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
            Err((StatusCode::BAD_REQUEST, axum::Json(error)).into_response())
        }
    }
}

/// Requests the transport treats apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Initialize,
    Listen,
}

/// What a body that is one JSON-RPC message was found to be.
#[derive(Debug, PartialEq)]
struct Inspected {
    /// The tool and arguments, if it is a `tools/call`.
    call: Option<ToolCall>,
    /// Whether it is an `initialize` or a `subscriptions/listen`.
    kind: Option<Kind>,
    /// See [`Checked::plain`].
    plain: Option<RequestId>,
}

/// What a body that is one JSON-RPC message is, else the JSON-RPC error
/// code and message for it.
fn inspect(bytes: &[u8]) -> Result<Inspected, (i32, String)> {
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(shape) => match shape.problem() {
            Some(why) => Err((-32600, format!("Invalid Request: {why}"))),
            None => {
                let kind = if shape.is("initialize") {
                    Some(Kind::Initialize)
                } else if shape.is("subscriptions/listen") {
                    Some(Kind::Listen)
                } else {
                    None
                };
                let plain = shape.plain();
                Ok(Inspected {
                    call: shape.call(),
                    kind,
                    plain,
                })
            }
        },
        // Not an object of the right shape: tell invalid JSON from valid
        // JSON of another shape.
        Err(e) => Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
            Err(_) => (-32700, format!("Parse error: the body is not valid JSON ({e})")),
            Ok(_) => (
                -32600,
                "Invalid Request: the body must be one JSON-RPC 2.0 message, a JSON object (batches are not supported)".into(),
            ),
        }),
    }
}

/// The members that decide whether an object is a JSON-RPC message, and
/// the tool it calls, parsed without building a value tree: this runs on
/// every request.
#[derive(Deserialize)]
struct Shape {
    jsonrpc: Option<Version>,
    /// Present on requests; a `tools/call` without one is a notification,
    /// which rmcp never runs.
    id: Option<Value>,
    method: Option<Method>,
    params: Option<CallParams>,
    #[serde(default, deserialize_with = "member")]
    result: Member,
    #[serde(default, deserialize_with = "member")]
    error: Member,
}

/// Whether an object has a member, and whether its value is `null`
/// (serde reads a `null` as an absent `Option`; rmcp tells them apart).
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Member {
    #[default]
    Absent,
    Null,
    Present,
}

fn member<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Member, D::Error> {
    Ok(match Option::<IgnoredAny>::deserialize(d)? {
        None => Member::Null,
        Some(_) => Member::Present,
    })
}

/// Whether a value was the string "2.0".
struct Version(bool);

/// The method, when the value was a string.
struct Method(Option<String>);

/// The `name` and `arguments` members of `params`, when it is an object;
/// any other value is accepted (other methods' params vary).
#[derive(Default)]
struct CallParams {
    name: Option<String>,
    arguments: Option<Value>,
    /// Whether it is an object holding each of `name` and `arguments` at
    /// most once, and nothing else.
    only_call: bool,
}

impl<'de> Deserialize<'de> for CallParams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = CallParams;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CallParams, A::Error> {
                let mut params = CallParams {
                    only_call: true,
                    ..CallParams::default()
                };
                let (mut named, mut argued) = (false, false);
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "name" => {
                            params.only_call &= !std::mem::replace(&mut named, true);
                            params.name = map.next_value::<Value>()?.as_str().map(str::to_string)
                        }
                        "arguments" => {
                            params.only_call &= !std::mem::replace(&mut argued, true);
                            params.arguments = Some(map.next_value()?)
                        }
                        _ => {
                            params.only_call = false;
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(params)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CallParams, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(CallParams::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<CallParams, E> {
                Ok(CallParams::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<CallParams, E> {
                Ok(CallParams::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<CallParams, E> {
                Ok(CallParams::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<CallParams, E> {
                Ok(CallParams::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<CallParams, E> {
                Ok(CallParams::default())
            }
            fn visit_unit<E>(self) -> Result<CallParams, E> {
                Ok(CallParams::default())
            }
        }
        d.deserialize_any(Names)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Version(serde_json::Value::deserialize(d)? == "2.0"))
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Method(match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(method) => Some(method),
            _ => None,
        }))
    }
}

impl Shape {
    fn problem(&self) -> Option<&'static str> {
        if !self.jsonrpc.as_ref().is_some_and(|v| v.0) {
            return Some("`jsonrpc` must be \"2.0\"");
        }
        let is_call = self.method.as_ref().is_some_and(|m| m.0.is_some());
        if !is_call && self.result != Member::Present && self.error != Member::Present {
            return Some("a message needs a string `method`, or a `result` or `error`");
        }
        None
    }

    fn is(&self, method: &str) -> bool {
        self.method.as_ref().and_then(|m| m.0.as_deref()) == Some(method)
    }

    /// The ID of a plain `tools/call` (see [`Checked::plain`]): a string
    /// or a whole number that fits rmcp's `i64`, params of its two members
    /// only, and no `result` or `error` beside the `method`.
    fn plain(&self) -> Option<RequestId> {
        let params = self.params.as_ref()?;
        if !self.is("tools/call")
            || !params.only_call
            || self.result != Member::Absent
            || self.error != Member::Absent
        {
            return None;
        }
        match self.id.as_ref()? {
            Value::String(id) => Some(RequestId::String(id.as_str().into())),
            Value::Number(id) => id.as_i64().map(RequestId::Number),
            _ => None,
        }
    }

    fn call(self) -> Option<ToolCall> {
        if self.method?.0? != "tools/call" || self.id.is_none() {
            return None;
        }
        let params = self.params?;
        let arguments = match params.arguments {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(arguments)) => arguments,
            // Not a call MCP allows; the MCP service answers it.
            Some(_) => return None,
        };
        Some((params.name?, arguments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_jsonrpc_messages_pass() {
        let ok = [
            r#"{ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }"#,
            r#"{ "jsonrpc": "2.0", "method": "notifications/initialized" }"#,
            r#"{ "jsonrpc": "2.0", "id": 1, "result": {} }"#,
        ];
        for body in ok {
            let found = inspect(body.as_bytes()).unwrap();
            assert_eq!((found.call, found.kind), (None, None), "{body}");
        }
        let told_apart = [
            (
                r#"{ "jsonrpc": "2.0", "id": 1, "method": "initialize" }"#,
                Kind::Initialize,
            ),
            (
                r#"{ "jsonrpc": "2.0", "id": 2, "method": "subscriptions/listen" }"#,
                Kind::Listen,
            ),
        ];
        for (body, kind) in told_apart {
            assert_eq!(
                inspect(body.as_bytes()).map(|found| found.kind),
                Ok(Some(kind)),
                "{body}"
            );
        }
        let bad = [
            (
                r#"[{ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }]"#,
                -32600,
            ),
            (r#""tools/list""#, -32600),
            (r#"{ "id": 1, "method": "tools/list" }"#, -32600),
            (
                r#"{ "jsonrpc": "1.0", "id": 1, "method": "tools/list" }"#,
                -32600,
            ),
            (r#"{ "jsonrpc": "2.0", "id": 1, "method": 7 }"#, -32600),
            (r#"{ "jsonrpc": "2.0", "id": 1 }"#, -32600),
            (r#"{ "jsonrpc": "2.0", "id": 1, "method""#, -32700),
            ("not json", -32700),
        ];
        for (body, code) in bad {
            assert_eq!(
                inspect(body.as_bytes()).map_err(|p| p.0),
                Err(code),
                "{body}"
            );
        }
    }

    #[test]
    fn the_tool_and_arguments_of_a_call_are_found_in_the_same_parse() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"name":"x"},"name":"files.read"}}"#,
                Some(("files.read", json!({ "name": "x" }))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello.greet"}}"#,
                Some(("hello.greet", json!({}))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello.greet","arguments":null}}"#,
                Some(("hello.greet", json!({}))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello.greet","arguments":[1]}}"#,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
                None,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, None),
            (
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"hello.greet"}}"#,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x/y","params":[1,"a",{"name":"n"}]}"#,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x/y","params":"s"}"#,
                None,
            ),
        ];
        for (body, call) in cases {
            let expected = call.map(|(tool, arguments)| {
                let Value::Object(arguments) = arguments else {
                    unreachable!()
                };
                (tool.to_string(), arguments)
            });
            assert_eq!(
                inspect(body.as_bytes()).map(|found| found.call),
                Ok(expected),
                "{body}"
            );
        }
    }

    #[test]
    fn only_a_call_of_name_and_arguments_with_a_plain_id_is_plain() {
        let call = |id: &str, params: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#)
        };
        let plain = [
            (call("7", r#"{"name":"a.b"}"#), RequestId::Number(7)),
            (
                call(r#""x-1""#, r#"{"name":"a.b","arguments":{"k":1}}"#),
                RequestId::String("x-1".into()),
            ),
            (
                call("-3", r#"{"arguments":null,"name":"a.b"}"#),
                RequestId::Number(-3),
            ),
        ];
        for (body, id) in plain {
            assert_eq!(inspect(body.as_bytes()).unwrap().plain, Some(id), "{body}");
        }
        let not_plain = [
            call("1", r#"{"name":"a.b","_meta":{}}"#),
            call("1", r#"{"name":"a.b","_meta":{"progressToken":1}}"#),
            call("1", r#"{"name":"a.b","requestState":"s"}"#),
            call("1", r#"{"name":"a.b","inputResponses":{}}"#),
            call("1", r#"{"name":"a.b","task":{}}"#),
            call("1", r#"{"name":"a.b","name":"c.d"}"#),
            call("1", r#"{"name":"a.b","arguments":{},"arguments":{}}"#),
            call("1.5", r#"{"name":"a.b"}"#),
            call("18446744073709551615", r#"{"name":"a.b"}"#),
            call("null", r#"{"name":"a.b"}"#),
            call("[1]", r#"{"name":"a.b"}"#),
            call("1", r#"[1]"#),
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a.b"}}"#.into(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"a.b"}}"#.into(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b"},"result":{}}"#
                .into(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b"},"result":null}"#
                .into(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a.b"},"error":null}"#
                .into(),
        ];
        for body in not_plain {
            assert_eq!(inspect(body.as_bytes()).unwrap().plain, None, "{body}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, a few levels deep.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    prop::collection::btree_map("[a-z]{0,8}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// No body panics the reader, and a refusal is a parse error or
            /// an invalid request.
            #[test]
            fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                if let Err((code, _)) = inspect(&bytes) {
                    prop_assert!(code == -32700 || code == -32600);
                }
            }

            /// Any JSON, and any cut of a message, is read or refused.
            #[test]
            fn any_json_is_read_or_refused(value in json_value(), cut in any::<prop::sample::Index>()) {
                if let Err((code, _)) = inspect(value.to_string().as_bytes()) {
                    prop_assert!(code == -32700 || code == -32600);
                }
                let message = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": value });
                let text = message.to_string();
                let _ = inspect(&text.as_bytes()[..cut.index(text.len() + 1)]);
            }

            /// The tool and arguments of a `tools/call` read back as sent.
            #[test]
            fn a_tools_call_reads_back(
                name in "\\PC{0,40}",
                id in any::<i64>(),
                arguments in prop::collection::btree_map("\\PC{1,8}", json_value(), 0..5),
            ) {
                let arguments: Map<String, Value> = arguments.into_iter().collect();
                let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": { "name": name, "arguments": arguments } });
                let found = inspect(body.to_string().as_bytes()).unwrap();
                prop_assert_eq!(found.call, Some((name, arguments)));
                prop_assert_eq!(found.kind, None);
                prop_assert_eq!(found.plain, Some(RequestId::Number(id)));
            }
        }
    }
}
