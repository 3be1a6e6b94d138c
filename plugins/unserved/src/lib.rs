//! A component that imports an interface Moat does not serve: loading it
//! must fail naming that import (tests/tests/all/generic.rs).

wit_bindgen::generate!({
    path: "wit",
    world: "unserved",
});

struct Unserved;

impl Guest for Unserved {
    fn peek(name: String) -> String {
        example::unserved::vault::secret(&name).unwrap_or_default()
    }
}

export!(Unserved);
