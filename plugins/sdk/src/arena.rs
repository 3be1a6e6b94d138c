//! How a plugin's memory is allocated: an opt-in allocator for tools whose
//! calls build what they return and stop, and the canonical ABI's
//! `cabi_realloc`.
//!
//! Moat runs every call in a fresh instance and throws the instance away
//! afterwards, so memory a call frees is never needed again. [`Arena`]
//! hands out memory by moving a pointer up and takes back only the most
//! recent allocation (a temporary freed at once, a vector grown in place);
//! everything else stays allocated until the instance is dropped.
//! Allocation is a few instructions where the default allocator
//! (wasi-libc's dlmalloc) searches and splits free lists: a tool that
//! parses a 1 MB JSON document runs about a fifth faster
//! (docs/BENCHMARKS.md, "The guest's allocator").
//!
//! The price: a call that allocates and frees in a loop keeps what it
//! freed, so its memory grows with the work it does, not with what it
//! holds: it touches more pages (which can make a call that allocates
//! little but often slower, as `files.search` is) and reaches its `memory`
//! grant sooner (the call then ends as `memory_limit`). So the arena is
//! chosen per tool: declare it as the global allocator, which passes every
//! allocation to dlmalloc until a call begins, and mark the tools that
//! gain with [`Tool::arena`](crate::Tool::arena):
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: moat_plugin::Arena = moat_plugin::Arena;
//!
//! moat_plugin::plugin![Tool::new("select", "Selects records.", select).arena()];
//! ```

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr;
use std::alloc::System;

/// The first block's size; each next block is twice the last, up to
/// [`LARGEST_BLOCK`], so a small call stays small and a large one asks for
/// memory only now and then. A block's pages are not touched until used.
const FIRST_BLOCK: usize = 64 << 10;
const LARGEST_BLOCK: usize = 1 << 20;

/// A bump allocator for one-call instances; see the module docs.
pub struct Arena;

/// Whether the arena is on (from [`begin`] to the instance's end), the
/// current block `base..end` with its free room `next..end`, and the next
/// block's size. A component instance runs on one thread.
struct Room {
    on: Cell<bool>,
    base: Cell<usize>,
    next: Cell<usize>,
    end: Cell<usize>,
    block: Cell<usize>,
}

// SAFETY: wasm32-wasip2 components are single-threaded; on other targets
// `begin` never turns the arena on, so the cells are never written.
unsafe impl Sync for Room {}

static ROOM: Room = Room {
    on: Cell::new(false),
    base: Cell::new(0),
    next: Cell::new(0),
    end: Cell::new(0),
    block: Cell::new(FIRST_BLOCK),
};

impl Room {
    /// Whether `at..at + size` is the most recent allocation of the
    /// current block (memory from dlmalloc never is).
    fn is_last(&self, at: usize, size: usize) -> bool {
        at >= self.base.get() && at + size == self.next.get() && self.next.get() != 0
    }

    /// Takes `size` bytes aligned to `align`, starting a block if needed.
    fn take(&self, size: usize, align: usize) -> *mut u8 {
        let start = align_up(self.next.get(), align);
        match start.and_then(|start| Some((start, start.checked_add(size)?))) {
            Some((start, end)) if end <= self.end.get() => {
                self.next.set(end);
                start as *mut u8
            }
            _ => self.start_block(size, align),
        }
    }

    /// Starts a block that holds at least `size` bytes at `align`. Blocks
    /// come from wasi-libc's allocator, not from `memory.grow`: wasi-libc
    /// takes the memory up to the current end as its heap when it first
    /// allocates, so growing memory behind its back would hand the same
    /// pages out twice.
    #[cold]
    fn start_block(&self, size: usize, align: usize) -> *mut u8 {
        let Some(want) = size.checked_add(align).map(|n| n.max(self.block.get())) else {
            return ptr::null_mut();
        };
        let Ok(layout) = Layout::from_size_align(want, 16) else {
            return ptr::null_mut();
        };
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { System.alloc(layout) };
        if base.is_null() {
            return ptr::null_mut();
        }
        self.block.set((self.block.get() * 2).min(LARGEST_BLOCK));
        self.base.set(base as usize);
        self.next.set(base as usize);
        self.end.set(base as usize + want);
        self.take(size, align)
    }
}

fn align_up(at: usize, align: usize) -> Option<usize> {
    Some(at.checked_add(align - 1)? & !(align - 1))
}

/// Turns the arena on for the rest of the instance's life: from here on,
/// memory is taken from the arena and freed memory is kept. Memory that
/// dlmalloc gave out before stays valid; it is simply never freed.
///
/// # Panics
/// When [`Arena`] is not the plugin's global allocator: the tool asked
/// for an arena it would silently not get.
pub(crate) fn begin() {
    // Built for the host (a plugin's own tests), the allocator may be
    // shared by threads: it stays a plain `System` there.
    if cfg!(not(target_arch = "wasm32")) {
        return;
    }
    if ROOM.on.replace(true) {
        return;
    }
    // An allocation through the global allocator starts a block only if
    // that allocator is this one (`black_box`: the compiler would drop an
    // allocation nothing reads).
    drop(std::hint::black_box(Box::new(0u8)));
    assert!(
        ROOM.base.get() != 0,
        "Tool::arena needs `#[global_allocator] static ALLOCATOR: moat_plugin::Arena = moat_plugin::Arena;` in the plugin"
    );
}

// SAFETY: until `begin`, every call goes to `System`. After it, nothing is
// given back to `System` (neither the blocks nor what it gave out before),
// and every pointer handed out lies in a block no other allocation holds:
// `next` moves back only over the most recent allocation, when that
// allocation is freed or resized.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !ROOM.on.get() {
            // SAFETY: the caller's contract is `System`'s.
            return unsafe { System.alloc(layout) };
        }
        ROOM.take(layout.size(), layout.align())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !ROOM.on.get() {
            // SAFETY: as in `alloc`.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let at = ROOM.take(layout.size(), layout.align());
        // Blocks come from malloc and room can be handed out again after
        // `dealloc`: neither is known to be zero.
        if !at.is_null() {
            // SAFETY: `at` holds `layout.size()` bytes.
            unsafe { ptr::write_bytes(at, 0, layout.size()) };
        }
        at
    }

    unsafe fn dealloc(&self, at: *mut u8, layout: Layout) {
        if !ROOM.on.get() {
            // SAFETY: before `begin`, `at` came from `System`.
            return unsafe { System.dealloc(at, layout) };
        }
        if ROOM.is_last(at as usize, layout.size()) {
            ROOM.next.set(at as usize);
        }
    }

    unsafe fn realloc(&self, at: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ROOM.on.get() {
            // SAFETY: as in `dealloc`.
            return unsafe { System.realloc(at, layout, new_size) };
        }
        let start = at as usize;
        // The most recent allocation grows or shrinks where it is.
        if ROOM.is_last(start, layout.size())
            && let Some(end) = start.checked_add(new_size)
            && end <= ROOM.end.get()
        {
            ROOM.next.set(end);
            return at;
        }
        if new_size <= layout.size() {
            return at;
        }
        // SAFETY: the caller guarantees that `new_size` with the old
        // alignment is a valid layout.
        let new =
            unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !new.is_null() {
            // SAFETY: both hold at least `layout.size()` bytes and do not
            // overlap (`new` was free room).
            unsafe { ptr::copy_nonoverlapping(at, new, layout.size()) };
        }
        new
    }
}

/// The allocator the host calls to place arguments and results in the
/// plugin's memory (the canonical ABI's `realloc`). It is wasi-libc's
/// `malloc` whatever the plugin's global allocator is: wasi-libc frees
/// what the host hands it (file names, bytes read) with `free`, so memory
/// from any other allocator would corrupt its heap. Rust's std and
/// wit-bindgen each define a weak `cabi_realloc` over the global
/// allocator, which is the same thing only while that allocator is
/// `System`; this strong one takes their place. The logic is std's.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let at = if old_len == 0 {
        if new_len == 0 {
            return ptr::without_provenance_mut(align);
        }
        // SAFETY: the canonical ABI passes a power-of-two alignment, and
        // the size is not zero.
        unsafe { System.alloc(Layout::from_size_align_unchecked(new_len, align)) }
    } else {
        // SAFETY: `old` came from this function with `old_len` and `align`.
        unsafe {
            System.realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if at.is_null() {
        // The host would write through a null pointer: stop the call
        // instead (it ends as a trap).
        std::process::abort();
    }
    at
}
