//! `GET /metrics`: Prometheus text exposition (format 0.0.4). Counters run since the process
//! started; every name carries the `mlops_` prefix and base units (seconds, bytes).

use std::fmt::Write;

use super::bins;
use super::Monitor;

pub fn render(monitor: &Monitor) -> String {
    let t = monitor.totals();
    let layout = &monitor.layout;
    let mut out = String::with_capacity(16 * 1024);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };

    family(
        &mut out,
        "mlops_http_requests_total",
        "counter",
        "HTTP responses by route and status class.",
    );
    for (route, r) in &t.routes {
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            if r.status[i] > 0 {
                let _ = writeln!(
                    out,
                    "mlops_http_requests_total{{route=\"{route}\",status=\"{class}\"}} {}",
                    r.status[i]
                );
            }
        }
    }
    family(
        &mut out,
        "mlops_http_request_duration_seconds",
        "histogram",
        "Time from request to response, by route.",
    );
    for (route, r) in &t.routes {
        let mut cumulative = 0u64;
        for (slot, bound) in bins::LATENCY_BOUNDS.iter().enumerate() {
            cumulative += r.latency.get(slot).copied().unwrap_or(0);
            let _ = writeln!(out, "mlops_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "mlops_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
            r.requests()
        );
        let _ = writeln!(
            out,
            "mlops_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
            r.latency_sum_seconds
        );
        let _ = writeln!(
            out,
            "mlops_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
            r.requests()
        );
    }
    family(
        &mut out,
        "mlops_http_requests_in_flight",
        "gauge",
        "Requests being handled now.",
    );
    let _ = writeln!(out, "mlops_http_requests_in_flight {}", monitor.in_flight());
    family(
        &mut out,
        "mlops_http_requests_overloaded_total",
        "counter",
        "Requests refused with 429 because the model was busy.",
    );
    let _ = writeln!(out, "mlops_http_requests_overloaded_total {}", t.overloaded);
    family(
        &mut out,
        "mlops_predict_rejected_requests_total",
        "counter",
        "Predict requests refused for their content.",
    );
    let _ = writeln!(
        out,
        "mlops_predict_rejected_requests_total {}",
        t.rejected_requests
    );
    family(
        &mut out,
        "mlops_predict_rows_total",
        "counter",
        "Rows scored.",
    );
    let _ = writeln!(out, "mlops_predict_rows_total {}", t.rows);
    family(
        &mut out,
        "mlops_predict_anomalies_total",
        "counter",
        "Rows whose reconstruction error exceeded the threshold.",
    );
    let _ = writeln!(out, "mlops_predict_anomalies_total {}", t.anomalies);
    family(
        &mut out,
        "mlops_feature_missing_values_total",
        "counter",
        "Missing (null or absent) values per feature.",
    );
    for (name, f) in layout.feature_names.iter().zip(&t.features) {
        let _ = writeln!(
            out,
            "mlops_feature_missing_values_total{{feature=\"{name}\"}} {}",
            f.missing
        );
    }
    family(
        &mut out,
        "mlops_feature_invalid_values_total",
        "counter",
        "Invalid values (NaN, infinite, non-numeric, implausible) per feature.",
    );
    for (name, f) in layout.feature_names.iter().zip(&t.features) {
        let _ = writeln!(
            out,
            "mlops_feature_invalid_values_total{{feature=\"{name}\"}} {}",
            f.invalid
        );
    }
    family(
        &mut out,
        "mlops_reconstruction_error",
        "histogram",
        "Reconstruction error of scored rows.",
    );
    let mut cumulative = 0u64;
    for (slot, edge) in layout.score_bins.edges.iter().enumerate() {
        cumulative += t.scores.get(slot).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "mlops_reconstruction_error_bucket{{le=\"{edge:e}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "mlops_reconstruction_error_bucket{{le=\"+Inf\"}} {}",
        t.rows
    );
    let _ = writeln!(out, "mlops_reconstruction_error_sum {}", t.error_sum);
    let _ = writeln!(out, "mlops_reconstruction_error_count {}", t.rows);
    if let Some(threshold) = layout.threshold {
        family(
            &mut out,
            "mlops_anomaly_threshold",
            "gauge",
            "The model card's threshold (reconstruction error, or a binary classifier's decision threshold).",
        );
        let _ = writeln!(out, "mlops_anomaly_threshold {threshold}");
    }
    family(
        &mut out,
        "mlops_feedback_labels_total",
        "counter",
        "Ground-truth labels received.",
    );
    let _ = writeln!(
        out,
        "mlops_feedback_labels_total {}",
        t.feedback.len() as u64 + t.feedback_dropped
    );
    family(
        &mut out,
        "mlops_monitor_dropped_events_total",
        "counter",
        "Monitoring events dropped because the recorder fell behind.",
    );
    let _ = writeln!(
        out,
        "mlops_monitor_dropped_events_total {}",
        monitor.dropped_events()
    );
    if let Some(s) = &t.system {
        family(
            &mut out,
            "mlops_process_cpu_percent",
            "gauge",
            "CPU used by this process at the last sample (100 = one core).",
        );
        let _ = writeln!(out, "mlops_process_cpu_percent {}", s.process_cpu_percent);
        family(
            &mut out,
            "mlops_process_resident_memory_bytes",
            "gauge",
            "Resident memory of this process.",
        );
        let _ = writeln!(
            out,
            "mlops_process_resident_memory_bytes {}",
            s.process_rss_bytes
        );
        family(
            &mut out,
            "mlops_host_cpu_percent",
            "gauge",
            "Host CPU busy at the last sample (100 = all cores).",
        );
        let _ = writeln!(out, "mlops_host_cpu_percent {}", s.host_cpu_percent);
        family(
            &mut out,
            "mlops_host_memory_used_bytes",
            "gauge",
            "Host memory in use (total - available).",
        );
        let _ = writeln!(out, "mlops_host_memory_used_bytes {}", s.memory_used_bytes);
        family(
            &mut out,
            "mlops_state_disk_used_bytes",
            "gauge",
            "Used bytes of the filesystem holding the state directory.",
        );
        let _ = writeln!(out, "mlops_state_disk_used_bytes {}", s.disk_used_bytes);
        family(
            &mut out,
            "mlops_host_network_receive_bytes_total",
            "counter",
            "Bytes received on non-loopback interfaces.",
        );
        let _ = writeln!(
            out,
            "mlops_host_network_receive_bytes_total {}",
            s.network_rx_bytes
        );
        family(
            &mut out,
            "mlops_host_network_transmit_bytes_total",
            "counter",
            "Bytes sent on non-loopback interfaces.",
        );
        let _ = writeln!(
            out,
            "mlops_host_network_transmit_bytes_total {}",
            s.network_tx_bytes
        );
    }
    out
}
