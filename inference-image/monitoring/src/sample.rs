//! One reading of the system layer (the service's process and its host), kept with its minute.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SystemSample {
    /// Unix seconds.
    pub at: i64,
    /// Since the previous sample; 100 = one core busy.
    pub process_cpu_percent: f64,
    pub process_rss_bytes: u64,
    /// Since the previous sample; 100 = every core busy.
    pub host_cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    /// Counters since boot, summed over every interface but loopback.
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
}
