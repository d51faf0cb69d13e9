//! `language::detect` allocates nothing per call when the fast head answers (whatlang, asked
//! below the head's threshold, allocates its own buffers). Its own test binary: the counting
//! allocator sees every allocation of the process, and this is its only test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rapport_sentiment::language::{self, LanguageDetector};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_head_allocates_nothing_per_call() {
    let texts = [
        "@acme where is my order, it was supposed to arrive yesterday https://t.co/x",
        "@acme ma commande n'est toujours pas arrivée, c'est inadmissible",
        "@acme mi pedido todavía no ha llegado, es una vergüenza",
        "@acme طلبي لم يصل بعد، هذا أمر مخجل",
    ];
    let restricted = LanguageDetector::only(&["en", "fr", "es", "ar"]).unwrap();
    // Warm up: the embedded head is parsed and the thread's buffer grown on first use.
    for text in texts {
        assert!(language::detect(text).is_some());
        assert!(restricted.detect(text).is_some());
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..100 {
        for text in texts {
            std::hint::black_box(language::detect(text));
            std::hint::black_box(restricted.detect(text));
        }
    }
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), before);
}
