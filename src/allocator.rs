//! The process's memory allocator: mimalloc, through `libmimalloc-sys` (the
//! only user of that crate). The server and the load tester install it with
//! `#[global_allocator]`.
//!
//! The `mimalloc` crate's allocator asks for every block through
//! `mi_malloc_aligned`, whatever its alignment. In mimalloc 3 that call's fast
//! path covers only blocks of up to 1 KiB whose free block happens to be
//! aligned; every larger block (read buffers, history pages, a batch's
//! vectors) took the generic aligned path, a measurable share of every message's
//! and request's instructions (figures in BENCHMARKS.md). The
//! crate has an open pull request to the same end (purpleprotocol/mimalloc_rust
//! #170). Here a block whose alignment mimalloc's plain calls already give goes
//! through them. Every block mimalloc hands out is word (8-byte) aligned, and
//! every block of 16 bytes or more is 16-aligned (its allocator asserts that of
//! each block, `src/alloc.c`), so a size that is a multiple of an alignment up
//! to 16 is always served at that alignment. Anything else keeps the aligned
//! calls.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The largest alignment mimalloc's plain calls guarantee (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc, as a [`GlobalAlloc`].
pub struct Mimalloc;

/// Whether a plain (unaligned) call serves `layout` at its alignment.
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && size % align == 0
}

/// A fresh block from `plain_call` when [`plain`] allows it, else from
/// `aligned_call`.
///
/// # Safety
/// `size` is not zero and `align` is a power of two (what `Layout` holds).
unsafe fn fresh_block(
    size: usize,
    align: usize,
    plain_call: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_call: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    let block = if plain(size, align) {
        // SAFETY: see `GlobalAlloc for Mimalloc` below.
        unsafe { plain_call(size) }
    } else {
        // SAFETY: see `GlobalAlloc for Mimalloc` below.
        unsafe { aligned_call(size, align) }
    };
    block.cast()
}

// SAFETY (for every method): the pointers come from mimalloc and go back to
// it (mimalloc frees and reallocates blocks from either kind of call); a block
// is asked of the plain calls only when `plain` holds, which mimalloc's block
// alignment satisfies (see the module header); the aligned calls honour any
// power-of-two alignment, which `Layout` guarantees.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a `Layout` the caller guarantees is not zero-sized.
        unsafe {
            fresh_block(
                layout.size(),
                layout.align(),
                mi::mi_malloc,
                mi::mi_malloc_aligned,
            )
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            fresh_block(
                layout.size(),
                layout.align(),
                mi::mi_zalloc,
                mi::mi_zalloc_aligned,
            )
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (block, align) = (ptr.cast::<c_void>(), layout.align());
        let moved = if plain(new_size, align) {
            // SAFETY: see above; mimalloc keeps the contents up to the smaller size.
            unsafe { mi::mi_realloc(block, new_size) }
        } else {
            // SAFETY: see above.
            unsafe { mi::mi_realloc_aligned(block, new_size, align) }
        };
        moved.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 4 KiB and beyond, at every alignment up to 4 KiB:
    /// aligned, writable, zeroed when asked, and its contents kept by a
    /// reallocation that grows or shrinks it.
    #[test]
    fn every_block_is_aligned_and_keeps_its_contents() {
        let sizes = (1..=1100).chain([2048, 4096, 65_536, 1 << 20, 3 << 20]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                check_block(layout);
            }
        }
    }

    fn check_block(layout: Layout) {
        let (size, align) = (layout.size(), layout.align());
        let allocator = Mimalloc;
        // SAFETY: non-zero sizes; each block is used within its size and
        // freed (or reallocated) with the layout it has.
        unsafe {
            let zeroed = allocator.alloc_zeroed(layout);
            assert_eq!(zeroed as usize % align, 0, "zeroed {size} at {align}");
            assert!(std::slice::from_raw_parts(zeroed, size)
                .iter()
                .all(|b| *b == 0));
            allocator.dealloc(zeroed, layout);

            // Blocks held together take successive slots of a page, not
            // just the first one.
            let held: Vec<*mut u8> = (0..16).map(|_| allocator.alloc(layout)).collect();
            for (nth, block) in held.iter().enumerate() {
                assert_eq!(*block as usize % align, 0, "{size} at {align}, block {nth}");
            }
            let block = held[0];
            for other in &held[1..] {
                allocator.dealloc(*other, layout);
            }
            fill(block, 0, size);
            let grown_size = size * 2 + 24;
            let grown = allocator.realloc(block, layout, grown_size);
            assert_eq!(
                grown as usize % align,
                0,
                "{size} -> {grown_size} at {align}"
            );
            assert_filled(grown, size);
            fill(grown, size, grown_size);
            let grown_layout = Layout::from_size_align(grown_size, align).unwrap();
            let shrunk_size = size / 2 + 1;
            let shrunk = allocator.realloc(grown, grown_layout, shrunk_size);
            assert_eq!(
                shrunk as usize % align,
                0,
                "{grown_size} -> {shrunk_size} at {align}"
            );
            assert_filled(shrunk, shrunk_size);
            allocator.dealloc(shrunk, Layout::from_size_align(shrunk_size, align).unwrap());
        }
    }

    /// Writes each byte's index (mod 251) into `from..to`.
    unsafe fn fill(block: *mut u8, from: usize, to: usize) {
        for i in from..to {
            // SAFETY: the caller's block holds `to` bytes.
            unsafe { block.add(i).write((i % 251) as u8) }
        }
    }

    /// Asserts the first `len` bytes are what [`fill`] wrote.
    unsafe fn assert_filled(block: *const u8, len: usize) {
        // SAFETY: the caller's block holds `len` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(block, len) };
        for (i, byte) in bytes.iter().enumerate() {
            assert_eq!(usize::from(*byte), i % 251, "byte {i} of {len}");
        }
    }
}
