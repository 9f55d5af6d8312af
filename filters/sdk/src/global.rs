//! [`Global`]: mutable state in a `static`, without `static mut`.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A value in a `static` that the filter mutates from its entry points.
///
/// Access goes through [`Global::with`], which hands out `&mut T` for the
/// duration of a closure. A nested or concurrent `with` on the same `Global`
/// panics (on wasm: traps, which the host treats as a fault) instead of
/// aliasing. A filter instance is single-threaded and never re-entered, so
/// this costs one flag test and store per call.
///
/// ```ignore
/// static SEEN: Global<u64> = Global::new(0);
/// SEEN.with(|n| *n += 1);
/// ```
pub struct Global<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the `busy` flag gives at most one `&mut T` at a time, across
// threads too (the flag is atomic), so sharing the `Global` only ever moves
// access to `T` between threads: that needs `T: Send`.
unsafe impl<T: Send> Sync for Global<T> {}

impl<T> Global<T> {
    /// A `Global` holding `value`.
    pub const fn new(value: T) -> Self {
        Global {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access to the value.
    ///
    /// # Panics
    ///
    /// If the value is already borrowed (a nested `with` on the same
    /// `Global`, or another thread's).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            #[inline]
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        if self.busy.swap(true, Ordering::Acquire) {
            panic!("etherws-filter-sdk: Global borrowed twice");
        }
        let _release = Release(&self.busy);
        // SAFETY: `busy` was false and is now ours until `_release` drops, so
        // no other reference to the value exists.
        f(unsafe { &mut *self.value.get() })
    }

    /// Raw pointer to the value (does not borrow it).
    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut T {
        self.value.get()
    }
}
