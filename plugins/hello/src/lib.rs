use moat_plugin::prelude::*;

#[derive(Deserialize, JsonSchema)]
struct Greet {
    /// Who to greet.
    name: String,
}

#[derive(Deserialize, JsonSchema)]
struct Echo {
    /// The text to send back.
    message: String,
}

fn greet(args: Greet) -> String {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
    format!("{greeting}, {}!", args.name)
}

moat_plugin::plugin![
    Tool::new("greet", "Greets someone by name.", greet).read_only(),
    Tool::new("echo", "Returns the message unchanged.", |a: Echo| a
        .message)
    .read_only(),
];
