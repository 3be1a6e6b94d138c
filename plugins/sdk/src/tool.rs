//! A tool: its description and a type-erased handler.

use crate::bindings::moat::plugin::types::{Annotations, CallError, CallResult, Tool as WitTool};
use crate::output::IntoOutput;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

type Handler = Box<dyn Fn(&str) -> Result<CallResult, CallError>>;

/// One tool of a plugin. Build it with [`Tool::new`] and the builder methods.
pub struct Tool {
    pub(crate) name: &'static str,
    title: Option<&'static str>,
    description: &'static str,
    // Schemas are functions, not strings: they are only needed by `describe`,
    // which runs once at load, never on the call path.
    input_schema: fn() -> String,
    output_schema: fn() -> Option<String>,
    annotations: Annotations,
    arena: bool,
    handler: Handler,
}

impl Tool {
    /// A tool named `name` (letters, digits, `_`, `-`) that runs `handler`.
    ///
    /// The handler's argument type defines the input schema (doc comments on
    /// its fields become descriptions); its return type decides the content
    /// (see [`IntoOutput`]).
    pub fn new<A, R>(
        name: &'static str,
        description: &'static str,
        handler: impl Fn(A) -> R + 'static,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema,
        R: IntoOutput,
    {
        Tool {
            name,
            title: None,
            description,
            input_schema: schema_of::<A>,
            output_schema: R::output_schema,
            annotations: Annotations {
                read_only: None,
                destructive: None,
                idempotent: None,
                open_world: None,
            },
            arena: false,
            handler: Box::new(move |arguments| {
                let args: A = serde_json::from_str(arguments)
                    .map_err(|e| CallError::InvalidArguments(e.to_string()))?;
                Ok(handler(args).into_output().into_wit())
            }),
        }
    }

    /// A short human-readable title.
    pub fn title(mut self, title: &'static str) -> Self {
        self.title = Some(title);
        self
    }

    /// Marks the tool as not modifying anything.
    pub fn read_only(mut self) -> Self {
        self.annotations.read_only = Some(true);
        self.annotations.destructive = Some(false);
        self
    }

    /// Marks the tool as possibly destructive.
    pub fn destructive(mut self) -> Self {
        self.annotations.read_only = Some(false);
        self.annotations.destructive = Some(true);
        self
    }

    /// Marks the tool as safe to repeat with the same arguments.
    pub fn idempotent(mut self) -> Self {
        self.annotations.idempotent = Some(true);
        self
    }

    /// Marks the tool as reaching an open world (for example the web).
    pub fn open_world(mut self) -> Self {
        self.annotations.open_world = Some(true);
        self
    }

    /// Runs this tool's calls on the [`Arena`](crate::Arena), which the
    /// plugin must declare as its global allocator (in the wasm build,
    /// every call of the tool panics otherwise): faster allocation for a
    /// call that builds its answer and stops, at the price of keeping what
    /// it frees until the call ends. The arena is on from before the
    /// arguments are parsed until the instance is dropped. Built for the
    /// host (a plugin's own tests), the tool runs on the system allocator.
    pub fn arena(mut self) -> Self {
        self.arena = true;
        self
    }

    pub(crate) fn describe(&self) -> WitTool {
        WitTool {
            name: self.name.to_string(),
            title: self.title.map(str::to_string),
            description: self.description.to_string(),
            input_schema: (self.input_schema)(),
            output_schema: (self.output_schema)(),
            annotations: self.annotations,
        }
    }

    pub(crate) fn call(&self, arguments: &str) -> Result<CallResult, CallError> {
        if self.arena {
            crate::arena::begin();
        }
        (self.handler)(arguments)
    }
}

pub(crate) fn schema_of<T: JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(T)).expect("a schema always serializes")
}
