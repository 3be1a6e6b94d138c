//! Write Moat plugins in plain Rust.
//!
//! A plugin is a set of tools. A tool is a function from a deserializable
//! argument struct to something that becomes MCP content; its input schema is
//! derived from the struct with [`schemars`]. Register the tools once with
//! [`plugin!`] and build with `cargo build --release --target wasm32-wasip2`:
//!
//! ```ignore
//! use moat_plugin::prelude::*;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Greet {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! fn greet(args: Greet) -> String {
//!     format!("Hello, {}!", args.name)
//! }
//!
//! moat_plugin::plugin![Tool::new("greet", "Greets someone.", greet).read_only()];
//! ```
//!
//! The same list takes resources and prompts:
//!
//! ```ignore
//! moat_plugin::plugin![
//!     Tool::new("greet", "Greets someone.", greet),
//!     Resource::new("hello://motd", "motd", |_| Ok("Be kind.")).mime_type("text/plain"),
//!     Resource::template("hello://people/{name}", "person", |_, vars| {
//!         Ok(format!("{} is here.", vars["name"]))
//!     }),
//!     Prompt::new("welcome", "Welcomes someone.", |args| {
//!         Ok(vec![Message::user(format!("Please welcome {}.", args["name"]))])
//!     })
//!     .argument("name", "Who to welcome"),
//! ];
//! ```
//!
//! Every call runs in a fresh instance with only the capabilities the
//! operator granted: files under the granted guest paths (`std::fs`),
//! granted environment variables (`std::env::var`), nothing else.

mod arena;
pub mod client;
mod output;
mod prompt;
mod resource;
mod tool;

pub use arena::Arena;
pub use output::{
    Annotations, Audience, Body, Content, IntoOutput, Json, Output, Rendered, ResourceLink,
};
pub use prompt::{Args, Message, Prompt, Values};
pub use resource::{Resource, Vars, starting_with};
pub use tool::Tool;

/// Everything a plugin usually needs, in one import.
pub mod prelude {
    pub use crate::{
        Annotations, Args, Audience, Body, Content, Json, Message, Output, Prompt, Rendered,
        Resource, ResourceLink, Tool, Vars,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

pub use schemars;
pub use serde;
pub use serde_json;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_moat_plugin",
        default_bindings_module: "moat_plugin::bindings",
    });
}

use bindings::exports::moat::plugin::prompts as wit_prompts;
use bindings::exports::moat::plugin::resources as wit_resources;
use bindings::exports::moat::plugin::tools::{self as wit, CallError, CallResult};
use bindings::moat::plugin::types::{Completion, EmbeddedResource, PromptResult};

/// Tells the client how far the call has come (when it asked to know).
pub mod progress {
    /// `progress` so far (increasing), of `total` when known, with an
    /// optional `message`. Cheap when nobody listens: Moat drops it.
    pub fn report(progress: f64, total: Option<f64>, message: Option<&str>) {
        crate::bindings::moat::plugin::progress::report(progress, total, message);
    }
}

/// Tells clients subscribed to one of this plugin's resources that it
/// changed (`notifications/resources/updated`, sent once the call ends).
pub fn resource_updated(uri: &str) {
    bindings::moat::plugin::changes::resource_updated(uri);
}

/// Writes to the host's log, attributed to this plugin.
pub mod log {
    use crate::bindings::moat::plugin::log::{Level, log};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// One thing a plugin offers: a tool, a resource (or template) or a prompt.
pub enum Item {
    Tool(Tool),
    Resource(Resource),
    Prompt(Prompt),
}

impl From<Tool> for Item {
    fn from(tool: Tool) -> Item {
        Item::Tool(tool)
    }
}

impl From<Resource> for Item {
    fn from(resource: Resource) -> Item {
        Item::Resource(resource)
    }
}

impl From<Prompt> for Item {
    fn from(prompt: Prompt) -> Item {
        Item::Prompt(prompt)
    }
}

/// Implemented by [`plugin!`]; not for direct use.
#[doc(hidden)]
pub trait Plugin {
    fn items() -> Vec<Item>;

    fn tools() -> impl Iterator<Item = Tool> {
        Self::items().into_iter().filter_map(|i| match i {
            Item::Tool(t) => Some(t),
            _ => None,
        })
    }

    fn resources() -> impl Iterator<Item = Resource> {
        Self::items().into_iter().filter_map(|i| match i {
            Item::Resource(r) => Some(r),
            _ => None,
        })
    }

    fn prompts() -> impl Iterator<Item = Prompt> {
        Self::items().into_iter().filter_map(|i| match i {
            Item::Prompt(p) => Some(p),
            _ => None,
        })
    }
}

fn pairs(list: Vec<(String, String)>) -> std::collections::BTreeMap<String, String> {
    list.into_iter().collect()
}

impl<P: Plugin> wit::Guest for P {
    fn describe() -> Vec<wit::Tool> {
        P::tools().map(|t| t.describe()).collect()
    }

    fn call(name: String, arguments: String) -> Result<CallResult, CallError> {
        let tool = P::tools()
            .find(|t| t.name == name)
            .ok_or(CallError::UnknownTool(name))?;
        tool.call(&arguments)
    }
}

impl<P: Plugin> wit_resources::Guest for P {
    fn list() -> Vec<wit_resources::ResourceLink> {
        P::resources()
            .filter(|r| !r.is_template())
            .map(|r| r.link())
            .collect()
    }

    fn templates() -> Vec<wit_resources::ResourceTemplate> {
        P::resources()
            .filter(Resource::is_template)
            .map(|r| r.described_template())
            .collect()
    }

    fn read(uri: String) -> Result<Vec<EmbeddedResource>, wit_resources::ReadError> {
        // A fixed URI first: it is more specific than any template.
        let mut resources: Vec<Resource> = P::resources().collect();
        resources.sort_by_key(Resource::is_template);
        for resource in &resources {
            if let Some(vars) = resource.fits(&uri) {
                return resource.read(&uri, &vars).map(|r| vec![r]);
            }
        }
        Err(wit_resources::ReadError::NotFound(format!(
            "no resource at {uri}"
        )))
    }

    fn complete(
        template: String,
        argument: String,
        value: String,
        context: Vec<(String, String)>,
    ) -> Completion {
        P::resources()
            .find(|r| r.uri == template)
            .map(|r| r.completion(&argument, &value, &pairs(context)))
            .unwrap_or_else(prompt::no_values)
    }
}

impl<P: Plugin> wit_prompts::Guest for P {
    fn list() -> Vec<wit_prompts::Prompt> {
        P::prompts().map(|p| p.describe()).collect()
    }

    fn get(
        name: String,
        arguments: Vec<(String, String)>,
    ) -> Result<PromptResult, wit_prompts::PromptError> {
        let prompt = P::prompts()
            .find(|p| p.name == name)
            .ok_or(wit_prompts::PromptError::UnknownPrompt(name))?;
        prompt.get(&pairs(arguments))
    }

    fn complete(
        prompt: String,
        argument: String,
        value: String,
        context: Vec<(String, String)>,
    ) -> Completion {
        P::prompts()
            .find(|p| p.name == prompt)
            .map(|p| p.completion(&argument, &value, &pairs(context)))
            .unwrap_or_else(prompt::no_values)
    }
}

/// Declares what the plugin offers and exports it to Moat. Use it once, at
/// the crate root, with one [`Tool`], [`Resource`] or [`Prompt`]
/// expression per item.
#[macro_export]
macro_rules! plugin {
    ($($item:expr),* $(,)?) => {
        struct __MoatPlugin;

        impl $crate::Plugin for __MoatPlugin {
            fn items() -> ::std::vec::Vec<$crate::Item> {
                ::std::vec![$($crate::Item::from($item)),*]
            }
        }

        $crate::bindings::__export_moat_plugin!(__MoatPlugin with_types_in $crate::bindings);
    };
}
