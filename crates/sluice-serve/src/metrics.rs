//! Server metrics in the Prometheus text exposition format (version 0.0.4): requests by route
//! and status code, latency and batch-size histograms, rows scored, load shed, in-flight
//! requests, and which model versions are being served.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const ROW_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 100000.0];

#[derive(Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, buckets: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; buckets.len()];
        }
        for (i, b) in buckets.iter().enumerate() {
            if value <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, buckets: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in buckets.iter().enumerate() {
            let _ =
                writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Escape a label value as the exposition format requires.
/// A metric's `# HELP` and `# TYPE` lines.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped for the text format.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[derive(Default)]
pub struct Metrics {
    /// route -> status code -> count.
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    batch_rows: Mutex<BTreeMap<String, Histogram>>,
    rows: Mutex<BTreeMap<String, u64>>,
    arms: Mutex<BTreeMap<(String, &'static str, u32), u64>>,
    pub(crate) shed: AtomicU64,
    pub(crate) in_flight: AtomicI64,
}

impl Metrics {
    pub(crate) fn request(&self, route: &str, code: u16, seconds: f64) {
        // Look up before inserting: the key is allocated once per route, not once per request.
        if let Ok(mut r) = self.requests.lock() {
            match r.get_mut(route) {
                Some(codes) => *codes.entry(code).or_default() += 1,
                None => {
                    r.entry(route.to_string()).or_default().insert(code, 1);
                }
            }
        }
        if let Ok(mut l) = self.latency.lock() {
            match l.get_mut(route) {
                Some(h) => h.observe(LATENCY_BUCKETS, seconds),
                None => l.entry(route.to_string()).or_default().observe(LATENCY_BUCKETS, seconds),
            }
        }
    }

    /// One request's routing under a traffic policy: `primary`, `canary` or `shadow`.
    pub(crate) fn arm(&self, model: &str, arm: &'static str, version: u32) {
        if let Ok(mut a) = self.arms.lock() {
            *a.entry((model.to_string(), arm, version)).or_default() += 1;
        }
    }

    pub(crate) fn scored(&self, model: &str, rows: usize) {
        if let Ok(mut r) = self.rows.lock() {
            *r.entry(model.to_string()).or_default() += rows as u64;
        }
        if let Ok(mut b) = self.batch_rows.lock() {
            b.entry(model.to_string()).or_default().observe(ROW_BUCKETS, rows as f64);
        }
    }

    /// The exposition text; `versions` are the (model, version) pairs currently served.
    /// `log`: rows written to and entries dropped from the prediction log, when logging is on.
    pub(crate) fn render(&self, versions: &[(String, u32)], log: Option<(u64, u64)>) -> String {
        let mut out = String::new();
        header(&mut out, "sluice_requests_total", "counter", "HTTP requests answered, by route and status code.");
        if let Ok(r) = self.requests.lock() {
            for (route, codes) in r.iter() {
                for (code, n) in codes {
                    let _ = writeln!(out, "sluice_requests_total{{route=\"{}\",code=\"{code}\"}} {n}", escape(route));
                }
            }
        }
        header(&mut out, "sluice_request_duration_seconds", "histogram", "Time to answer a request, by route.");
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                h.render(
                    &mut out,
                    "sluice_request_duration_seconds",
                    &format!("route=\"{}\"", escape(route)),
                    LATENCY_BUCKETS,
                );
            }
        }
        header(&mut out, "sluice_batch_rows", "histogram", "Rows per scoring call, by model.");
        if let Ok(b) = self.batch_rows.lock() {
            for (model, h) in b.iter() {
                h.render(&mut out, "sluice_batch_rows", &format!("model=\"{}\"", escape(model)), ROW_BUCKETS);
            }
        }
        header(&mut out, "sluice_rows_scored_total", "counter", "Rows scored, by model.");
        if let Ok(r) = self.rows.lock() {
            for (model, n) in r.iter() {
                let _ = writeln!(out, "sluice_rows_scored_total{{model=\"{}\"}} {n}", escape(model));
            }
        }
        header(
            &mut out,
            "sluice_policy_requests_total",
            "counter",
            "Requests by traffic-policy arm (primary, canary, shadow) and the version that scored them.",
        );
        if let Ok(a) = self.arms.lock() {
            for ((model, arm, version), n) in a.iter() {
                let _ = writeln!(
                    out,
                    "sluice_policy_requests_total{{model=\"{}\",arm=\"{arm}\",version=\"{version}\"}} {n}",
                    escape(model)
                );
            }
        }
        header(
            &mut out,
            "sluice_requests_shed_total",
            "counter",
            "Requests refused with 503 because the server was full.",
        );
        let _ = writeln!(out, "sluice_requests_shed_total {}", self.shed.load(Ordering::Relaxed));
        header(&mut out, "sluice_requests_in_flight", "gauge", "Requests being handled now.");
        let _ = writeln!(out, "sluice_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        if let Some((written, dropped)) = log {
            header(&mut out, "sluice_prediction_log_rows_total", "counter", "Rows written to the prediction log.");
            let _ = writeln!(out, "sluice_prediction_log_rows_total {written}");
            header(
                &mut out,
                "sluice_prediction_log_dropped_total",
                "counter",
                "Log entries dropped because the log queue was full.",
            );
            let _ = writeln!(out, "sluice_prediction_log_dropped_total {dropped}");
        }
        header(&mut out, "sluice_model_info", "gauge", "The model versions being served (value 1).");
        for (model, version) in versions {
            let _ = writeln!(out, "sluice_model_info{{model=\"{}\",version=\"{version}\"}} 1", escape(model));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let m = Metrics::default();
        m.request("/ping", 200, 0.0007);
        m.request("/ping", 200, 0.3);
        let text = m.render(&[("m".into(), 3)], None);
        assert!(text.contains("sluice_request_duration_seconds_bucket{route=\"/ping\",le=\"0.0005\"} 0"), "{text}");
        assert!(text.contains("sluice_request_duration_seconds_bucket{route=\"/ping\",le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("sluice_request_duration_seconds_bucket{route=\"/ping\",le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("sluice_requests_total{route=\"/ping\",code=\"200\"} 2"));
        assert!(text.contains("sluice_model_info{model=\"m\",version=\"3\"} 1"));
    }
}
