//! Server metrics in the Prometheus text exposition format (version 0.0.4): requests by route
//! and status code, latency and batch-size histograms, rows scored, load shed, in-flight
//! requests, and which model versions are being served.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const ROW_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 100000.0];

/// A histogram over fixed buckets, updated without locks: a count per bucket (the last one past
/// every bound; rendering accumulates them) and the sum in integer units of `unit`.
struct Histogram {
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl Histogram {
    fn new(buckets: &[f64]) -> Self {
        Self { counts: (0..=buckets.len()).map(|_| AtomicU64::new(0)).collect(), sum: AtomicU64::new(0) }
    }

    /// `value` in the histogram's own unit, `units` the same value as a whole number of `unit`.
    fn observe(&self, buckets: &[f64], value: f64, units: u64) {
        let at = buckets.iter().position(|b| value <= *b).unwrap_or(buckets.len());
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(units, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, buckets: &[f64], unit: f64) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, count) in buckets.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum.load(Ordering::Relaxed) as f64 * unit);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
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

/// Requests by status code and latency of one route.
struct RouteStats {
    route: String,
    codes: Vec<(u16, AtomicU64)>,
    latency: Histogram,
}

/// The status codes counted without a lock; others are rare enough for one.
const CODES: [u16; 10] = [200, 400, 401, 404, 405, 413, 415, 422, 500, 503];

/// Rows scored and scoring-call sizes of one model name.
struct ModelStats {
    model: String,
    rows: AtomicU64,
    batch_rows: Histogram,
}

/// Requests per traffic-policy arm of one model version.
struct VersionStats {
    model: String,
    version: u32,
    arms: [AtomicU64; ARMS.len()],
}

const ARMS: [&str; 4] = ["primary", "canary", "shadow", "pinned"];

/// The server's counters. Per request they take no lock that a writer holds but the first time
/// a route, model or version is seen (a read lock and atomic adds otherwise), and allocate
/// nothing: on a busy 2-core server, contended mutexes here cost a thread switch each.
#[derive(Default)]
pub struct Metrics {
    routes: RwLock<Vec<RouteStats>>,
    /// Codes outside [`CODES`], by route.
    other_codes: Mutex<BTreeMap<(String, u16), u64>>,
    models: RwLock<Vec<ModelStats>>,
    versions: RwLock<Vec<VersionStats>>,
    pub(crate) shed: AtomicU64,
    pub(crate) in_flight: AtomicI64,
}

/// Find the entry `matches` picks under a read lock and update it, adding it (made by `make`)
/// under the write lock the first time.
fn with_entry<T>(list: &RwLock<Vec<T>>, matches: impl Fn(&T) -> bool, make: impl FnOnce() -> T, update: impl Fn(&T)) {
    if let Ok(entries) = list.read()
        && let Some(entry) = entries.iter().find(|e| matches(e))
    {
        update(entry);
        return;
    }
    if let Ok(mut entries) = list.write() {
        match entries.iter().find(|e| matches(e)) {
            Some(entry) => update(entry),
            None => {
                let entry = make();
                update(&entry);
                entries.push(entry);
            }
        }
    }
}

impl Metrics {
    pub(crate) fn request(&self, route: &str, code: u16, seconds: f64) {
        with_entry(
            &self.routes,
            |r| r.route == route,
            || RouteStats {
                route: route.to_string(),
                codes: CODES.iter().map(|c| (*c, AtomicU64::new(0))).collect(),
                latency: Histogram::new(LATENCY_BUCKETS),
            },
            |r| {
                match r.codes.iter().find(|(c, _)| *c == code) {
                    Some((_, n)) => {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        if let Ok(mut other) = self.other_codes.lock() {
                            *other.entry((route.to_string(), code)).or_default() += 1;
                        }
                    }
                }
                r.latency.observe(LATENCY_BUCKETS, seconds, (seconds * 1e9) as u64);
            },
        );
    }

    /// One request's routing under a traffic policy: `primary`, `canary`, `shadow` or `pinned`.
    pub(crate) fn arm(&self, model: &str, arm: &'static str, version: u32) {
        let Some(at) = ARMS.iter().position(|a| *a == arm) else { return };
        with_entry(
            &self.versions,
            |v| v.version == version && v.model == model,
            || VersionStats { model: model.to_string(), version, arms: Default::default() },
            |v| {
                v.arms[at].fetch_add(1, Ordering::Relaxed);
            },
        );
    }

    pub(crate) fn scored(&self, model: &str, rows: usize) {
        with_entry(
            &self.models,
            |m| m.model == model,
            || ModelStats {
                model: model.to_string(),
                rows: AtomicU64::new(0),
                batch_rows: Histogram::new(ROW_BUCKETS),
            },
            |m| {
                m.rows.fetch_add(rows as u64, Ordering::Relaxed);
                m.batch_rows.observe(ROW_BUCKETS, rows as f64, rows as u64);
            },
        );
    }

    /// The exposition text; `versions` are the (model, version) pairs currently served.
    /// `log`: rows written to and entries dropped from the prediction log, when logging is on.
    pub(crate) fn render(&self, versions: &[(String, u32)], log: Option<(u64, u64)>) -> String {
        let mut out = String::new();
        header(&mut out, "sluice_requests_total", "counter", "HTTP requests answered, by route and status code.");
        let routes = self.routes.read().ok();
        let mut requests: BTreeMap<(String, u16), u64> = self.other_codes.lock().map(|o| o.clone()).unwrap_or_default();
        let mut latency: Vec<&RouteStats> = Vec::new();
        for r in routes.iter().flat_map(|r| r.iter()) {
            for (code, n) in &r.codes {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    requests.insert((r.route.clone(), *code), n);
                }
            }
            latency.push(r);
        }
        for ((route, code), n) in &requests {
            let _ = writeln!(out, "sluice_requests_total{{route=\"{}\",code=\"{code}\"}} {n}", escape(route));
        }
        header(&mut out, "sluice_request_duration_seconds", "histogram", "Time to answer a request, by route.");
        latency.sort_by(|a, b| a.route.cmp(&b.route));
        for r in latency {
            let labels = format!("route=\"{}\"", escape(&r.route));
            r.latency.render(&mut out, "sluice_request_duration_seconds", &labels, LATENCY_BUCKETS, 1e-9);
        }
        drop(routes);
        header(&mut out, "sluice_batch_rows", "histogram", "Rows per scoring call, by model.");
        let models = self.models.read().ok();
        let mut by_model: Vec<&ModelStats> = models.iter().flat_map(|m| m.iter()).collect();
        by_model.sort_by(|a, b| a.model.cmp(&b.model));
        for m in &by_model {
            let labels = format!("model=\"{}\"", escape(&m.model));
            m.batch_rows.render(&mut out, "sluice_batch_rows", &labels, ROW_BUCKETS, 1.0);
        }
        header(&mut out, "sluice_rows_scored_total", "counter", "Rows scored, by model.");
        for m in &by_model {
            let _ = writeln!(
                out,
                "sluice_rows_scored_total{{model=\"{}\"}} {}",
                escape(&m.model),
                m.rows.load(Ordering::Relaxed)
            );
        }
        drop(by_model);
        drop(models);
        header(
            &mut out,
            "sluice_policy_requests_total",
            "counter",
            "Requests by traffic-policy arm (primary, canary, shadow, pinned) and the version that scored them.",
        );
        let mut arms: Vec<(&str, &str, u32, u64)> = Vec::new();
        let counted = self.versions.read().ok();
        for v in counted.iter().flat_map(|v| v.iter()) {
            for (arm, n) in ARMS.iter().zip(&v.arms) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    arms.push((&v.model, arm, v.version, n));
                }
            }
        }
        arms.sort();
        for (model, arm, version, n) in arms {
            let _ = writeln!(
                out,
                "sluice_policy_requests_total{{model=\"{}\",arm=\"{arm}\",version=\"{version}\"}} {n}",
                escape(model)
            );
        }
        drop(counted);
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
