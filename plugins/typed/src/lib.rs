//! A generic component: its own WIT world, exports of every WIT type, and
//! no `moat:plugin`. tests/tests/all/generic.rs calls each through Moat,
//! and the same world built from JavaScript (plugins/js/typed) the same
//! way.

// `describe` takes one value of each WIT kind, on purpose.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "wit",
    world: "typed",
});

use exports::example::typed::text;

struct Typed;

impl Guest for Typed {
    fn add(a: u8, b: u8) -> u16 {
        u16::from(a) + u16::from(b)
    }

    fn describe(
        p: Point,
        c: Color,
        f: Perms,
        s: Shape,
        tags: Vec<String>,
        note: Option<String>,
        pair: (bool, char),
        big: i64,
    ) -> String {
        let shape = match s {
            Shape::Circle(r) => format!("circle {r}"),
            Shape::Rect(q) => format!("rect {},{}", q.x, q.y),
            Shape::Empty => "empty".into(),
        };
        let color = match c {
            Color::Red => "red",
            Color::Green => "green",
            Color::Blue => "blue",
        };
        let flags: Vec<&str> = [
            (Perms::READ, "read"),
            (Perms::WRITE, "write"),
            (Perms::EXEC, "exec"),
        ]
        .into_iter()
        .filter(|(flag, _)| f.bits() & flag.bits() != 0)
        .map(|(_, name)| name)
        .collect();
        format!(
            "point {},{}; {color}; {}; {shape}; tags {}; note {}; pair {} {}; big {big}",
            p.x,
            p.y,
            flags.join("+"),
            tags.join("+"),
            note.as_deref().unwrap_or("none"),
            pair.0,
            pair.1
        )
    }

    fn divide(a: f64, b: f64) -> Result<f64, String> {
        if b == 0.0 {
            Err(format!("cannot divide {a} by zero"))
        } else {
            Ok(a / b)
        }
    }

    fn reverse(data: Vec<u8>) -> Vec<u8> {
        data.into_iter().rev().collect()
    }

    fn parse(items: Vec<String>) -> Vec<Result<u32, String>> {
        items
            .into_iter()
            .map(|s| s.parse().map_err(|e| format!("{s:?}: {e}")))
            .collect()
    }

    fn settle(r: Result<u32, String>) -> String {
        match r {
            Ok(n) => format!("ok {n}"),
            Err(e) => format!("err {e}"),
        }
    }

    fn first(items: Vec<Option<u8>>) -> Option<Option<u8>> {
        items.first().copied()
    }

    fn fill(byte: u8, count: u32) -> Vec<u8> {
        vec![byte; count as usize]
    }

    fn middle(a: Point, b: Point) -> Point {
        Point {
            x: (a.x + b.x) / 2,
            y: (a.y + b.y) / 2,
        }
    }
}

impl text::Guest for Typed {
    fn count(s: String) -> u32 {
        s.chars().count() as u32
    }
}

export!(Typed);
