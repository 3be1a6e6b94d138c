//! Host bindings for the `moat:plugin` worlds (generated from `wit/`): the
//! current contract, and 0.1.0, whose plugins keep working (see
//! [`super::compat`]).

use exports::moat::plugin::{prompts, resources, tools};
use wasmtime::component::InstancePre;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        // Both wait for the client's answer, or end the run until the
        // client's retry brings it (2026-07-28).
        "moat:plugin/client.sample": async | trappable,
        "moat:plugin/client.elicit": async | trappable,
    },
    exports: { default: async },
});

/// `moat:plugin@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugin",
        exports: { default: async },
    });
}

/// A plugin of the current contract, linked: `tools` is required,
/// `resources` and `prompts` are served only when the component exports
/// them (a plugin written against the WIT by hand need not).
#[derive(Clone)]
pub struct CurrentPre {
    pub pre: InstancePre<super::state::CallState>,
    pub tools: tools::GuestIndices,
    pub resources: Option<resources::GuestIndices>,
    pub prompts: Option<prompts::GuestIndices>,
}

impl CurrentPre {
    /// `Err` when the component does not export the current `tools`.
    pub fn new(pre: InstancePre<super::state::CallState>) -> wasmtime::Result<Self> {
        Ok(CurrentPre {
            tools: tools::GuestIndices::new(&pre)?,
            resources: resources::GuestIndices::new(&pre).ok(),
            prompts: prompts::GuestIndices::new(&pre).ok(),
            pre,
        })
    }
}

/// A linked plugin, ready to instantiate, by the contract it exports.
#[derive(Clone)]
pub enum Pre {
    /// The current contract.
    Current(CurrentPre),
    /// `moat:plugin@0.1.0`.
    V0_1(v0_1::PluginPre<super::state::CallState>),
    /// No `moat:plugin`: its exported functions are the tools.
    Generic(std::sync::Arc<GenericPre>),
}

/// A component with WIT exports of its own, linked.
pub struct GenericPre {
    /// Ready to instantiate.
    pub pre: InstancePre<super::state::CallState>,
    /// Its exported functions, as tools.
    pub functions: Vec<super::generic::Function>,
}
