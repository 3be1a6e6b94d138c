//! What a generic component's tools do, from the doc comments of its WIT.
//!
//! A component does not carry the doc comments of the WIT it was built
//! from: wit-component writes them (the `package-docs` custom section)
//! only into binary WIT packages, and cargo-component, wit-bindgen,
//! componentize-js and componentize-py all drop them. So they come from
//! the plugin's `wit` (a `.wit` file, a folder of them, or a binary WIT
//! package), and from a `package-docs` section of the component itself
//! when its publisher added one.

use std::collections::HashMap;
use std::path::Path;
use wit_parser::decoding::DecodedWasm;
use wit_parser::{Function, PackageMetadata, Resolve, WorldItem, WorldKey};

/// Doc comments of functions, by the export they are in (`None`: the
/// component's own function exports) and their name.
#[derive(Default)]
pub struct Docs(HashMap<(Option<String>, String), String>);

impl Docs {
    /// The doc comments of the WIT at `path`.
    pub fn from_wit(path: &Path) -> anyhow::Result<Docs> {
        let mut resolve = Resolve::default();
        resolve.push_path(path)?;
        Ok(Docs::of(&resolve))
    }

    /// The doc comments a component's own `package-docs` section gives;
    /// none when it has no such section. Only then is the component read
    /// (with validation) a second time.
    pub fn from_component(bytes: &[u8]) -> anyhow::Result<Docs> {
        if !has_package_docs(bytes) {
            return Ok(Docs::default());
        }
        match wit_parser::decoding::decode(bytes)? {
            DecodedWasm::Component(resolve, _) => Ok(Docs::of(&resolve)),
            DecodedWasm::WitPackage(..) => Ok(Docs::default()),
        }
    }

    /// Docs of `self`, and of `other` where `self` has none.
    pub fn or(mut self, other: Docs) -> Docs {
        for (key, text) in other.0 {
            self.0.entry(key).or_insert(text);
        }
        self
    }

    /// The doc comment of `function`, in the exported interface named
    /// `interface` (any version) or among the component's own functions.
    pub fn get(&self, interface: Option<&str>, function: &str) -> Option<&str> {
        let key = (interface.map(unversioned), function.to_string());
        self.0.get(&key).map(String::as_str)
    }

    fn of(resolve: &Resolve) -> Docs {
        let mut docs = Docs::default();
        // Interfaces of a package, whether or not a world exports them.
        for (id, interface) in resolve.interfaces.iter() {
            if let Some(name) = resolve.id_of(id) {
                docs.add(Some(&name), interface.functions.values());
            }
        }
        // A world's own functions, and interfaces it defines inline (the
        // export is then named as the world names it).
        for (_, world) in resolve.worlds.iter() {
            for (key, item) in &world.exports {
                match (key, item) {
                    (_, WorldItem::Function(f)) => docs.add(None, [f]),
                    (WorldKey::Name(name), WorldItem::Interface { id, .. }) => {
                        docs.add(Some(name), resolve.interfaces[*id].functions.values());
                    }
                    _ => {}
                }
            }
        }
        docs
    }

    fn add<'a>(
        &mut self,
        interface: Option<&str>,
        functions: impl IntoIterator<Item = &'a Function>,
    ) {
        for f in functions {
            if let Some(text) = f.docs.contents.as_deref().map(str::trim)
                && !text.is_empty()
            {
                let key = (interface.map(unversioned), f.name.clone());
                self.0.entry(key).or_insert_with(|| text.to_string());
            }
        }
    }
}

/// `example:typed/text` of `example:typed/text@1.0.0`.
fn unversioned(name: &str) -> String {
    name.split('@').next().unwrap_or(name).to_string()
}

/// Whether the component has a `package-docs` section of its own (not one
/// of a component nested in it).
fn has_package_docs(bytes: &[u8]) -> bool {
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(s))
                if depth == 0 && s.name() == PackageMetadata::SECTION_NAME =>
            {
                return true;
            }
            Ok(
                wasmparser::Payload::ModuleSection { .. }
                | wasmparser::Payload::ComponentSection { .. },
            ) => depth += 1,
            Ok(wasmparser::Payload::End(_)) if depth > 0 => depth -= 1,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}
