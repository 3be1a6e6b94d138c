//! Host bindings for the `moat:plugin` worlds (generated from `wit/`): the
//! current contract, and 0.1.0, whose plugins keep working (see
//! [`super::compat`]).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
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

/// A linked plugin, ready to instantiate, by the contract it exports.
#[derive(Clone)]
pub enum Pre {
    /// The current contract.
    Current(PluginPre<super::state::CallState>),
    /// `moat:plugin@0.1.0`.
    V0_1(v0_1::PluginPre<super::state::CallState>),
}
