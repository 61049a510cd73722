//! System layer: this process's CPU and memory, and the host's CPU, memory, disk (the filesystem
//! holding the state directory) and network counters, read from /proc and statvfs on Linux.

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use monitoring_core::sample::SystemSample;

pub struct SystemSampler {
    disk_path: PathBuf,
    ticks_per_second: f64,
    previous_process: Option<(Instant, u64)>,
    previous_host: Option<(u64, u64)>,
}

impl SystemSampler {
    /// `disk_path`: a path on the filesystem whose use is reported (the state directory).
    pub fn new(disk_path: &Path) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            disk_path: disk_path.to_path_buf(),
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            previous_process: None,
            // Primed, so that the first sample's host CPU covers the time since start-up rather
            // than reading 0 (it enters the window's mean that the host-cpu rule watches).
            previous_host: host_cpu_ticks(),
        }
    }

    /// Reads everything once. Values that cannot be read on this platform stay 0.
    pub fn sample(&mut self, at: i64) -> SystemSample {
        let mut s = SystemSample {
            at,
            ..SystemSample::default()
        };
        let now = Instant::now();
        if let Some(ticks) = process_cpu_ticks() {
            if let Some((then, before)) = self.previous_process {
                let secs = now.duration_since(then).as_secs_f64();
                if secs > 0.0 {
                    s.process_cpu_percent = 100.0 * (ticks.saturating_sub(before)) as f64
                        / self.ticks_per_second
                        / secs;
                }
            }
            self.previous_process = Some((now, ticks));
        }
        if let Some((busy, total)) = host_cpu_ticks() {
            if let Some((b0, t0)) = self.previous_host {
                let dt = total.saturating_sub(t0);
                if dt > 0 {
                    s.host_cpu_percent = 100.0 * busy.saturating_sub(b0) as f64 / dt as f64;
                }
            }
            self.previous_host = Some((busy, total));
        }
        s.process_rss_bytes = status_kib("VmRSS").unwrap_or(0) * 1024;
        if let Some((total, available)) = memory() {
            s.memory_total_bytes = total;
            s.memory_used_bytes = total.saturating_sub(available);
        }
        if let Some((total, used)) = disk(&self.disk_path) {
            s.disk_total_bytes = total;
            s.disk_used_bytes = used;
        }
        if let Some((rx, tx)) = network() {
            s.network_rx_bytes = rx;
            s.network_tx_bytes = tx;
        }
        s
    }
}

fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn host_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&status, key)
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn memory() -> Option<(u64, u64)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some((
        kib_field(&info, "MemTotal")? * 1024,
        kib_field(&info, "MemAvailable")? * 1024,
    ))
}

fn disk(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    Some((total, total.saturating_sub(free)))
}

fn network() -> Option<(u64, u64)> {
    let dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    let mut rx = 0;
    let mut tx = 0;
    for line in dev.lines().skip(2) {
        let (name, counters) = line.split_once(':')?;
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += v.first().copied().unwrap_or(0);
        tx += v.get(8).copied().unwrap_or(0);
    }
    Some((rx, tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_machine() {
        let mut sampler = SystemSampler::new(Path::new("/"));
        let first = sampler.sample(1);
        assert!(first.process_rss_bytes > 1024 * 1024, "{first:?}");
        assert!(first.memory_total_bytes >= first.memory_used_bytes && first.memory_used_bytes > 0);
        assert!(first.disk_total_bytes >= first.disk_used_bytes && first.disk_used_bytes > 0);
        // Burn some CPU so the second sample sees this process working.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let second = sampler.sample(2);
        assert!(second.process_cpu_percent > 20.0, "{second:?}");
        assert!(
            second.host_cpu_percent > 0.0 && second.host_cpu_percent <= 100.0,
            "{second:?}"
        );
    }

    #[test]
    fn reads_kib_fields() {
        let text = "Name:\tx\nVmRSS:\t   2048 kB\nVmHWM:\t4096 kB\n";
        assert_eq!(kib_field(text, "VmRSS"), Some(2048));
        assert_eq!(kib_field(text, "VmSwap"), None);
    }
}
