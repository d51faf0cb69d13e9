//! Memory per tracked customer, in process and exactly: heap bytes live in the store after one
//! event for each of 1M customers in one tenant (counted by a wrapping global allocator, so the
//! figure is the same on every run), with the process's RSS growth beside it, and the same after
//! a ranking pass (which replaces the hot sets of the first pass with lists).
//! Run: `cargo bench --bench memory_per_customer` (CUSTOMERS=… to change the count).
//! Events follow `rapport loadgen --preload`: mixed kinds and channels, 15 % outbound, half in one
//! of four threads; the store sees no text (sentiment is a number by then).

use mimalloc::MiMalloc;
use rapport::config::ScoringConfig;
use rapport::domain::{Channel, Direction, Interaction, Kind};
use rapport::sentiment::{Sentiment, SentimentLabel};
use rapport::store::Store;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

/// mimalloc (as the server uses) counting the bytes requested and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        MiMalloc.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        MiMalloc.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        MiMalloc.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// A small deterministic generator (xorshift64*), so every run applies the same events.
struct Events(u64);

impl Events {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn interaction(&mut self, customer: u64, now_ms: i64) -> (Interaction, Option<Sentiment>) {
        let r = self.next();
        let kind = Kind::ALL[(r % Kind::ALL.len() as u64) as usize];
        let interaction = Interaction {
            event_id: format!("preload-{customer}"),
            tenant_id: "tenant-0".to_string(),
            customer_id: format!("customer-{customer}"),
            channel: Channel::ALL[(r >> 8) as usize % Channel::ALL.len()],
            kind,
            direction: if (r >> 16) % 100 < 15 {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            occurred_at_ms: now_ms - ((r >> 24) % 60_000) as i64,
            text: String::new(),
            value: if kind == Kind::Purchase { 20.0 } else { 0.0 },
            author_followers: (r >> 40) % 500,
            thread_id: if (r >> 50).is_multiple_of(2) {
                format!("thread-{}", (r >> 52) % 4)
            } else {
                String::new()
            },
            reply_need: rapport::domain::ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: None,
            language: None,
            identifiers: Vec::new(),
            agent_id: String::new(),
        };
        let sentiment = ((r >> 56) % 10 < 7).then_some(Sentiment {
            label: SentimentLabel::Negative,
            score: -0.6,
            confidence: 0.8,
        });
        (interaction, sentiment)
    }
}

fn main() {
    let customers: u64 = std::env::var("CUSTOMERS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let now_ms = 1_767_225_600_000;
    let store = Store::new(Arc::new(ScoringConfig::default()), 16);
    store.ranking_pass(now_ms); // the tenant-less first pass, as a server's first tick
    let (heap_before, rss_before) = (LIVE_BYTES.load(Ordering::Relaxed), rss_bytes());
    let mut events = Events(0x9e37_79b9_7f4a_7c15);
    for customer in 0..customers {
        let (interaction, sentiment) = events.interaction(customer, now_ms);
        store.apply(&interaction, sentiment, now_ms, false);
    }
    let per_customer = |bytes: i64| bytes as f64 / customers as f64;
    let report = |when: &str| {
        println!(
            "{when:<28} heap {:6.1} B/customer, RSS growth {:6.1} B/customer",
            per_customer(LIVE_BYTES.load(Ordering::Relaxed) as i64 - heap_before as i64),
            per_customer(rss_bytes() - rss_before)
        );
    };
    println!("{customers} customers, one event each, one tenant");
    report("after the events");
    store.ranking_pass(now_ms);
    report("after a ranking pass");

    // Small tenants: one event in each of TENANTS tenants (nobody watching), in a fresh store.
    let tenants: u64 = std::env::var("TENANTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000);
    drop(store);
    let store = Store::new(Arc::new(ScoringConfig::default()), 1024);
    store.set_max_tenants(usize::MAX);
    let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
    for tenant in 0..tenants {
        let (mut interaction, sentiment) = events.interaction(tenant, now_ms);
        interaction.tenant_id = format!("tenant-{tenant}");
        store.apply(&interaction, sentiment, now_ms, false);
    }
    store.ranking_pass(now_ms);
    println!(
        "{tenants} tenants, one event each: heap {:.0} B/tenant after a ranking pass (watch_buffer 1024)",
        (LIVE_BYTES.load(Ordering::Relaxed) - heap_before) as f64 / tenants as f64
    );
}
