//! Issue 15 D5: a small tenant is cheap. Heap bytes are counted exactly by a wrapping global
//! allocator (this test binary's own), so the figure is the same on every run and machine.

use rapport::config::ScoringConfig;
use rapport::domain::{Channel, Direction, Interaction, Kind, ReplyNeed};
use rapport::store::Store;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

/// The system allocator, counting the bytes requested and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const NOW_MS: i64 = 1_767_225_600_000;

fn message(tenant: &str, customer: &str, event: &str) -> Interaction {
    Interaction {
        event_id: event.to_string(),
        tenant_id: tenant.to_string(),
        customer_id: customer.to_string(),
        channel: Channel::Email,
        kind: Kind::Message,
        direction: Direction::Inbound,
        occurred_at_ms: NOW_MS - 60_000,
        text: String::new(),
        value: 0.0,
        author_followers: 0,
        thread_id: "t-1".to_string(),
        reply_need: ReplyNeed::Unclear,
        urgency_cues: Default::default(),
        intent: None,
        language: None,
        identifiers: Vec::new(),
        agent_id: String::new(),
    }
}

/// 2,000 tenants with one customer and one event each, after a ranking pass, nobody watching:
/// at most 4 KB each (they cost ~347 KB before issue 15, then 68 KB with a 512-shard map each).
/// The only test in this binary, so no other test's allocations are counted.
#[test]
fn a_tenant_with_one_event_costs_at_most_4_kb() {
    const TENANTS: usize = 2_000;
    let store = Store::new(Arc::new(ScoringConfig::default()), 1024);
    store.set_max_tenants(usize::MAX);
    store.ranking_pass(NOW_MS);
    let ids: Vec<String> = (0..TENANTS)
        .map(|tenant| format!("tenant-{tenant}"))
        .collect();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for tenant in &ids {
        store.apply(&message(tenant, "ann", "e-1"), None, NOW_MS, false);
    }
    store.ranking_pass(NOW_MS);
    let per_tenant = (LIVE_BYTES.load(Ordering::Relaxed) - before) as f64 / TENANTS as f64;
    println!("{per_tenant:.0} heap bytes per one-event tenant");
    assert!(per_tenant <= 4096.0, "{per_tenant:.0} B per tenant");
    // The store still answers for each of them.
    assert!(store.customer("tenant-1999", "ann", NOW_MS).is_some());
}
