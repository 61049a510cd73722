//! The inference service's monitoring, as data: the model card, the fixed bins every minute bucket
//! counts into, the buckets themselves (counts and sums only, so buckets merge by addition), and
//! what is computed from a window of them (the summary with its drift statistics, one metric's
//! series). The service records buckets and answers from them; the console fetches a fleet's
//! buckets from every replica, merges them minute by minute and computes the very same summary
//! and series, so a fleet's drift is measured on its merged histograms, not averaged.

pub mod bins;
pub mod bucket;
pub mod card;
pub mod drift;
pub mod layout;
pub mod sample;
pub mod series;
pub mod stats;
pub mod summary;
pub mod truth;

use std::time::{SystemTime, UNIX_EPOCH};

use card::ModelCard;
use layout::Layout;

/// Minutes of history kept (25 h, so a 24 h window is always complete).
pub const RETENTION_MINUTES: i64 = 25 * 60;

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the summary and the series read besides the buckets: the model, its bin layout, and the
/// serving process's own gauges (a fleet's are the sums over its replicas).
pub struct View<'a> {
    pub card: &'a ModelCard,
    pub layout: &'a Layout,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Monitoring events dropped because the recorder fell behind.
    pub dropped_events: u64,
}
