//! How each array of an update is loaded into lanes and stored back: as the lanes' own element
//! type, or, for f32 lanes, as bf16 or f16 (widened on load, narrowed on store with the rounding
//! contract of `recadam_core::Storage`: round to nearest even, quiet NaN, f16 overflow to ±∞,
//! subnormals kept).

use core::marker::PhantomData;

use recadam_core::{Storage, StorageType};

use crate::lanes::Lanes;

/// f32 lanes that convert to and from 16-bit floats, `count ≤ N` elements at a time (fewer than
/// `N` only at the two ends of a slice).
pub(crate) trait HalfLanes: Lanes<Elem = f32> {
    /// Loads `count` bf16 values (bits) and widens them; other lanes are zero.
    ///
    /// # Safety
    /// `ptr..ptr + count` must be readable.
    unsafe fn load_bf16(ptr: *const u16, count: usize) -> Self;
    /// Narrows lanes `0..count` to bf16 and stores them.
    ///
    /// # Safety
    /// `ptr..ptr + count` must be writable.
    unsafe fn store_bf16(self, ptr: *mut u16, count: usize);
    /// Loads `count` f16 values (bits) and widens them; other lanes are zero.
    ///
    /// # Safety
    /// `ptr..ptr + count` must be readable.
    unsafe fn load_f16(ptr: *const u16, count: usize) -> Self;
    /// Narrows lanes `0..count` to f16 and stores them.
    ///
    /// # Safety
    /// `ptr..ptr + count` must be writable.
    unsafe fn store_f16(self, ptr: *mut u16, count: usize);
}

/// How lanes `L` load and store one array: a marker type naming the array's element type.
pub(crate) trait Access<L: Lanes> {
    /// The element type in memory.
    type Item;
    /// # Safety
    /// `ptr..ptr + count` must be readable, `count ≤ L::N`.
    unsafe fn load(ptr: *const Self::Item, count: usize) -> L;
    /// # Safety
    /// `ptr..ptr + count` must be writable, `count ≤ L::N`.
    unsafe fn store(x: L, ptr: *mut Self::Item, count: usize);
}

/// The array holds the lanes' own element type.
pub(crate) struct Native;

impl<L: Lanes> Access<L> for Native {
    type Item = L::Elem;

    #[inline(always)]
    unsafe fn load(ptr: *const L::Elem, count: usize) -> L {
        // SAFETY: as the caller guarantees.
        unsafe {
            if count == L::N {
                L::load(ptr)
            } else {
                L::load_first(ptr, count)
            }
        }
    }
    #[inline(always)]
    unsafe fn store(x: L, ptr: *mut L::Elem, count: usize) {
        // SAFETY: as the caller guarantees.
        unsafe {
            if count == L::N {
                x.store(ptr)
            } else {
                x.store_first(ptr, count)
            }
        }
    }
}

/// The array holds `T`, one of the storage types of f32 values.
pub(crate) struct AsStored<T>(PhantomData<T>);

impl<L: HalfLanes, T: Storage> Access<L> for AsStored<T> {
    type Item = T;

    #[inline(always)]
    unsafe fn load(ptr: *const T, count: usize) -> L {
        // SAFETY: `Storage` is sealed to f32, bf16 and f16, each with its own TYPE, so the cast
        // names the type `ptr` points to (bf16 and f16 are transparent u16); the caller
        // guarantees the range.
        unsafe {
            match T::TYPE {
                StorageType::F32 => <Native as Access<L>>::load(ptr.cast(), count),
                StorageType::Bf16 => L::load_bf16(ptr.cast(), count),
                StorageType::F16 => L::load_f16(ptr.cast(), count),
            }
        }
    }
    #[inline(always)]
    unsafe fn store(x: L, ptr: *mut T, count: usize) {
        // SAFETY: as for load.
        unsafe {
            match T::TYPE {
                StorageType::F32 => <Native as Access<L>>::store(x, ptr.cast(), count),
                StorageType::Bf16 => x.store_bf16(ptr.cast(), count),
                StorageType::F16 => x.store_f16(ptr.cast(), count),
            }
        }
    }
}

/// Copies `count` 16-bit values into a zeroed block of `N`: a partial vector's load goes through
/// it, so no vector load reads past the slice.
///
/// # Safety
/// `ptr..ptr + count` must be readable, `count ≤ N`.
#[inline(always)]
pub(crate) unsafe fn padded<const N: usize>(ptr: *const u16, count: usize) -> [u16; N] {
    let mut block = [0u16; N];
    // SAFETY: as the caller guarantees; the block holds N ≥ count.
    unsafe { core::ptr::copy_nonoverlapping(ptr, block.as_mut_ptr(), count) };
    block
}
