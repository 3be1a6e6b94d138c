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
//! Every call runs in a fresh instance with only the capabilities the
//! operator granted: files under the granted guest paths (`std::fs`),
//! granted environment variables (`std::env::var`), nothing else.

mod output;
mod tool;

pub use output::{
    Annotations, Audience, Body, Content, IntoOutput, Json, Output, Rendered, ResourceLink,
};
pub use tool::Tool;

/// Everything a plugin usually needs, in one import.
pub mod prelude {
    pub use crate::{
        Annotations, Audience, Body, Content, Json, Output, Rendered, ResourceLink, Tool,
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

use bindings::exports::moat::plugin::tools::{self as wit, CallError, CallResult};

/// Tells the client how far the call has come (when it asked to know).
pub mod progress {
    /// `progress` so far (increasing), of `total` when known, with an
    /// optional `message`. Cheap when nobody listens: Moat drops it.
    pub fn report(progress: f64, total: Option<f64>, message: Option<&str>) {
        crate::bindings::moat::plugin::progress::report(progress, total, message);
    }
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

/// Implemented by [`plugin!`]; not for direct use.
#[doc(hidden)]
pub trait Plugin {
    fn tools() -> Vec<Tool>;
}

impl<P: Plugin> wit::Guest for P {
    fn describe() -> Vec<wit::Tool> {
        P::tools().iter().map(Tool::describe).collect()
    }

    fn call(name: String, arguments: String) -> Result<CallResult, CallError> {
        let tools = P::tools();
        let tool = tools
            .iter()
            .find(|t| t.name == name)
            .ok_or(CallError::UnknownTool(name))?;
        tool.call(&arguments)
    }
}

/// Declares the plugin's tools and exports them to Moat. Use it once, at the
/// crate root, with one [`Tool`] expression per tool.
#[macro_export]
macro_rules! plugin {
    ($($tool:expr),* $(,)?) => {
        struct __MoatPlugin;

        impl $crate::Plugin for __MoatPlugin {
            fn tools() -> ::std::vec::Vec<$crate::Tool> {
                ::std::vec![$($tool),*]
            }
        }

        $crate::bindings::__export_moat_plugin!(__MoatPlugin with_types_in $crate::bindings);
    };
}
