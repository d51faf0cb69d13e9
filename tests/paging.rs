//! Issue 16: TopCustomers pages with a `page_token` that pins the evaluation time, so paging a
//! moving list neither repeats nor skips anyone.

mod common;

use common::*;
use rapport::pb;
use std::collections::HashSet;

/// 10,000 customers, many of them tied (the same few histories), and new ones arriving between
/// pages: every customer known at the first page's time comes exactly once, in answer order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_ten_thousand_customers_returns_each_once() {
    const CUSTOMERS: usize = 10_000;
    let mut t = start().await;
    let now = rapport::engine::now_ms();
    let events: Vec<pb::Interaction> = (0..CUSTOMERS)
        .map(|n| {
            // Ten histories: a question of a given age, or a purchase.
            let age_ms = (n % 10) as i64 * HOUR_MS;
            let base = event(
                "acme",
                &format!("c{n:05}"),
                &format!("e{n}"),
                now - DAY_MS - age_ms,
            );
            if n % 10 < 5 {
                with_text(base, "Where is my refund? Please help")
            } else {
                kind(base, pb::InteractionKind::Purchase)
            }
        })
        .collect();
    for chunk in events.chunks(5_000) {
        let summary = t.ingest_all(chunk.to_vec()).await;
        assert_eq!(summary.accepted, chunk.len() as u64, "{summary:?}");
    }
    let page = |page_token: String| pb::TopCustomersRequest {
        tenant_id: "acme".into(),
        limit: 1000,
        page_token,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    // Bounded: 10 full pages, then one empty.
    for round in 0..12 {
        let answer = t
            .scoring
            .top_customers(page(token.clone()))
            .await
            .unwrap()
            .into_inner();
        seen.extend(answer.customers.iter().map(|c| c.customer_id.clone()));
        // The list moves: new customers and new events arrive between pages.
        let late = vec![
            event(
                "acme",
                &format!("new{round}"),
                &format!("n{round}"),
                now + MINUTE_MS,
            ),
            with_text(
                event("acme", "c00001", &format!("x{round}"), now + MINUTE_MS),
                "still waiting!!",
            ),
        ];
        t.ingest_all(late).await;
        token = answer.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty(), "paging ended");
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), CUSTOMERS, "each once");
    assert_eq!(distinct.len(), CUSTOMERS, "no repeats");
    assert!(
        seen.iter().all(|id| id.starts_with('c')),
        "none from after the pinned time"
    );

    // A token is bound to its filters, and must be one the server issued.
    let first = t
        .scoring
        .top_customers(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    let mut other = page(first.next_page_token.clone());
    other.min_retention_risk = 0.5;
    let status = t.scoring.top_customers(other).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("page_token: was issued for other filters"),
        "{status}"
    );
    for bad in ["zz", "éé", "70317c"] {
        let status = t.scoring.top_customers(page(bad.into())).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
        assert!(status.message().starts_with("page_token:"), "{status}");
    }
}
