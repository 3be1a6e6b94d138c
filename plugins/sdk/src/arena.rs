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
//! parses a 1 MB JSON document serves about 1.17× the calls per second
//! (docs/BENCHMARKS.md, "The guest's allocator").
//!
//! The price: a call that allocates and frees in a loop keeps what it
//! freed, so its memory grows with the work it does, not with what it
//! holds (a buffer grown by doubling holds about twice its final size):
//! it touches more pages (which can make a call that allocates little but
//! often slower, as `files.search` is) and reaches its `memory_mib` grant
//! sooner (the call then ends as `memory_limit`). So the arena is chosen
//! per tool: declare it as the global allocator, which passes every
//! allocation to dlmalloc until the call of a tool marked
//! [`Tool::arena`](crate::Tool::arena) begins, and mark the tools that
//! gain:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: moat_plugin::Arena = moat_plugin::Arena;
//!
//! moat_plugin::plugin![Tool::new("select", "Selects records.", select).arena()];
//! ```
//!
//! A plugin's global allocator must be `System` (the default) or
//! [`Arena`]: see `cabi_realloc` below for why no other works.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr;
use std::alloc::System;

/// The first block's size; each next block is twice the last, up to
/// [`LARGEST_BLOCK`], so a small call stays small and a large one asks for
/// memory only now and then.
const FIRST_BLOCK: usize = 64 << 10;
const LARGEST_BLOCK: usize = 1 << 20;

/// A bump allocator for one-call instances; see the module docs.
pub struct Arena;

/// Whether the arena is on (from [`begin`] to the instance's end), the
/// current block `base..end` with its free room `next..end`, and the next
/// block's size.
struct Room {
    on: Cell<bool>,
    base: Cell<usize>,
    next: Cell<usize>,
    end: Cell<usize>,
    block: Cell<usize>,
}

// A component instance runs on one thread; a build with threads would
// need atomics here.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
compile_error!("moat_plugin::Arena assumes a single-threaded wasm32 target");

// SAFETY: wasm32-wasip2 components are single-threaded (checked above);
// on other targets `begin` never turns the arena on, so the cells are
// never written.
unsafe impl Sync for Room {}

static ROOM: Room = Room::new();

impl Room {
    const fn new() -> Room {
        Room {
            on: Cell::new(false),
            base: Cell::new(0),
            next: Cell::new(0),
            end: Cell::new(0),
            block: Cell::new(FIRST_BLOCK),
        }
    }

    /// Whether `at..at + size` is the most recent allocation of the
    /// current block. Memory from `System` (before `begin`, placed by the
    /// host, or too large for a block) and from earlier blocks never is.
    fn is_last(&self, at: usize, size: usize) -> bool {
        self.next.get() != 0 && at >= self.base.get() && at + size == self.next.get()
    }

    /// Takes `size` bytes aligned to `align`, starting a block if needed.
    fn take(&self, size: usize, align: usize) -> *mut u8 {
        let start = align_up(self.next.get(), align);
        match start.and_then(|start| Some((start, start.checked_add(size)?))) {
            Some((start, end)) if end <= self.end.get() => {
                self.next.set(end);
                start as *mut u8
            }
            _ => self.take_elsewhere(size, align),
        }
    }

    /// Serves what the current block cannot. Memory comes from wasi-libc's
    /// allocator, not from `memory.grow`: wasi-libc takes the memory up to
    /// the current end as its heap when it first allocates, so growing
    /// memory behind its back would hand the same pages out twice.
    #[cold]
    fn take_elsewhere(&self, size: usize, align: usize) -> *mut u8 {
        let Some(exact) = size.checked_add(align) else {
            return ptr::null_mut();
        };
        // A large request gets memory of its own and leaves the current
        // block's free room in use.
        if exact > LARGEST_BLOCK / 2 {
            return match Layout::from_size_align(size, align) {
                // SAFETY: the size is not zero (it is over half a block).
                Ok(layout) => unsafe { System.alloc(layout) },
                Err(_) => ptr::null_mut(),
            };
        }
        // A full block if memory allows, else just what this request needs.
        for want in [exact.max(self.block.get()), exact] {
            let Ok(layout) = Layout::from_size_align(want, 16) else {
                return ptr::null_mut();
            };
            // SAFETY: `layout` has a non-zero size.
            let base = unsafe { System.alloc(layout) } as usize;
            if base != 0 {
                self.block.set((self.block.get() * 2).min(LARGEST_BLOCK));
                self.base.set(base);
                self.next.set(base);
                self.end.set(base + want);
                return self.take(size, align);
            }
        }
        ptr::null_mut()
    }

    fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.on.get() {
            // SAFETY: the caller's contract is `System`'s.
            return unsafe { System.alloc(layout) };
        }
        self.take(layout.size(), layout.align())
    }

    fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.on.get() {
            // SAFETY: as in `alloc`.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let at = self.take(layout.size(), layout.align());
        // Blocks come from malloc and room can be handed out again after
        // `dealloc`: neither is known to be zero.
        if !at.is_null() {
            // SAFETY: `at` holds `layout.size()` bytes.
            unsafe { ptr::write_bytes(at, 0, layout.size()) };
        }
        at
    }

    /// # Safety
    /// `GlobalAlloc::dealloc`'s.
    unsafe fn dealloc(&self, at: *mut u8, layout: Layout) {
        if !self.on.get() {
            // SAFETY: before `begin`, `at` came from `System`.
            return unsafe { System.dealloc(at, layout) };
        }
        // Anything else is kept: it may lie inside a block, and what
        // `System` gave out cannot be told apart from that.
        if self.is_last(at as usize, layout.size()) {
            self.next.set(at as usize);
        }
    }

    /// # Safety
    /// `GlobalAlloc::realloc`'s.
    unsafe fn realloc(&self, at: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.on.get() {
            // SAFETY: as in `dealloc`.
            return unsafe { System.realloc(at, layout, new_size) };
        }
        let start = at as usize;
        // The most recent allocation grows or shrinks where it is.
        if self.is_last(start, layout.size())
            && let Some(end) = start.checked_add(new_size)
            && end <= self.end.get()
        {
            self.next.set(end);
            return at;
        }
        if new_size <= layout.size() {
            return at;
        }
        let Ok(grown) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let new = self.alloc(grown);
        if !new.is_null() {
            // SAFETY: both hold at least `layout.size()` bytes and do not
            // overlap (`new` was free room).
            unsafe { ptr::copy_nonoverlapping(at, new, layout.size()) };
        }
        new
    }
}

fn align_up(at: usize, align: usize) -> Option<usize> {
    Some(at.checked_add(align - 1)? & !(align - 1))
}

/// Turns the arena on for the rest of the instance's life (every call is
/// a fresh instance, so for the rest of this call): from here on, memory
/// is taken from the arena and freed memory is kept. Memory that dlmalloc
/// gave out before stays valid; it is simply never freed.
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
// and every pointer handed out lies in memory no other allocation holds:
// `next` moves back only over the most recent allocation, when that
// allocation is freed or resized. That `dealloc` and `realloc` accept
// pointers the arena did not hand out is part of the contract: the host's
// arguments are placed with wasi-libc's `malloc` (see `cabi_realloc`)
// and freed through the global allocator.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ROOM.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ROOM.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, at: *mut u8, layout: Layout) {
        // SAFETY: the caller's.
        unsafe { ROOM.dealloc(at, layout) }
    }

    unsafe fn realloc(&self, at: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's.
        unsafe { ROOM.realloc(at, layout, new_size) }
    }
}

/// The allocator the host calls to place arguments and results in the
/// plugin's memory (the canonical ABI's `realloc`). It is wasi-libc's
/// `malloc` whatever the plugin's global allocator is: wasi-libc frees
/// what the host hands it (file names, bytes read) with `free`, while the
/// SDK's bindings free what they are handed (a call's name and arguments)
/// through the global allocator. Rust's std defines a weak `cabi_realloc`
/// over the global allocator, which satisfies both only while that is
/// `System`; this strong one takes its place, and [`Arena`] accepts
/// memory from `malloc`. Any other global allocator would be handed
/// memory it did not allocate. The logic is std's.
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
        debug_assert_ne!(new_len, 0, "a non-zero old_len needs a non-zero new_len");
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
        // instead (it ends as a trap, or `memory_limit` when memory ran
        // out).
        std::process::abort();
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A room already turned on, as after `begin` (the tests run on the
    /// host, where `begin` leaves the global allocator alone).
    fn room() -> Room {
        let room = Room::new();
        room.on.set(true);
        room
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_keep_their_bytes() {
        let room = room();
        let mut live: Vec<(*mut u8, usize, usize, u8)> = Vec::new();
        // Sizes and alignments that cross block ends and the large-request
        // threshold, with frees of the last and of older allocations.
        for i in 0..3_000usize {
            let size = [1, 3, 8, 100, 4_000, 70_000, 600_000][i % 7] + i % 13;
            let align = 1 << (i % 7);
            let at = room.alloc(layout(size, align));
            assert!(!at.is_null());
            assert_eq!(at as usize % align, 0, "{size} at {align}");
            let tag = (i % 251) as u8;
            unsafe { ptr::write_bytes(at, tag, size) };
            live.push((at, size, align, tag));
            if i % 5 == 0 {
                let (at, size, align, _) = live.pop().unwrap();
                unsafe { room.dealloc(at, layout(size, align)) };
            }
            if i % 11 == 0 && live.len() > 3 {
                let (at, size, align, _) = live.remove(live.len() / 2);
                unsafe { room.dealloc(at, layout(size, align)) };
            }
        }
        for (at, size, _, tag) in &live {
            let bytes = unsafe { std::slice::from_raw_parts(*at, *size) };
            assert!(bytes.iter().all(|b| b == tag), "overwritten: {size} bytes");
        }
    }

    #[test]
    fn the_last_allocation_is_taken_back_and_grows_in_place() {
        let room = room();
        let a = room.alloc(layout(16, 8));
        let b = room.alloc(layout(32, 8));
        unsafe { room.dealloc(b, layout(32, 8)) };
        assert_eq!(
            room.alloc(layout(32, 8)),
            b,
            "the room of a freed last allocation"
        );
        let grown = unsafe { room.realloc(b, layout(32, 8), 4_000) };
        assert_eq!(grown, b, "the last allocation grows where it is");
        // An older allocation is not taken back; it moves when it grows.
        unsafe { room.dealloc(a, layout(16, 8)) };
        let c = room.alloc(layout(16, 8));
        assert_ne!(c, a);
        unsafe { ptr::write_bytes(c, 7, 16) };
        let moved = unsafe { room.realloc(c, layout(16, 8), 16) };
        assert_eq!(moved, c, "shrinking or keeping the size never moves");
        let d = room.alloc(layout(8, 8));
        let moved = unsafe { room.realloc(c, layout(16, 8), 64) };
        assert!(moved != c && moved != d);
        assert_eq!(unsafe { std::slice::from_raw_parts(moved, 16) }, [7; 16]);
    }

    #[test]
    fn memory_from_system_is_kept_and_copied_when_it_grows() {
        let room = Room::new();
        let before = room.alloc(layout(24, 8)); // off: from System
        unsafe { ptr::write_bytes(before, 9, 24) };
        room.on.set(true);
        let grown = unsafe { room.realloc(before, layout(24, 8), 100) };
        assert_ne!(grown, before);
        assert_eq!(unsafe { std::slice::from_raw_parts(grown, 24) }, [9; 24]);
        // Freeing it is a no-op, and the original stays readable.
        unsafe { room.dealloc(before, layout(24, 8)) };
        assert_eq!(unsafe { std::slice::from_raw_parts(before, 24) }, [9; 24]);
    }

    #[test]
    fn a_large_request_leaves_the_current_block_in_use() {
        let room = room();
        let small = room.alloc(layout(64, 8));
        let large = room.alloc(layout(LARGEST_BLOCK, 8));
        assert!(!large.is_null());
        let next = room.alloc(layout(64, 8));
        assert_eq!(
            next as usize,
            small as usize + 64,
            "same block, right after"
        );
    }

    #[test]
    fn zeroed_room_is_zero_even_where_it_was_used() {
        let room = room();
        let a = room.alloc(layout(256, 1));
        unsafe { ptr::write_bytes(a, 0xff, 256) };
        unsafe { room.dealloc(a, layout(256, 1)) };
        let z = room.alloc_zeroed(layout(256, 1));
        assert_eq!(z, a);
        assert!(
            unsafe { std::slice::from_raw_parts(z, 256) }
                .iter()
                .all(|&b| b == 0)
        );
    }

    #[test]
    fn impossible_sizes_are_refused_not_wrapped() {
        let room = room();
        room.alloc(layout(8, 8));
        assert!(room.take(usize::MAX - 4, 8).is_null());
        assert!(room.take(isize::MAX as usize, 1).is_null());
    }
}
