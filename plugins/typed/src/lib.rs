//! A generic component: its own WIT world, exports of every WIT type, and
//! no `moat:plugin`. tests/tests/all/generic.rs calls each through Moat.

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
        format!(
            "point {},{}; {c:?}; {f:?}; {shape}; tags {}; note {}; pair {} {}; big {big}",
            p.x,
            p.y,
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
