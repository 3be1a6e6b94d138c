//! Components that do not speak `moat:plugin`: ordinary components with
//! WIT exports of their own, as the community publishes them. Every
//! exported function is a tool (`add` of a world, or `text.count` of an
//! exported interface `text`); its parameters give the input schema,
//! derived exactly from the WIT types, and its result the structured
//! output. Arguments are checked against that schema before the instance
//! exists, then lowered to component values; results are lifted to JSON.

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
/// or why it cannot be served.
pub fn functions(engine: &Engine, component: &Component) -> Result<Vec<Function>, String> {
    let mut functions = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                let index = component
                    .get_export_index(None, name)
                    .ok_or_else(|| format!("export `{name}` cannot be found"))?;
                functions.push(function(name.to_string(), index, &func)?);
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
                        functions.push(function(format!("{short}.{inner}"), index, &func)?);
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

/// `text` of `example:typed/text@1.0.0`.
fn interface_name(export: &str) -> &str {
    let path = export.rsplit('/').next().unwrap_or(export);
    path.split('@').next().unwrap_or(path)
}

fn function(
    tool: String,
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
        Type::Float32 | Type::Float64 => json!({ "type": "number" }),
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
    let int = |value: &Value| {
        value
            .as_i64()
            .map(i128::from)
            .or(value.as_u64().map(i128::from))
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
        Type::Float32 => value
            .as_f64()
            .map(|f| Val::Float32(f as f32))
            .map_or_else(|| wrong("not a number"), Ok),
        Type::Float64 => value
            .as_f64()
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

/// `val` as JSON, as [`schema`] describes it.
pub fn lift(val: &Val) -> Value {
    match val {
        Val::Bool(b) => json!(b),
        Val::S8(n) => json!(n),
        Val::U8(n) => json!(n),
        Val::S16(n) => json!(n),
        Val::U16(n) => json!(n),
        Val::S32(n) => json!(n),
        Val::U32(n) => json!(n),
        Val::S64(n) => json!(n),
        Val::U64(n) => json!(n),
        Val::Float32(f) => json!(f),
        Val::Float64(f) => json!(f),
        Val::Char(c) => json!(c.to_string()),
        Val::String(s) => json!(s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(lift).collect())
        }
        Val::Record(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), lift(v))).collect())
        }
        Val::Variant(name, payload) => case(name, payload.as_deref()),
        Val::Enum(name) => json!(name),
        Val::Option(None) => Value::Null,
        Val::Option(Some(v)) => match **v {
            Val::Option(_) => case("some", Some(v)),
            _ => lift(v),
        },
        Val::Result(Ok(v)) => case("ok", v.as_deref()),
        Val::Result(Err(v)) => case("err", v.as_deref()),
        Val::Flags(names) => json!(names),
        Val::Map(_) | Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            Value::Null
        }
    }
}

/// A case of a variant or result: its name, or an object of its name and
/// payload.
fn case(name: &str, payload: Option<&Val>) -> Value {
    match payload {
        None => json!(name),
        Some(v) => json!({ name: lift(v) }),
    }
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

    /// What a call returned, lifted (an `err` of a `result` its error
    /// value), and whether it is an error.
    pub fn answer(&self, results: &[Val]) -> (Value, bool) {
        match results.first() {
            None => (Value::Null, false),
            Some(Val::Result(Ok(v))) => (v.as_deref().map_or(Value::Null, lift), false),
            Some(Val::Result(Err(v))) => (v.as_deref().map_or(Value::Null, lift), true),
            Some(val) => (lift(val), false),
        }
    }

    /// A successful result as the structured output its schema describes.
    pub fn structured(&self, value: Value) -> Value {
        match &self.result {
            None => json!({}),
            Some(Type::Record(_)) => value,
            Some(Type::Result(result)) if matches!(result.ok(), Some(Type::Record(_))) => value,
            Some(_) => json!({ "result": value }),
        }
    }
}
