//! Components that do not speak `moat:plugin`: ordinary components with
//! WIT exports of their own, as the community publishes them. Every
//! exported function is a tool (`add` of a world, or `text.count` of an
//! exported interface `text`); its parameters give the input schema,
//! derived exactly from the WIT types, and its result the structured
//! output. Arguments are checked against that schema before the instance
//! exists, then lowered to component values; results are lifted to JSON.

use super::docs::Docs;
use serde_json::{Map, Value, json};
use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, Val};

/// One exported function, served as a tool.
#[derive(Clone)]
pub struct Function {
    /// The tool's name: the function's, after its interface's when it is
    /// in one.
    pub tool: String,
    /// Where it is among the component's exports.
    pub index: ComponentExportIndex,
    /// What it does, from its WIT's doc comment.
    pub description: Option<String>,
    /// Its parameters, by name.
    params: Vec<(String, Type)>,
    /// Its result, if it has one.
    result: Option<Type>,
    /// The input schema.
    pub input_schema: Value,
    /// The output schema (an object: a record as it is, anything else
    /// under `result`).
    pub output_schema: Option<Value>,
}

/// The functions of a component that exports no `moat:plugin` interface,
/// described by `docs`, or why it cannot be served.
pub fn functions(
    engine: &Engine,
    component: &Component,
    docs: &Docs,
) -> Result<Vec<Function>, String> {
    let mut functions = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                let index = component
                    .get_export_index(None, name)
                    .ok_or_else(|| format!("export `{name}` cannot be found"))?;
                let about = docs.get(None, name);
                functions.push(function(name.to_string(), about, index, &func)?);
            }
            ComponentItem::ComponentInstance(instance) => {
                // WASI's own exports (a command's `run`, an HTTP handler)
                // are entry points of other hosts, not tools.
                if name.starts_with("wasi:") {
                    continue;
                }
                let short = interface_name(name);
                let outer = component
                    .get_export_index(None, name)
                    .ok_or_else(|| format!("export `{name}` cannot be found"))?;
                for (inner, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty {
                        let index = component
                            .get_export_index(Some(&outer), inner)
                            .ok_or_else(|| format!("export `{name}#{inner}` cannot be found"))?;
                        let (tool, about) =
                            (format!("{short}.{inner}"), docs.get(Some(name), inner));
                        functions.push(function(tool, about, index, &func)?);
                    }
                }
            }
            _ => {}
        }
    }
    if functions.is_empty() {
        return Err("it exports no function to serve as a tool".into());
    }
    Ok(functions)
}

/// Whether values of `ty` may hold `flags`.
fn holds_flags(ty: &Type) -> bool {
    match ty {
        Type::Flags(_) => true,
        Type::List(list) => holds_flags(&list.ty()),
        Type::Option(option) => holds_flags(&option.ty()),
        Type::Result(result) => {
            result.ok().as_ref().is_some_and(holds_flags)
                || result.err().as_ref().is_some_and(holds_flags)
        }
        Type::Record(record) => record.fields().any(|f| holds_flags(&f.ty)),
        Type::Tuple(tuple) => tuple.types().any(|t| holds_flags(&t)),
        Type::Variant(variant) => variant
            .cases()
            .any(|c| c.ty.as_ref().is_some_and(holds_flags)),
        _ => false,
    }
}

/// `text` of `example:typed/text@1.0.0`.
fn interface_name(export: &str) -> &str {
    let path = export.rsplit('/').next().unwrap_or(export);
    path.split('@').next().unwrap_or(path)
}

fn function(
    tool: String,
    description: Option<&str>,
    index: ComponentExportIndex,
    func: &ComponentFunc,
) -> Result<Function, String> {
    let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_string(), t)).collect();
    let mut properties = Map::new();
    for (name, ty) in &params {
        let schema =
            schema(ty).map_err(|why| format!("function `{tool}`, parameter `{name}`: {why}"))?;
        properties.insert(name.clone(), schema);
    }
    let result = func.results().next();
    let output_schema = match &result {
        None => None,
        Some(ty) => {
            let why = |why| format!("function `{tool}`, its result: {why}");
            // A function's own `result` is unwrapped: its `ok` value is
            // the output, its `err` value an error result.
            let output = match ty {
                Type::Result(result) => match result.ok() {
                    Some(ok) => schema(&ok).map_err(why)?,
                    None => json!({ "type": "null" }),
                },
                ty => schema(ty).map_err(why)?,
            };
            if let Type::Result(result) = ty
                && let Some(err) = result.err()
            {
                schema(&err).map_err(why)?;
            }
            Some(match ty {
                Type::Record(_) => output,
                Type::Result(result) if matches!(result.ok(), Some(Type::Record(_))) => output,
                _ => json!({
                    "type": "object",
                    "properties": { "result": output },
                    "required": ["result"],
                    "additionalProperties": false,
                }),
            })
        }
    };
    Ok(Function {
        input_schema: json!({
            "type": "object",
            "properties": properties,
            "required": params.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "additionalProperties": false,
        }),
        tool,
        index,
        description: description.map(String::from),
        params,
        result,
        output_schema,
    })
}

/// The JSON Schema of values of `ty`, exact to its range.
pub fn schema(ty: &Type) -> Result<Value, String> {
    let integer =
        |min: i128, max: i128| json!({ "type": "integer", "minimum": min, "maximum": max });
    Ok(match ty {
        Type::Bool => json!({ "type": "boolean" }),
        Type::S8 => integer(i8::MIN.into(), i8::MAX.into()),
        Type::U8 => integer(0, u8::MAX.into()),
        Type::S16 => integer(i16::MIN.into(), i16::MAX.into()),
        Type::U16 => integer(0, u16::MAX.into()),
        Type::S32 => integer(i32::MIN.into(), i32::MAX.into()),
        Type::U32 => integer(0, u32::MAX.into()),
        Type::S64 => integer(i64::MIN.into(), i64::MAX.into()),
        Type::U64 => integer(0, u64::MAX.into()),
        // JSON has no NaN or infinities: they are written as strings.
        Type::Float32 | Type::Float64 => json!({ "anyOf": [
            { "type": "number" },
            { "enum": ["NaN", "Infinity", "-Infinity"] },
        ] }),
        Type::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        Type::String => json!({ "type": "string" }),
        // Bytes as an array of numbers: what the WIT says, and what every
        // JSON client can write without knowing an encoding.
        Type::List(list) => json!({ "type": "array", "items": schema(&list.ty())? }),
        Type::Record(record) => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for field in record.fields() {
                properties.insert(field.name.to_string(), schema(&field.ty)?);
                required.push(field.name.to_string());
            }
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
        Type::Tuple(tuple) => {
            let items: Vec<Value> = tuple
                .types()
                .map(|t| schema(&t))
                .collect::<Result<_, _>>()?;
            json!({ "type": "array", "prefixItems": items, "minItems": items.len(), "maxItems": items.len() })
        }
        Type::Variant(variant) => {
            let cases: Vec<Value> = variant
                .cases()
                .map(|case| {
                    Ok(match case.ty {
                        None => json!({ "const": case.name }),
                        Some(ty) => json!({
                            "type": "object",
                            "properties": { case.name: schema(&ty)? },
                            "required": [case.name],
                            "additionalProperties": false,
                        }),
                    })
                })
                .collect::<Result<_, String>>()?;
            json!({ "oneOf": cases })
        }
        Type::Enum(e) => json!({ "type": "string", "enum": e.names().collect::<Vec<_>>() }),
        // `null` is none; an option of an option writes its outer `some`
        // as `{"some": …}`, or the two nones could not be told apart.
        Type::Option(option) => match option.ty() {
            inner @ Type::Option(_) => json!({ "anyOf": [
                {
                    "type": "object",
                    "properties": { "some": schema(&inner)? },
                    "required": ["some"],
                    "additionalProperties": false,
                },
                { "type": "null" },
            ] }),
            inner => json!({ "anyOf": [schema(&inner)?, { "type": "null" }] }),
        },
        // Tagged like a variant of two cases, so that an `err` inside a
        // value can be told from an `ok` (a function's own result is
        // unwrapped, see `function`).
        Type::Result(result) => {
            let case = |name: &str, ty: Option<Type>| {
                Ok::<_, String>(match ty {
                    None => json!({ "const": name }),
                    Some(ty) => json!({
                        "type": "object",
                        "properties": { name: schema(&ty)? },
                        "required": [name],
                        "additionalProperties": false,
                    }),
                })
            };
            json!({ "oneOf": [case("ok", result.ok())?, case("err", result.err())?] })
        }
        Type::Flags(flags) => json!({
            "type": "array",
            "items": { "type": "string", "enum": flags.names().collect::<Vec<_>>() },
            "uniqueItems": true,
        }),
        Type::Own(_) | Type::Borrow(_) => {
            return Err(
                "a resource handle cannot be written in JSON; export functions of plain values"
                    .into(),
            );
        }
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err("async types (future, stream, error-context) are not served".into());
        }
        Type::Map(_) | Type::FixedLengthList(_) => {
            return Err(format!("the type {} is not served yet", type_name(ty)));
        }
    })
}

fn type_name(ty: &Type) -> &'static str {
    match ty {
        Type::Map(_) => "map",
        Type::FixedLengthList(_) => "fixed-length list",
        _ => "value",
    }
}

/// `value` (at `path`, a JSON pointer) as a component value of `ty`; `Err`
/// names the place and what is wrong. The schema was checked first, so
/// this only fails where JSON Schema cannot say it (such as a `char`).
pub fn lower(value: &Value, ty: &Type, path: &str) -> Result<Val, (String, String)> {
    let wrong = |why: &str| Err((path.to_string(), why.to_string()));
    // JSON Schema counts 3.0 as an integer, so it is one here too.
    let int = |value: &Value| {
        value
            .as_i64()
            .map(i128::from)
            .or(value.as_u64().map(i128::from))
            .or(value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e38)
                .map(|f| f as i128))
    };
    let float = |value: &Value| match value {
        Value::String(s) if s == "NaN" => Some(f64::NAN),
        Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
        v => v.as_f64(),
    };
    macro_rules! ranged {
        ($variant:ident, $t:ty) => {
            match int(value).and_then(|n| <$t>::try_from(n).ok()) {
                Some(n) => Ok(Val::$variant(n)),
                None => wrong(concat!("not an integer in the range of ", stringify!($t))),
            }
        };
    }
    match ty {
        Type::Bool => value
            .as_bool()
            .map(Val::Bool)
            .map_or_else(|| wrong("not a boolean"), Ok),
        Type::S8 => ranged!(S8, i8),
        Type::U8 => ranged!(U8, u8),
        Type::S16 => ranged!(S16, i16),
        Type::U16 => ranged!(U16, u16),
        Type::S32 => ranged!(S32, i32),
        Type::U32 => ranged!(U32, u32),
        Type::S64 => ranged!(S64, i64),
        Type::U64 => ranged!(U64, u64),
        Type::Float32 => match float(value) {
            Some(f) if f.is_finite() && (f as f32).is_infinite() => {
                wrong("a number outside the range of f32")
            }
            Some(f) => Ok(Val::Float32(f as f32)),
            None => wrong("not a number"),
        },
        Type::Float64 => float(value)
            .map(Val::Float64)
            .map_or_else(|| wrong("not a number"), Ok),
        Type::Char => {
            let mut chars = value.as_str().unwrap_or_default().chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Val::Char(c)),
                _ => wrong("not one character"),
            }
        }
        Type::String => value
            .as_str()
            .map(|s| Val::String(s.into()))
            .map_or_else(|| wrong("not a string"), Ok),
        Type::List(list) => {
            let Some(items) = value.as_array() else {
                return wrong("not an array");
            };
            let ty = list.ty();
            items
                .iter()
                .enumerate()
                .map(|(i, v)| lower(v, &ty, &format!("{path}/{i}")))
                .collect::<Result<_, _>>()
                .map(Val::List)
        }
        Type::Record(record) => {
            let Some(object) = value.as_object() else {
                return wrong("not an object");
            };
            record
                .fields()
                .map(|field| {
                    let at = format!("{path}/{}", field.name);
                    let value = object
                        .get(field.name)
                        .ok_or_else(|| (at.clone(), "missing".to_string()))?;
                    Ok((field.name.to_string(), lower(value, &field.ty, &at)?))
                })
                .collect::<Result<_, _>>()
                .map(Val::Record)
        }
        Type::Tuple(tuple) => {
            let Some(items) = value.as_array().filter(|a| a.len() == tuple.types().len()) else {
                return wrong(&format!("not an array of {} items", tuple.types().len()));
            };
            tuple
                .types()
                .zip(items)
                .enumerate()
                .map(|(i, (ty, v))| lower(v, &ty, &format!("{path}/{i}")))
                .collect::<Result<_, _>>()
                .map(Val::Tuple)
        }
        Type::Variant(variant) => {
            for case in variant.cases() {
                if let Some(payload) = lower_case(value, case.name, case.ty.as_ref(), path)? {
                    return Ok(Val::Variant(case.name.into(), payload));
                }
            }
            wrong("not one of the variant's cases")
        }
        Type::Result(result) => {
            if let Some(payload) = lower_case(value, "ok", result.ok().as_ref(), path)? {
                return Ok(Val::Result(Ok(payload)));
            }
            if let Some(payload) = lower_case(value, "err", result.err().as_ref(), path)? {
                return Ok(Val::Result(Err(payload)));
            }
            wrong("neither `ok` nor `err`")
        }
        Type::Enum(e) => match value.as_str() {
            Some(s) if e.names().any(|n| n == s) => Ok(Val::Enum(s.into())),
            _ => wrong("not one of the enum's names"),
        },
        Type::Option(option) => match (option.ty(), value) {
            (_, Value::Null) => Ok(Val::Option(None)),
            (inner @ Type::Option(_), v) => match lower_case(v, "some", Some(&inner), path)? {
                Some(payload) => Ok(Val::Option(payload)),
                None => wrong("neither null nor `some`"),
            },
            (inner, v) => Ok(Val::Option(Some(Box::new(lower(v, &inner, path)?)))),
        },
        Type::Flags(flags) => {
            let Some(items) = value.as_array() else {
                return wrong("not an array of flag names");
            };
            let mut names = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(s) if flags.names().any(|n| n == s) => names.push(s.to_string()),
                    _ => return wrong("not a flag of the type"),
                }
            }
            Ok(Val::Flags(names))
        }
        _ => wrong("not a type Moat lowers"),
    }
}

/// `value` as the case `name` of a variant (or a result): `Some` with its
/// payload when it is that case, `None` when it is another.
#[allow(clippy::type_complexity)]
fn lower_case(
    value: &Value,
    name: &str,
    ty: Option<&Type>,
    path: &str,
) -> Result<Option<Option<Box<Val>>>, (String, String)> {
    match (ty, value) {
        (None, Value::String(s)) if s == name => Ok(Some(None)),
        (Some(ty), Value::Object(o)) if o.len() == 1 && o.contains_key(name) => {
            let payload = lower(&o[name], ty, &format!("{path}/{name}"))?;
            Ok(Some(Some(Box::new(payload))))
        }
        _ => Ok(None),
    }
}

/// A result whose JSON is larger than the output cap: writing stopped at
/// `size` bytes.
#[derive(Debug)]
pub struct ResultTooLarge {
    /// Bytes written when writing stopped (more than the cap).
    pub size: usize,
}

impl std::fmt::Display for ResultTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the result is larger than {} bytes as JSON", self.size)
    }
}

impl std::error::Error for ResultTooLarge {}

/// JSON text written straight from component values, never more than
/// `limit` bytes: a result's host size stays that of its text, not of a
/// tree of JSON values (a small record is a map node of hundreds of bytes).
struct Writer {
    out: String,
    limit: usize,
}

impl Writer {
    fn push(&mut self, text: &str) -> Result<(), ResultTooLarge> {
        self.out.push_str(text);
        match self.out.len() > self.limit {
            true => Err(ResultTooLarge {
                size: self.out.len(),
            }),
            false => Ok(()),
        }
    }

    /// `text` as a JSON string.
    fn string(&mut self, text: &str) -> Result<(), ResultTooLarge> {
        self.push("\"")?;
        let mut plain = 0;
        for (i, c) in text.char_indices() {
            let escaped = match c {
                '"' => "\\\"".to_string(),
                '\\' => "\\\\".to_string(),
                '\n' => "\\n".to_string(),
                '\r' => "\\r".to_string(),
                '\t' => "\\t".to_string(),
                c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32),
                _ => continue,
            };
            self.push(&text[plain..i])?;
            self.push(&escaped)?;
            plain = i + c.len_utf8();
        }
        self.push(&text[plain..])?;
        self.push("\"")
    }

    /// A float: a JSON number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
    fn float(&mut self, f: f64, number: impl FnOnce() -> String) -> Result<(), ResultTooLarge> {
        match f {
            f if f.is_nan() => self.push("\"NaN\""),
            f if f == f64::INFINITY => self.push("\"Infinity\""),
            f if f == f64::NEG_INFINITY => self.push("\"-Infinity\""),
            _ => self.push(&number()),
        }
    }

    /// `val` as JSON, as [`schema`] describes it.
    fn value(&mut self, val: &Val) -> Result<(), ResultTooLarge> {
        match val {
            Val::Bool(b) => self.push(if *b { "true" } else { "false" }),
            Val::S8(n) => self.push(&n.to_string()),
            Val::U8(n) => self.push(&n.to_string()),
            Val::S16(n) => self.push(&n.to_string()),
            Val::U16(n) => self.push(&n.to_string()),
            Val::S32(n) => self.push(&n.to_string()),
            Val::U32(n) => self.push(&n.to_string()),
            Val::S64(n) => self.push(&n.to_string()),
            Val::U64(n) => self.push(&n.to_string()),
            // An f32 as its shortest decimal (0.1, not 0.10000000149…).
            Val::Float32(f) => self.float(f64::from(*f), || f.to_string()),
            Val::Float64(f) => self.float(*f, || Value::from(*f).to_string()),
            Val::Char(c) => self.string(c.encode_utf8(&mut [0; 4])),
            Val::String(s) => self.string(s),
            Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
                self.push("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(",")?;
                    }
                    self.value(item)?;
                }
                self.push("]")
            }
            Val::Record(fields) => {
                self.push("{")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.push(",")?;
                    }
                    self.string(name)?;
                    self.push(":")?;
                    self.value(value)?;
                }
                self.push("}")
            }
            Val::Variant(name, payload) => self.case(name, payload.as_deref()),
            Val::Enum(name) => self.string(name),
            Val::Option(None) => self.push("null"),
            Val::Option(Some(v)) => match **v {
                Val::Option(_) => self.case("some", Some(v)),
                _ => self.value(v),
            },
            Val::Result(Ok(v)) => self.case("ok", v.as_deref()),
            Val::Result(Err(v)) => self.case("err", v.as_deref()),
            Val::Flags(names) => {
                self.push("[")?;
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        self.push(",")?;
                    }
                    self.string(name)?;
                }
                self.push("]")
            }
            Val::Map(_)
            | Val::Resource(_)
            | Val::Future(_)
            | Val::Stream(_)
            | Val::ErrorContext(_) => self.push("null"),
        }
    }

    /// A case of a variant or result: its name, or an object of its name
    /// and payload.
    fn case(&mut self, name: &str, payload: Option<&Val>) -> Result<(), ResultTooLarge> {
        match payload {
            None => self.string(name),
            Some(v) => {
                self.push("{")?;
                self.string(name)?;
                self.push(":")?;
                self.value(v)?;
                self.push("}")
            }
        }
    }
}

/// What a call of a generic component answered, as the tool result's parts.
pub struct Answer {
    /// The text content: a string as it is, anything else as JSON.
    pub text: String,
    /// The structured content, for a successful result.
    pub structured: Option<String>,
    /// Whether it is an error (the `err` of the function's `result`).
    pub is_error: bool,
}

impl Function {
    /// The call's arguments as component values, in parameter order.
    pub fn arguments(&self, arguments: &Value) -> Result<Vec<Val>, (String, String)> {
        self.params
            .iter()
            .map(|(name, ty)| {
                let at = format!("/{name}");
                let value = arguments
                    .get(name)
                    .ok_or_else(|| (at.clone(), "missing".to_string()))?;
                lower(value, ty, &at)
            })
            .collect()
    }

    /// Room for the results.
    pub fn results(&self) -> Vec<Val> {
        self.result.iter().map(|_| Val::Bool(false)).collect()
    }

    /// What a call returned (an `err` of a `result` an error), written as
    /// JSON of at most `limit` bytes.
    pub fn answer(&self, results: &[Val], limit: usize) -> Result<Answer, ResultTooLarge> {
        let (value, is_error) = match results.first() {
            None => (None, false),
            Some(Val::Result(Ok(v))) => (v.as_deref(), false),
            Some(Val::Result(Err(v))) => (v.as_deref(), true),
            Some(val) => (Some(val), false),
        };
        let mut json = Writer {
            out: String::new(),
            limit,
        };
        match value {
            None => json.push("null")?,
            Some(v) => json.value(v)?,
        }
        let text = match value {
            Some(Val::String(s)) => s.clone(),
            _ => json.out.clone(),
        };
        let record = match &self.result {
            Some(Type::Record(_)) => true,
            Some(Type::Result(result)) => matches!(result.ok(), Some(Type::Record(_))),
            _ => false,
        };
        let structured = match (is_error, &self.result, record) {
            (true, _, _) => None,
            (false, None, _) => Some("{}".to_string()),
            (false, Some(_), true) => Some(json.out),
            (false, Some(_), false) => Some(format!("{{\"result\":{}}}", json.out)),
        };
        Ok(Answer {
            text,
            structured,
            is_error,
        })
    }

    /// The hostcall fuel of a call, from the call's budget in bytes: a
    /// `flags` value is lifted as a list of its names, each a host string
    /// wasmtime charges only its length for, so a result holding flags
    /// gets a share of the budget.
    pub fn hostcall_fuel(&self, budget: usize) -> usize {
        match self.result.as_ref().is_some_and(holds_flags) {
            true => budget / 48,
            false => budget / 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(val: &Val, limit: usize) -> Result<String, usize> {
        let mut json = Writer {
            out: String::new(),
            limit,
        };
        json.value(val).map(|()| json.out).map_err(|e| e.size)
    }

    #[test]
    fn values_are_written_as_the_schema_says_and_stop_at_the_limit() {
        let val = Val::Record(vec![
            ("text".into(), Val::String("a\"b\\\n\u{1}é".into())),
            ("nan".into(), Val::Float64(f64::NAN)),
            ("inf".into(), Val::Float32(f32::NEG_INFINITY)),
            ("third".into(), Val::Float32(0.1)),
            (
                "maybe".into(),
                Val::Option(Some(Box::new(Val::Option(None)))),
            ),
            ("r".into(), Val::Result(Err(None))),
            ("f".into(), Val::Flags(vec!["read".into()])),
        ]);
        let text = written(&val, 1 << 20).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({
                "text": "a\"b\\\n\u{1}é", "nan": "NaN", "inf": "-Infinity", "third": 0.1,
                "maybe": { "some": null }, "r": "err", "f": ["read"],
            })
        );
        let bytes = Val::List(vec![Val::U8(7); 1000]);
        assert_eq!(written(&bytes, 100), Err(101));
    }

    #[test]
    fn whole_floats_are_integers_and_non_finite_floats_are_named() {
        assert!(matches!(
            lower(&json!(3.0), &Type::U8, "/a"),
            Ok(Val::U8(3))
        ));
        assert!(lower(&json!(3.5), &Type::U8, "/a").is_err());
        assert!(lower(&json!(256.0), &Type::U8, "/a").is_err());
        assert!(
            matches!(lower(&json!("Infinity"), &Type::Float64, "/f"), Ok(Val::Float64(f)) if f == f64::INFINITY)
        );
        assert!(lower(&json!(1e300), &Type::Float32, "/f").is_err());
        assert!(lower(&json!("inf"), &Type::Float64, "/f").is_err());
    }
}
