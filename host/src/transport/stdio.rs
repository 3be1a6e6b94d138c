//! MCP over stdio: a local client launches `moat serve --stdio`. Only
//! protocol messages go to stdout; logs go to stderr and plugin output to
//! the log. No token: the launching process is trusted.

use crate::mcp::{LiveEndpoint, McpHandler};
use rmcp::ServiceExt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use tokio::io::{AsyncRead, AsyncWrite};

/// Serves MCP on this process's stdin and stdout until the client closes
/// the connection.
pub async fn serve(live: LiveEndpoint) -> anyhow::Result<()> {
    let (input, output, _restore) = streams();
    let running = McpHandler::new(live)
        .serve((input, output))
        .await
        .map_err(|e| anyhow::anyhow!("the MCP client did not complete initialization: {e}"))?;
    running.waiting().await?;
    Ok(())
}

type Input = Box<dyn AsyncRead + Send + Unpin>;
type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// stdin and stdout as async streams. Clients launch servers with pipes:
/// those are made non-blocking and polled by the runtime itself, where
/// tokio's stdio hands every read and write to a blocking thread and back
/// (four thread wake-ups a message, most of a trivial call's time;
/// docs/BENCHMARKS.md). Anything else (a terminal, a file, a socket) goes
/// through tokio's stdio.
fn streams() -> (Input, Output, Restore) {
    let mut restore = Restore(Vec::new());
    let input: Input = match pipe(std::io::stdin().as_fd()) {
        Some(fd) => match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => {
                restore.0.push(libc::STDIN_FILENO);
                Box::new(pipe)
            }
            Err(_) => Box::new(tokio::io::stdin()),
        },
        None => Box::new(tokio::io::stdin()),
    };
    let output: Output = match pipe(std::io::stdout().as_fd()) {
        Some(fd) => match tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
            Ok(pipe) => {
                restore.0.push(libc::STDOUT_FILENO);
                Box::new(pipe)
            }
            Err(_) => Box::new(tokio::io::stdout()),
        },
        None => Box::new(tokio::io::stdout()),
    };
    (input, output, restore)
}

/// A duplicate of `fd` when it is a pipe.
fn pipe(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    use std::os::unix::fs::FileTypeExt;
    let duplicate = fd.try_clone_to_owned().ok()?;
    let file = std::fs::File::from(duplicate);
    let is_pipe = file.metadata().ok()?.file_type().is_fifo();
    is_pipe.then(|| file.into())
}

/// Puts the pipes back in blocking mode when serving ends: the mode
/// belongs to the pipe, which the client (or a shell pipeline) may go on
/// using after Moat exits.
struct Restore(Vec<i32>);

impl Drop for Restore {
    fn drop(&mut self) {
        for &fd in &self.0 {
            // SAFETY: fcntl(2) on a descriptor this process holds open
            // (stdin or stdout) reads and writes only its status flags.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pipes_are_taken_as_pipes() {
        let (reader, writer) = std::io::pipe().unwrap();
        assert!(pipe(reader.as_fd()).is_some());
        assert!(pipe(writer.as_fd()).is_some());
        let file = tempfile::tempfile().unwrap();
        assert!(pipe(file.as_fd()).is_none());
    }
}
