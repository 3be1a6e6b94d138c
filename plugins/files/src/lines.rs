//! The line search `files.search` runs over each file. Its own file so
//! that the native baseline of the benchmarks (`tests/src/native.rs`)
//! compiles the very same code.

use memchr::memmem::Finder;
use memchr::{memchr, memchr_iter, memrchr};

/// The lines of `text` (as `str::lines` splits them) that contain
/// `query`, with their 1-based numbers. It searches the whole text at
/// once rather than line by line, so the searcher's vector loop (wasm
/// `simd128`, plugins/.cargo/config.toml) runs over long stretches, and
/// counts line ends only up to each match.
pub fn matching_lines<'t>(text: &'t str, query: &Finder) -> impl Iterator<Item = (usize, &'t str)> {
    let bytes = text.as_bytes();
    let (mut from, mut number, mut counted) = (0, 1, 0);
    std::iter::from_fn(move || {
        loop {
            let at = from + query.find(bytes.get(from..)?)?;
            let start = memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
            let end = memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i);
            // An empty query also matches after a final line end, where
            // `str::lines` has no line.
            if start == bytes.len() {
                return None;
            }
            let line = &text[start..end];
            let line = match end < bytes.len() {
                true => line.strip_suffix('\r').unwrap_or(line),
                false => line,
            };
            // A match must lie within its line: not across a line end,
            // nor in the `\r` of one.
            if at + query.needle().len() > start + line.len() {
                from = at + 1;
                continue;
            }
            number += memchr_iter(b'\n', &bytes[counted..start]).count();
            counted = start;
            from = end + 1;
            return Some((number, line));
        }
    })
}
