//! Captures a plugin's stdout and stderr so they never reach the process's
//! own stdout (which carries the protocol in stdio mode). What is captured
//! goes to the host's log after the call; past a cap it is dropped, never
//! failing the plugin's writes.

use bytes::Bytes;
use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// `text` fit for one line of the host's log: control characters (line
/// breaks, carriage returns, terminal escapes) and the Unicode marks that
/// reorder or break displayed text are written as escapes, so a plugin
/// cannot start a line of its own that looks like Moat's.
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes kept per stream per call.
pub const CAPTURE_LIMIT: usize = 64 << 10;

/// One captured stream. Clones share the buffer.
#[derive(Clone, Default)]
pub struct Capture {
    inner: Arc<Mutex<Buffer>>,
}

#[derive(Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.inner.lock().expect("capture lock");
        let room = CAPTURE_LIMIT - buf.kept.len();
        let take = bytes.len().min(room);
        buf.kept.extend_from_slice(&bytes[..take]);
        buf.dropped += bytes.len() - take;
    }

    /// What was captured (lossily decoded) and how many bytes were dropped.
    pub fn take(&self) -> (String, usize) {
        let mut buf = self.inner.lock().expect("capture lock");
        let text = String::from_utf8_lossy(&buf.kept).into_owned();
        buf.kept.clear();
        (text, std::mem::take(&mut buf.dropped))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(CAPTURE_LIMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_text_cannot_break_or_forge_a_log_line() {
        let cases = [
            ("plain text, with ünïcode", "plain text, with ünïcode"),
            ("ok\nINFO moat: forged", "ok\\nINFO moat: forged"),
            ("a\rb\tc", "a\\rb\\tc"),
            ("\u{1b}[2Kclear", "\\u{1b}[2Kclear"),
            ("x\u{2028}y\u{202e}z", "x\\u{2028}y\\u{202e}z"),
        ];
        for (text, expected) in cases {
            assert_eq!(printable(text), expected, "{text:?}");
        }
    }
}
