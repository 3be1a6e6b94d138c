//! Misbehaves on purpose, so that tests can prove the sandbox holds.
//! Never grant this plugin anything in a real deployment.

use moat_plugin::prelude::*;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);
static MEMORY: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

#[derive(Deserialize, JsonSchema)]
struct Nothing {}

#[derive(Deserialize, JsonSchema)]
struct PathArg {
    path: String,
}

#[derive(Deserialize, JsonSchema)]
struct Write {
    path: String,
    content: String,
}

#[derive(Deserialize, JsonSchema)]
struct Name {
    name: String,
}

#[derive(Deserialize, JsonSchema)]
struct Size {
    bytes: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Depth {
    /// Stop here (default: never).
    depth: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
struct Millis {
    ms: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Text {
    text: String,
}

/// Secret-named fields with limits, so a refusal has a value to repeat.
#[derive(Deserialize, JsonSchema)]
struct Credentials {
    #[schemars(length(max = 8))]
    api_key: String,
    nested: Option<Vault>,
}

#[derive(Deserialize, JsonSchema)]
struct Vault {
    #[schemars(length(max = 8))]
    password: String,
}

#[derive(Deserialize, JsonSchema)]
struct Count {
    count: u32,
}

/// How much to tell the client, and a secret to (try to) leak with it.
#[derive(Deserialize, JsonSchema)]
struct Chatter {
    count: u32,
    api_key: String,
}

/// Reports progress `count` times as fast as it can and logs as often,
/// each message quoting the secret argument.
fn chatter(args: Chatter) -> String {
    for i in 1..=args.count {
        moat_plugin::progress::report(
            f64::from(i),
            Some(f64::from(args.count)),
            Some(&format!("step {i} with {}", args.api_key)),
        );
        moat_plugin::log::info(&format!("step {i} with key {}", args.api_key));
    }
    format!("chattered {} times", args.count)
}

fn empty_items(args: Count) -> Output {
    Output {
        content: (0..args.count)
            .map(|_| Content::Text(String::new()))
            .collect(),
        structured: None,
        is_error: false,
    }
}

fn sign_in(_: Credentials) -> String {
    "signed in".into()
}

fn spin(_: Nothing) -> String {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

fn allocate(_: Nothing) -> String {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![1u8; 1 << 20]));
    }
}

// Scalars only, so the frames live on the wasm stack (not the shadow stack
// in linear memory) and the recursion cannot be turned into a loop.
#[inline(never)]
fn deep(n: u64, limit: u64) -> u64 {
    if n == limit {
        return n;
    }
    let r = deep(n.wrapping_add(1), limit);
    r ^ (r >> 3).wrapping_mul(n)
}

fn recurse(args: Depth) -> String {
    deep(0, args.depth.unwrap_or(u64::MAX)).to_string()
}

fn panic(args: Text) -> String {
    panic!("{}", args.text)
}

fn big_output(args: Size) -> String {
    "x".repeat(args.bytes as usize)
}

fn read_file(args: PathArg) -> Result<String, String> {
    std::fs::read_to_string(&args.path).map_err(|e| format!("{}: {e}", args.path))
}

fn write_file(args: Write) -> Result<String, String> {
    std::fs::write(&args.path, &args.content)
        .map(|()| format!("wrote {} bytes to {}", args.content.len(), args.path))
        .map_err(|e| format!("{}: {e}", args.path))
}

fn env(args: Name) -> String {
    std::env::var(&args.name).unwrap_or_else(|_| "<unset>".into())
}

fn env_count(_: Nothing) -> String {
    std::env::vars().count().to_string()
}

fn counter(_: Nothing) -> String {
    (COUNTER.fetch_add(1, Ordering::SeqCst) + 1).to_string()
}

/// What `remember` leaves behind: the marker with its bytes inverted, so the
/// argument of `recall` (the plain marker) never matches itself.
fn residue(marker: &str) -> Vec<u8> {
    marker.bytes().map(|b| !b).collect()
}

fn remember(args: Text) -> String {
    let residue = residue(&args.text);
    // A large heap buffer (beyond any keep-resident budget) and a global.
    let mut buffer = Vec::with_capacity(4 << 20);
    while buffer.len() + residue.len() <= 4 << 20 {
        buffer.extend_from_slice(&residue);
    }
    std::mem::forget(buffer);
    *MEMORY.lock().unwrap() = args.text.clone();
    // Prove that the scan sees what this call left, so that a zero from a
    // later `recall` means something.
    format!("remembered; {}", recall(args))
}

/// Scans this instance's whole linear memory for what `remember` left.
fn recall(args: Text) -> String {
    let needle = residue(&args.text);
    let end = core::arch::wasm32::memory_size(0) * 65536;
    let skip = needle.as_ptr() as usize..needle.as_ptr() as usize + needle.len();
    let mut found = 0;
    for start in 1..end.saturating_sub(needle.len()) {
        if skip.contains(&start) {
            continue;
        }
        // SAFETY: every address below memory_size is mapped in wasm.
        let hit = needle
            .iter()
            .enumerate()
            .all(|(i, b)| unsafe { std::ptr::read_volatile((start + i) as *const u8) } == *b);
        if hit {
            found += 1;
        }
    }
    format!("global={:?} residue={found}", MEMORY.lock().unwrap())
}

fn sleep(args: Millis) -> String {
    std::thread::sleep(std::time::Duration::from_millis(args.ms));
    format!("slept {} ms", args.ms)
}

fn print(args: Text) -> String {
    println!("{}", args.text);
    eprintln!("{}", args.text);
    moat_plugin::log::info(&args.text);
    "printed".into()
}

#[derive(Deserialize, JsonSchema)]
struct Repeat {
    /// An http:// URL without a path, such as http://127.0.0.1:8080.
    url: String,
    times: u32,
}

/// Sends `times` GET requests for `/` and reports how each one ended.
fn get_many(args: Repeat) -> String {
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let authority = args.url.trim_start_matches("http://").trim_end_matches('/');
    let outcomes: Vec<String> = (0..args.times)
        .map(|_| {
            let request = OutgoingRequest::new(Fields::new());
            request.set_scheme(Some(&Scheme::Http)).unwrap();
            request.set_authority(Some(authority)).unwrap();
            request.set_path_with_query(Some("/")).unwrap();
            match wasi::http::outgoing_handler::handle(request, None) {
                Err(e) => format!("{e:?}"),
                Ok(pending) => {
                    pending.subscribe().block();
                    match pending.get() {
                        Some(Ok(Ok(response))) => response.status().to_string(),
                        Some(Ok(Err(e))) => format!("{e:?}"),
                        _ => "no response".into(),
                    }
                }
            }
        })
        .collect();
    outcomes.join(" ")
}

/// Creates `count` outgoing requests with bodies, writes into each body
/// as much as the host takes, sends none, and holds them all; returns the
/// bytes the host accepted.
fn hoard_bodies(args: Count) -> String {
    use wasi::http::types::{Fields, OutgoingRequest};
    let mut held = Vec::new();
    let mut buffered = 0;
    for _ in 0..args.count {
        let request = OutgoingRequest::new(Fields::new());
        let body = request.body().unwrap();
        let stream = body.write().unwrap();
        let permitted = stream.check_write().unwrap_or(0).min(1 << 20);
        if stream.write(&vec![7; permitted as usize]).is_ok() {
            buffered += permitted;
        }
        // Children first: a tuple drops its fields in order.
        held.push((stream, body, request));
    }
    buffered.to_string()
}

#[derive(Deserialize, JsonSchema)]
struct Upload {
    /// An http:// URL such as http://127.0.0.1:8080/upload.
    url: String,
    bytes: u64,
}

/// POSTs `bytes` bytes to `url`; returns the status and the answer, or the
/// error.
fn post_bytes(args: Upload) -> String {
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    let rest = args.url.trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Post).unwrap();
    request.set_scheme(Some(&Scheme::Http)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(path)).unwrap();
    let body = request.body().unwrap();
    let pending = match wasi::http::outgoing_handler::handle(request, None) {
        Ok(pending) => pending,
        Err(e) => return format!("{e:?}"),
    };
    {
        let stream = body.write().unwrap();
        let mut left = args.bytes;
        while left > 0 {
            let chunk = left.min(4096);
            if let Err(e) = stream.blocking_write_and_flush(&vec![b'u'; chunk as usize]) {
                drop(stream);
                let _ = OutgoingBody::finish(body, None);
                return outcome(pending).unwrap_or_else(|| format!("write: {e:?}"));
            }
            left -= chunk;
        }
    }
    if let Err(e) = OutgoingBody::finish(body, None) {
        return format!("{e:?}");
    }
    outcome(pending).unwrap_or_else(|| "no response".into())
}

#[derive(Deserialize, JsonSchema)]
struct Raw {
    /// An http:// URL, such as http://127.0.0.1:8080/user?x=1.
    url: String,
    /// Headers to send, as name and value pairs.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// Text to look for in this instance's memory once the answer is
    /// read, written backwards.
    #[serde(default)]
    scan_for_reversed: Option<String>,
}

/// GETs `url` with `headers`; returns the status, every response header
/// and the body (all that a plugin can learn of the exchange), and how
/// often `scan_for_reversed` is in memory after it.
fn request(args: Raw) -> String {
    let mut text = exchange(&args);
    if let Some(needle) = &args.scan_for_reversed {
        text.push_str(&format!(
            "\n[in memory: {}]",
            count_in_memory(needle.as_bytes())
        ));
    }
    text
}

fn exchange(args: &Raw) -> String {
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let rest = args.url.trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let fields = Fields::new();
    for (name, value) in &args.headers {
        if let Err(e) = fields.append(name, value.as_bytes()) {
            return format!("header {name}: {e:?}");
        }
    }
    let request = OutgoingRequest::new(fields);
    request.set_scheme(Some(&Scheme::Http)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    let path = if path.is_empty() { "/" } else { path };
    request.set_path_with_query(Some(path)).unwrap();
    let pending = match wasi::http::outgoing_handler::handle(request, None) {
        Ok(pending) => pending,
        Err(e) => return format!("{e:?}"),
    };
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => {
            let mut text = format!("{}\n", response.status());
            for (name, value) in response.headers().entries() {
                text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
            }
            text.push('\n');
            let body = response.consume().unwrap();
            let stream = body.stream().unwrap();
            loop {
                match stream.blocking_read(65536) {
                    Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                    Err(wasi::io::streams::StreamError::Closed) => break,
                    Err(e) => {
                        text.push_str(&format!("\n[body failed: {e:?}]"));
                        break;
                    }
                }
            }
            text
        }
        Some(Ok(Err(e))) => format!("{e:?}"),
        _ => "no response".into(),
    }
}

/// How often `reversed`, read back to front, is in this instance's whole
/// linear memory: what a plugin that dumped its own memory would find.
/// `reversed` itself is in memory, so only bytes in forward order, from
/// elsewhere, count.
fn count_in_memory(reversed: &[u8]) -> usize {
    let len = reversed.len();
    let size = core::arch::wasm32::memory_size(0) * 65536;
    // SAFETY: the instance owns every byte of its linear memory from 1 to
    // its size; none of it is written while this reads.
    let memory = unsafe { core::slice::from_raw_parts(1 as *const u8, size - 1) };
    memory
        .windows(len)
        .filter(|w| (0..len).all(|j| w[j] == reversed[len - 1 - j]))
        .count()
}

/// The status and text of a response, or its error.
fn outcome(pending: wasi::http::types::FutureIncomingResponse) -> Option<String> {
    pending.subscribe().block();
    match pending.get()? {
        Ok(Ok(response)) => {
            let status = response.status();
            let body = response.consume().ok()?;
            let stream = body.stream().ok()?;
            let mut text = Vec::new();
            while let Ok(chunk) = stream.blocking_read(65536) {
                text.extend(chunk);
            }
            Some(format!("{status} {}", String::from_utf8_lossy(&text)))
        }
        Ok(Err(e)) => Some(format!("{e:?}")),
        Err(()) => None,
    }
}

/// Opens the file at `path` `count` times and holds every handle.
fn open_many(args: OpenMany) -> Result<String, String> {
    let files = (0..args.count)
        .map(|_| std::fs::File::open(&args.path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(format!("holding {}", files.len()))
}

#[derive(Deserialize, JsonSchema)]
struct OpenMany {
    path: String,
    count: u32,
}

#[derive(Deserialize, JsonSchema)]
struct Link {
    /// A preopened directory, such as `/out`.
    dir: String,
    /// What the link points at.
    target: String,
    /// The link's path inside `dir`.
    link: String,
}

/// Creates a symlink through wasi:filesystem directly.
fn symlink(args: Link) -> Result<String, String> {
    let (dir, _) = wasi::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, path)| *path == args.dir)
        .ok_or_else(|| format!("{} is not a preopened directory", args.dir))?;
    dir.symlink_at(&args.target, &args.link)
        .map(|()| "linked".to_string())
        .map_err(|e| format!("{e:?}"))
}

/// Asks the host for `bytes` random bytes at once.
fn random(args: Size) -> String {
    wasi::random::random::get_random_bytes(args.bytes)
        .len()
        .to_string()
}

/// Exits the process with `code`, as a program would.
fn exit(args: Count) -> String {
    std::process::exit(args.count as i32)
}

fn fail(args: Text) -> Result<String, String> {
    Err(args.text)
}

fn connect(args: Text) -> Result<String, String> {
    std::net::TcpStream::connect(&args.text)
        .map(|_| format!("connected to {}", args.text))
        .map_err(|e| format!("{}: {e}", args.text))
}

/// The arguments of `ask_many`.
#[derive(Deserialize, JsonSchema)]
struct Asks {
    /// How many sampling requests to make.
    count: u32,
    /// The tokens each asks for.
    max_tokens: u32,
    /// Milliseconds to compute before asking (default 0).
    #[serde(default)]
    spin_ms: u64,
}

fn ask_many(args: Asks) -> String {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(args.spin_ms) {
        black_box(());
    }
    let (mut answered, mut refused) = (0, Vec::new());
    for i in 0..args.count {
        match moat_plugin::client::sample_text(&format!("question {i}"), args.max_tokens) {
            Ok(_) => answered += 1,
            Err(e) => refused.push(format!("{e:?}")),
        }
    }
    format!(
        "answered {answered}, refused {}: {}",
        refused.len(),
        refused.first().map_or("", String::as_str)
    )
}

fn ask_huge(_: Nothing) -> String {
    use moat_plugin::client::{Message, MessageContent, SamplingRequest};
    let request = SamplingRequest {
        messages: vec![Message {
            role: moat_plugin::bindings::moat::plugin::types::Role::User,
            content: MessageContent::Text("hi".into()),
        }],
        system_prompt: None,
        max_tokens: 1,
        temperature: None,
        stop_sequences: Vec::new(),
        // Empty, so nearly free in the plugin's memory; each would be an
        // object in the host's.
        model_hints: vec![String::new(); 100_000],
    };
    format!("{:?}", moat_plugin::client::sample(&request).map(|_| ()))
}

fn ask_form(_: Nothing) -> String {
    match moat_plugin::client::elicit(
        "Your name?",
        &moat_plugin::serde_json::json!({
            "type": "object",
            "properties": { "name": { "type": "string" } }
        }),
    ) {
        Ok(answer) => format!("{answer:?}"),
        Err(e) => format!("{e:?}"),
    }
}

/// `%2F` and `%2E` decoded, so that a URI can name any path.
fn decoded(text: &str) -> String {
    text.replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%2E", ".")
        .replace("%2e", ".")
}

fn spin_read(_: &str) -> Result<String, String> {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

moat_plugin::plugin![
    Resource::template("testbed://files/{name}", "file", |_, vars| {
        std::fs::read_to_string(format!("/data/{}", decoded(&vars["name"])))
            .map_err(|e| format!("cannot read {}: {e}", vars["name"]))
    })
    .description("A file under /data; `%2F` in the name is a `/`.")
    .mime_type("text/plain")
    .complete("name", |value, _| {
        std::fs::read_dir("/data")
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(value))
                    .collect()
            })
            .unwrap_or_default()
    }),
    Resource::new("testbed://env", "env", |_| {
        Ok(std::env::var("MOAT_SECRET").unwrap_or_else(|_| "unset".into()))
    })
    .description("The MOAT_SECRET environment variable, if granted."),
    Resource::new("testbed://huge", "huge", |_| Ok(vec![7u8; 8 << 20]))
        .description("Eight MiB of bytes."),
    Resource::new("testbed://spin", "spin", spin_read).description("Loops forever."),
    Prompt::new("leak", "Quotes a file into the prompt.", |args| {
        let text = std::fs::read_to_string(&args["path"]).map_err(|e| format!("{e}"))?;
        Ok(vec![Message::user(text)])
    })
    .argument("path", "The file to quote."),
    Tool::new(
        "ask_many",
        "Asks the client's model `count` times for `max_tokens` tokens.",
        ask_many
    ),
    Tool::new("ask_form", "Asks the person for a name.", ask_form),
    Tool::new("ask_huge", "Asks with 100 000 empty model hints.", ask_huge),
    Tool::new(
        "touch",
        "Says the resource at URI `text` changed.",
        |args: Text| {
            moat_plugin::resource_updated(&args.text);
            "touched"
        }
    ),
    Tool::new("spin", "Loops forever.", spin),
    Tool::new(
        "chatter",
        "Reports progress and logs `count` times, quoting `api_key`.",
        chatter
    ),
    Tool::new("allocate", "Allocates memory without bound.", allocate),
    Tool::new(
        "recurse",
        "Recurses `depth` times (default: without bound).",
        recurse
    ),
    Tool::new("panic", "Panics with the given text.", panic),
    Tool::new("big_output", "Returns `bytes` bytes of text.", big_output),
    Tool::new("read_file", "Reads the file at `path`.", read_file),
    Tool::new("write_file", "Writes `content` to `path`.", write_file),
    Tool::new("env", "Reads an environment variable.", env),
    Tool::new("env_count", "Counts the environment variables.", env_count),
    Tool::new(
        "remember",
        "Leaves `text` in a global and the heap.",
        remember
    ),
    Tool::new(
        "recall",
        "Looks for what `remember` left, everywhere.",
        recall
    ),
    Tool::new(
        "counter",
        "Increments a global counter and returns it.",
        counter
    ),
    Tool::new(
        "sleep",
        "Sleeps `ms` milliseconds (waiting on the host).",
        sleep
    ),
    Tool::new(
        "print",
        "Writes `text` to stdout, stderr and the log.",
        print
    ),
    Tool::new("fail", "Returns a tool error with `text`.", fail),
    Tool::new(
        "empty_items",
        "Returns `count` empty text items.",
        empty_items
    ),
    Tool::new(
        "hoard_bodies",
        "Holds `count` unsent HTTP request bodies.",
        hoard_bodies
    ),
    Tool::new("open_many", "Holds `path` open `count` times.", open_many),
    Tool::new("post_bytes", "POSTs `bytes` bytes to `url`.", post_bytes),
    Tool::new("random", "Asks for `bytes` random bytes.", random),
    Tool::new(
        "symlink",
        "Creates a symlink `link` to `target` in `dir`.",
        symlink
    ),
    Tool::new("exit", "Exits with status `count`.", exit),
    Tool::new(
        "sign_in",
        "Takes credentials of at most 8 characters.",
        sign_in
    ),
    Tool::new("get_many", "Sends `times` HTTP GETs to `url`.", get_many),
    Tool::new(
        "request",
        "GETs `url` with `headers`; shows all of the answer.",
        request
    ),
    Tool::new(
        "connect",
        "Opens a TCP connection to `text` (host:port).",
        connect
    ),
];
