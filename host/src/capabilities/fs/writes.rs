//! What a plugin with an `rw` directory may do to the host's disk: write
//! at most `max_write_bytes` per call, and make symlinks only when granted
//! `allow_symlinks` (the sandbox never follows one out of a preopen, but
//! host tools that later scan the folder might).
//!
//! Both are enforced where wasi:filesystem hands out write access: the
//! streams from `write-via-stream` and `append-via-stream` are wrapped in a
//! stream that counts bytes, `write` counts before writing, `set-size`
//! counts what it adds to a file, creating a file or directory counts
//! [`ENTRY_BYTES`] (a disk block and an inode), and `symlink-at` answers
//! `not-permitted`. Past the budget the call ends with [`WriteLimit`].

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{
    DynOutputStream, FsError, OutputStream, Pollable, StreamError, StreamResult,
};

/// The wasi:filesystem version wasmtime-wasi 48 links (its `wit/deps`);
/// imports of any 0.2.x resolve to it.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// What creating a file or directory costs the budget: about a block and
/// an inode, so that a call cannot fill a disk with empty entries.
pub const ENTRY_BYTES: u64 = 4096;

/// A call went past its `max_write_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write limit: the plugin tried to write more than {limit} bytes into its directories")]
pub struct WriteLimit {
    /// The budget.
    pub limit: u64,
}

/// The bytes one call may still write; clones share them.
#[derive(Debug, Clone)]
pub struct WriteBudget {
    left: Arc<AtomicU64>,
    limit: u64,
}

impl WriteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        WriteBudget {
            left: Arc::new(AtomicU64::new(limit)),
            limit,
        }
    }

    /// Takes `n` bytes from the budget, or fails without taking any.
    fn take(&self, n: u64) -> Result<(), WriteLimit> {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .map(|_| ())
            .map_err(|_| WriteLimit { limit: self.limit })
    }
}

/// A store's data that carries its call's write budget.
pub trait Budgeted: WasiFilesystemView {
    /// The call's budget.
    fn write_budget(&self) -> &WriteBudget;
}

/// Replaces wasi:filesystem's write functions in `linker` with counted
/// ones, and `symlink-at` with a refusal unless `allow_symlinks`.
pub fn link<T: Budgeted + 'static>(
    linker: &mut Linker<T>,
    allow_symlinks: bool,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
            let data = store.data_mut();
            let opened = HostDescriptor::write_via_stream(&mut data.filesystem(), fd, offset);
            counted(data, opened)
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store, (fd,): (Resource<Descriptor>,)| {
            let data = store.data_mut();
            let opened = HostDescriptor::append_via_stream(&mut data.filesystem(), fd);
            counted(data, opened)
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store, (fd, buffer, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let data = store.data_mut();
                data.write_budget().take(buffer.len() as u64)?;
                let written =
                    HostDescriptor::write(&mut data.filesystem(), fd, buffer, offset).await;
                answer(written)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let data = store.data_mut();
                let same = Resource::<Descriptor>::new_borrow(fd.rep());
                let current = match HostDescriptor::stat(&mut data.filesystem(), same).await {
                    Ok(stat) => stat.size,
                    Err(e) => return Ok((error_code(e)?,)),
                };
                data.write_budget().take(size.saturating_sub(current))?;
                answer(HostDescriptor::set_size(&mut data.filesystem(), fd, size).await)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let data = store.data_mut();
                data.write_budget().take(ENTRY_BYTES)?;
                answer(HostDescriptor::create_directory_at(&mut data.filesystem(), fd, path).await)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (fd, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let data = store.data_mut();
                if open_flags.contains(OpenFlags::CREATE) {
                    data.write_budget().take(ENTRY_BYTES)?;
                }
                let opened = HostDescriptor::open_at(
                    &mut data.filesystem(),
                    fd,
                    path_flags,
                    path,
                    open_flags,
                    flags,
                )
                .await;
                answer(opened)
            })
        },
    )?;
    if !allow_symlinks {
        types.func_wrap(
            "[method]descriptor.symlink-at",
            |_, _: (Resource<Descriptor>, String, String)| {
                Ok((Err::<(), _>(ErrorCode::NotPermitted),))
            },
        )?;
    }
    Ok(())
}

/// The guest-visible error of a filesystem failure, or the trap it is.
fn error_code<V>(e: FsError) -> wasmtime::Result<Result<V, ErrorCode>> {
    e.downcast().map(Err)
}

/// A filesystem function's result as the component model returns it.
fn answer<V>(result: Result<V, FsError>) -> wasmtime::Result<(Result<V, ErrorCode>,)> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(e) => Ok((error_code(e)?,)),
    }
}

/// Puts a freshly opened write stream behind the call's budget.
fn counted<T: Budgeted>(
    data: &mut T,
    opened: Result<Resource<DynOutputStream>, FsError>,
) -> wasmtime::Result<(Result<Resource<DynOutputStream>, ErrorCode>,)> {
    let stream = match opened {
        Ok(stream) => stream,
        Err(e) => return Ok((error_code(e)?,)),
    };
    let budget = data.write_budget().clone();
    let table = data.filesystem().table;
    let inner = table.delete(stream)?;
    let counted: DynOutputStream = Box::new(Counted { inner, budget });
    Ok((Ok(table.push(counted)?),))
}

/// A file's output stream that takes every byte from the call's budget
/// before the file sees it.
struct Counted {
    inner: DynOutputStream,
    budget: WriteBudget,
}

impl Counted {
    fn take(&self, n: usize) -> StreamResult<()> {
        self.budget
            .take(n as u64)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Counted {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(bytes.len())?;
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(bytes.len())?;
        self.inner.blocking_write_and_flush(bytes).await
    }

    fn write_zeroes(&mut self, n: usize) -> StreamResult<()> {
        self.take(n)?;
        self.inner.write_zeroes(n)
    }

    async fn write_ready(&mut self) -> StreamResult<usize> {
        self.inner.write_ready().await
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Counted {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_shared_by_its_clones_and_never_overdrawn() {
        let budget = WriteBudget::new(10);
        let clone = budget.clone();
        assert_eq!(budget.take(6), Ok(()));
        assert_eq!(clone.take(5), Err(WriteLimit { limit: 10 }));
        assert_eq!(clone.take(4), Ok(()));
        assert_eq!(budget.take(1), Err(WriteLimit { limit: 10 }));
    }
}
