//! Bytes allocated on behalf of one piece of work (a tuning trial), across the threads it runs on.
//!
//! The `sluice` binary wraps its allocator in [`Counting`]. A thread that has [`enter`]ed a
//! [`Meter`] adds to it what it allocates and takes off what it frees; a thread pool that a
//! metered thread starts passes the meter on with [`current`] and [`attach_thread`] in the pool's
//! start handler, so a trial's training threads count too. What a metered thread frees that was
//! allocated before it entered (shared data) lowers the count, and what the work hands to a pool
//! started elsewhere (rayon's global pool) is not counted: a meter is a close estimate of the
//! work's live heap, not an exact one.
//!
//! Without [`Counting`] installed (library tests, other binaries) meters stay at zero, and
//! [`installed`] says so, so callers can tell "used nothing" from "not measured".

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

/// Live and peak bytes of one piece of work.
#[derive(Debug, Default)]
pub struct Meter {
    live: AtomicI64,
    peak: AtomicI64,
}

impl Meter {
    pub fn new() -> Arc<Meter> {
        Arc::new(Meter::default())
    }

    /// Bytes allocated and not yet freed by the metered threads (never below zero).
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed).max(0) as u64
    }

    /// The highest [`live`](Self::live) so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).max(0) as u64
    }

    fn charge(&self, bytes: i64) {
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if bytes > 0 && live > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(live, Ordering::Relaxed);
        }
    }
}

thread_local! {
    /// The meter this thread charges: a pointer from `Arc::into_raw`, whose reference the thread
    /// owns until it leaves (null: none). A raw pointer, because the allocator reads it and must
    /// neither allocate nor run destructors.
    static CURRENT: Cell<*const Meter> = const { Cell::new(std::ptr::null()) };
}

fn swap(meter: Option<Arc<Meter>>) -> Option<Arc<Meter>> {
    let new = meter.map_or(std::ptr::null(), Arc::into_raw);
    let old = CURRENT.with(|c| c.replace(new));
    // SAFETY: a non-null pointer in CURRENT came from `Arc::into_raw` and carries one strong
    // reference, which this call takes back out of the thread-local.
    (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
}

/// Charge `meter` for this thread's allocations until the guard is dropped (then the meter the
/// thread had before, if any, again).
pub fn enter(meter: Arc<Meter>) -> Entered {
    Entered { previous: swap(Some(meter)), _this_thread: std::marker::PhantomData }
}

/// See [`enter`]. Not `Send`: it restores the thread-local of the thread that entered.
#[must_use = "the meter is left when the guard is dropped"]
pub struct Entered {
    previous: Option<Arc<Meter>>,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        drop(swap(self.previous.take()));
    }
}

/// The meter this thread charges, to pass on to threads it starts.
pub fn current() -> Option<Arc<Meter>> {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return None;
    }
    // SAFETY: the pointer came from `Arc::into_raw` and the thread-local still holds its
    // reference; adding one before `from_raw` leaves that reference where it is.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// Charge `meter` for everything this thread allocates from now on: for a pool's start handler,
/// with [`detach_thread`] in its exit handler.
pub fn attach_thread(meter: Option<Arc<Meter>>) {
    drop(swap(meter));
}

/// Stop charging this thread's meter.
pub fn detach_thread() {
    drop(swap(None));
}

/// Whether the process allocates through [`Counting`], so that meters measure anything.
pub fn installed() -> bool {
    static PROBED: OnceLock<bool> = OnceLock::new();
    *PROBED.get_or_init(|| {
        let meter = Meter::new();
        let entered = enter(meter.clone());
        let probe = std::hint::black_box(vec![0u8; 4096]);
        drop(entered);
        drop(probe);
        meter.peak() >= 4096
    })
}

/// A global allocator that charges the calling thread's [`Meter`], if it has one, and otherwise
/// does nothing but one thread-local read per call:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: Counting<mimalloc::MiMalloc> = Counting(mimalloc::MiMalloc);
/// ```
pub struct Counting<A>(pub A);

fn charge(bytes: i64) {
    // `try_with`: a thread's last frees can run after its thread-locals are gone.
    let _ = CURRENT.try_with(|c| {
        let p = c.get();
        if !p.is_null() {
            // SAFETY: the thread-local owns a strong reference to this meter until it is
            // replaced, and nothing else on this thread runs while it is being read.
            unsafe { &*p }.charge(bytes);
        }
    });
}

// SAFETY: every call is forwarded to the wrapped allocator with the same arguments, and its
// result is returned unchanged; the accounting neither allocates nor touches the memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            charge(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            charge(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { self.0.dealloc(ptr, layout) };
        charge(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            charge(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_move_only_with_counting_installed() {
        // Library tests run on the system allocator: nothing is measured, and `installed` says so.
        let meter = Meter::new();
        let entered = enter(meter.clone());
        let v = std::hint::black_box(vec![1u8; 1 << 20]);
        drop(entered);
        drop(v);
        assert_eq!(meter.peak(), 0);
        assert!(!installed());
    }

    /// What the allocator charges for each call, on the system allocator.
    #[test]
    fn counting_charges_every_call() {
        let counting = Counting(std::alloc::System);
        let meter = Meter::new();
        let entered = enter(meter.clone());
        let layout = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: the layouts are non-zero sized; each pointer is freed once with the layout
        // (and size) it was last allocated with.
        unsafe {
            let a = counting.alloc(layout);
            assert_eq!((meter.live(), meter.peak()), (1000, 1000));
            let z = counting.alloc_zeroed(layout);
            assert_eq!((meter.live(), meter.peak()), (2000, 2000));
            let a = counting.realloc(a, layout, 3000);
            assert_eq!((meter.live(), meter.peak()), (4000, 4000));
            let a = counting.realloc(a, Layout::from_size_align(3000, 8).unwrap(), 500);
            assert_eq!((meter.live(), meter.peak()), (1500, 4000));
            counting.dealloc(a, Layout::from_size_align(500, 8).unwrap());
            counting.dealloc(z, layout);
        }
        assert_eq!((meter.live(), meter.peak()), (0, 4000));
        drop(entered);
        // Another thread's allocations are its own.
        let other = Meter::new();
        let _here = enter(other.clone());
        std::thread::spawn(move || {
            // SAFETY: as above.
            unsafe { counting.dealloc(counting.alloc(layout), layout) };
        })
        .join()
        .unwrap();
        assert_eq!(other.peak(), 0);
    }

    #[test]
    fn entering_nests_and_current_follows() {
        let (a, b) = (Meter::new(), Meter::new());
        assert!(current().is_none());
        let outer = enter(a.clone());
        assert!(Arc::ptr_eq(&current().unwrap(), &a));
        {
            let _inner = enter(b.clone());
            assert!(Arc::ptr_eq(&current().unwrap(), &b));
        }
        assert!(Arc::ptr_eq(&current().unwrap(), &a));
        drop(outer);
        assert!(current().is_none());
        // The thread-local's references are all given back.
        assert_eq!(Arc::strong_count(&a), 1);
        assert_eq!(Arc::strong_count(&b), 1);
    }
}
