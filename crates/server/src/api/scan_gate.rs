//! The gate full scans of a tenant's customers wait at (ScoringService's `as_of` queries, later
//! pages, filtered queries and ClaimNext; RoutingService.GetServiceLevels).

use crate::api::error::ApiError;
use std::sync::Arc;

/// Full-scan queries running at once: half the cores (at least one), so scans never take every
/// core from live queries and ingest.
fn full_scan_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

/// Scans one tenant may have waiting; beyond it a scan is refused RESOURCE_EXHAUSTED.
const MAX_SCANS_WAITING_PER_TENANT: usize = 32;

/// Where queries that may evaluate every customer of a tenant wait: off the runtime's workers
/// (they run on the blocking pool), at most `full_scan_concurrency` at once, and fair per
/// tenant: a tenant runs one scan at a time (its lane), and the shared permits are handed out
/// first come first served, so one tenant's scans queue behind each other, never ahead of
/// another tenant's. A tenant with `MAX_SCANS_WAITING_PER_TENANT` scans waiting is refused
/// more. A lane exists only while its tenant has scans waiting or running.
pub struct ScanGate {
    permits: Arc<tokio::sync::Semaphore>,
    /// Per tenant: its lane and the scans waiting for it or running.
    lanes:
        std::sync::Mutex<std::collections::HashMap<String, (Arc<tokio::sync::Semaphore>, usize)>>,
}

impl Default for ScanGate {
    /// A gate with `full_scan_concurrency` permits and no lanes.
    fn default() -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(full_scan_concurrency())),
            lanes: std::sync::Mutex::default(),
        }
    }
}

impl ScanGate {
    /// Runs `scan` for `tenant_id` on the blocking pool once its turn comes.
    pub async fn run<T: Send + 'static>(
        &self,
        tenant_id: &str,
        scan: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let lane = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let (lane, users) = lanes
                .entry(tenant_id.to_string())
                .or_insert_with(|| (Arc::new(tokio::sync::Semaphore::new(1)), 0));
            if *users > MAX_SCANS_WAITING_PER_TENANT {
                return Err(ApiError::ResourceExhausted(format!(
                    "tenant_id: {MAX_SCANS_WAITING_PER_TENANT} queries of this tenant are \
                     already waiting to scan its customers; retry later"
                )));
            }
            *users += 1;
            Arc::clone(lane)
        };
        // Leaves the lane whatever happens to this call (a client gone while it waits too).
        let _leave = LaneUser {
            gate: self,
            tenant_id,
        };
        let lane = lane.acquire_owned().await;
        let permit = Arc::clone(&self.permits).acquire_owned().await;
        let (Ok(lane), Ok(permit)) = (lane, permit) else {
            return Err(ApiError::Unavailable("the server is shutting down".into()));
        };
        tokio::task::spawn_blocking(move || {
            let answer = scan();
            drop((lane, permit));
            answer
        })
        .await
        .map_err(|error| ApiError::Internal(format!("a scan failed: {error}")))
    }
}

/// One scan's place in its tenant's lane, given up when dropped.
struct LaneUser<'a> {
    gate: &'a ScanGate,
    tenant_id: &'a str,
}

impl Drop for LaneUser<'_> {
    fn drop(&mut self) {
        let mut lanes = self.gate.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, users)) = lanes.get_mut(self.tenant_id) {
            *users -= 1;
            if *users == 0 {
                lanes.remove(self.tenant_id);
            }
        }
    }
}
