//! Host bindings for the `moat:plugin` world (generated from `wit/`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    exports: { default: async },
});
