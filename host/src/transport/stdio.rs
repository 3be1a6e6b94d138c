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
    // Each pipe's flags are saved before tokio makes it non-blocking, and
    // put back when serving ends (or at once, if tokio refuses it).
    let mut restore = Restore(Vec::new());
    let input: Input = match pipe(std::io::stdin().as_fd()) {
        Some((fd, flags)) => {
            restore.0.push((libc::STDIN_FILENO, flags));
            match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                Ok(pipe) => Box::new(pipe),
                Err(_) => {
                    restore.put_back(libc::STDIN_FILENO);
                    Box::new(tokio::io::stdin())
                }
            }
        }
        None => Box::new(tokio::io::stdin()),
    };
    let output: Output = match pipe(std::io::stdout().as_fd()) {
        Some((fd, flags)) => {
            restore.0.push((libc::STDOUT_FILENO, flags));
            match tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
                Ok(pipe) => Box::new(pipe),
                Err(_) => {
                    restore.put_back(libc::STDOUT_FILENO);
                    Box::new(tokio::io::stdout())
                }
            }
        }
        None => Box::new(tokio::io::stdout()),
    };
    (input, output, restore)
}

/// A duplicate of `fd` and its status flags, when it is a pipe.
fn pipe(fd: BorrowedFd<'_>) -> Option<(OwnedFd, i32)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    let duplicate = fd.try_clone_to_owned().ok()?;
    let file = std::fs::File::from(duplicate);
    let is_pipe = file.metadata().ok()?.file_type().is_fifo();
    // SAFETY: F_GETFL only reads the flags of a descriptor we hold open.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    (is_pipe && flags >= 0).then(|| (file.into(), flags))
}

/// Puts the pipes' flags back when serving ends: the non-blocking mode
/// belongs to the pipe, which the client (or a shell pipeline) may go on
/// using after Moat exits.
struct Restore(Vec<(i32, i32)>);

impl Restore {
    /// Puts `fd`'s flags back now.
    fn put_back(&mut self, fd: i32) {
        if let Some(at) = self.0.iter().position(|(f, _)| *f == fd) {
            let (fd, flags) = self.0.remove(at);
            set_flags(fd, flags);
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        for &(fd, flags) in &self.0 {
            set_flags(fd, flags);
        }
    }
}

fn set_flags(fd: i32, flags: i32) {
    // SAFETY: F_SETFL on a descriptor this process holds open (stdin or
    // stdout) changes only its status flags.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pipes_are_taken_as_pipes() {
        let (reader, writer) = std::io::pipe().unwrap();
        let (_, flags) = pipe(reader.as_fd()).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        assert!(pipe(writer.as_fd()).is_some());
        let file = tempfile::tempfile().unwrap();
        assert!(pipe(file.as_fd()).is_none());
    }
}
