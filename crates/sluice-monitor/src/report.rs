//! `sluice monitor report`: one self-contained HTML page (inline CSS and SVG, no scripts, no
//! network) with the summary, the per-column drift table sorted by severity, reference vs
//! current distributions overlaid, drift over time, and the model's metrics over time next to
//! the evaluation-time value. (Alerts are rule evaluations of monitor steps: `sluice monitor
//! alerts` lists them.)

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sluice_profile::drift::ColumnDrift;
use sluice_profile::{ColumnKind, ColumnProfile, Profile};

use crate::performance::Performance;

/// What the report shows.
pub struct ReportInput<'a> {
    pub title: String,
    /// What the reference and current data are (paths, model names).
    pub reference_name: String,
    pub current_name: String,
    pub reference: &'a Profile,
    pub current: &'a Profile,
    /// Drift of the whole current data.
    pub drift: &'a [ColumnDrift],
    /// Drift per window, in time order: (label, columns).
    pub windows: Vec<(String, Vec<ColumnDrift>)>,
    /// Metrics per window (labels as for `windows`) and the evaluation-time metrics.
    pub performance: Option<(&'a Performance, Vec<String>, BTreeMap<String, f64>)>,
    pub generated_at: String,
}

const REF: &str = "#9aa5b1";
const CUR: &str = "#2563eb";
const PALETTE: &[&str] = &["#dc2626", "#2563eb", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn num(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.001 && v.abs() < 1e6) { format!("{v:.4}") } else { format!("{v:.3e}") }
}

/// Reference and current shares over common bins (numbers) or the most frequent values.
fn distribution(r: &ColumnProfile, c: &ColumnProfile) -> Option<(Vec<String>, Vec<f64>, Vec<f64>)> {
    match r.kind {
        ColumnKind::Numeric | ColumnKind::Temporal => {
            let (rk, ck) = (r.state.kll.as_ref()?, c.state.kll.as_ref()?);
            let (rn, cn) = (r.numeric.as_ref()?, c.numeric.as_ref()?);
            let (lo, hi) = (rn.min.min(cn.min), rn.max.max(cn.max));
            if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || rk.count() == 0 || ck.count() == 0 {
                return None;
            }
            let bins = 30;
            let edges: Vec<f64> = (1..=bins).map(|i| lo + (hi - lo) * i as f64 / bins as f64).collect();
            let share = |k: &sluice_profile::Kll| {
                let mut below: Vec<u64> = k.ranks_below(&edges);
                if let Some(last) = below.last_mut() {
                    *last = k.count();
                }
                let mut prev = 0;
                below
                    .into_iter()
                    .map(|u| {
                        let n = u.saturating_sub(prev);
                        prev = u.max(prev);
                        n as f64 / k.count() as f64
                    })
                    .collect::<Vec<f64>>()
            };
            let labels = std::iter::once(lo).chain(edges.iter().copied()).map(|e| format!("{e:.3}")).collect();
            Some((labels, share(rk), share(ck)))
        }
        _ => {
            let (rt, ct) = (r.top.as_ref()?, c.top.as_ref()?);
            let mut values: Vec<&str> = rt.iter().map(|f| f.value.as_str()).take(10).collect();
            for f in ct.iter().take(10) {
                if !values.contains(&f.value.as_str()) {
                    values.push(&f.value);
                }
            }
            values.truncate(14);
            let share = |top: &[sluice_profile::Frequency], n: u64| -> Vec<f64> {
                values
                    .iter()
                    .map(|v| top.iter().find(|f| f.value == *v).map_or(0.0, |f| f.count as f64 / n.max(1) as f64))
                    .collect()
            };
            Some((values.iter().map(|v| v.to_string()).collect(), share(rt, r.count), share(ct, c.count)))
        }
    }
}

/// Overlaid bars: reference filled grey, current outlined blue.
fn bars_svg(labels: &[String], reference: &[f64], current: &[f64], numeric: bool) -> String {
    let (w, h, left, bottom) = (460.0, 170.0, 38.0, if numeric { 22.0 } else { 48.0 });
    let n = reference.len().max(1) as f64;
    let top = reference.iter().chain(current).copied().fold(0.0, f64::max).max(1e-9);
    let bw = (w - left - 6.0) / n;
    let y = |v: f64| 6.0 + (h - bottom - 6.0) * (1.0 - v / top);
    let mut s = format!(r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#);
    let _ = write!(s, r##"<text x="2" y="12" class="axis">{:.0}%</text>"##, top * 100.0);
    let _ = write!(s, r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" class="base"/>"##, h - bottom, w - 6.0, h - bottom);
    for (i, (r, c)) in reference.iter().zip(current).enumerate() {
        let x = left + i as f64 * bw;
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{REF}" opacity="0.75"><title>reference {:.1}%</title></rect>"#,
            y(*r),
            (bw - 1.0).max(0.5),
            (h - bottom - y(*r)).max(0.0),
            r * 100.0
        );
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{CUR}" fill-opacity="0.18" stroke="{CUR}" stroke-width="1.2"><title>current {:.1}%</title></rect>"#,
            x + 0.5,
            y(*c),
            (bw - 2.0).max(0.5),
            (h - bottom - y(*c)).max(0.0),
            c * 100.0
        );
    }
    if numeric {
        let last = labels.len().saturating_sub(1);
        let _ = write!(s, r#"<text x="{left}" y="{}" class="axis">{}</text>"#, h - 6.0, esc(&labels[0]));
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="axis" text-anchor="end">{}</text>"#,
            w - 6.0,
            h - 6.0,
            esc(&labels[last])
        );
    } else {
        for (i, l) in labels.iter().enumerate() {
            let x = left + (i as f64 + 0.5) * bw;
            let short: String = l.chars().take(10).collect();
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{}" class="axis" text-anchor="end" transform="rotate(-35 {x:.1} {})">{}</text>"#,
                h - bottom + 12.0,
                h - bottom + 12.0,
                esc(&short)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Lines over windows; `hline`: a dashed reference value.
fn line_svg(labels: &[String], series: &[(String, Vec<Option<f64>>)], hline: Option<(&str, f64)>) -> String {
    let (w, h, left, bottom) = (920.0, 230.0, 52.0, 40.0);
    let values = series.iter().flat_map(|(_, v)| v.iter().flatten().copied()).chain(hline.map(|(_, v)| v));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return String::new();
    }
    let (lo, hi) = if hi - lo < 1e-9 { (lo - 0.5, hi + 0.5) } else { (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)) };
    let n = labels.len().max(2) as f64 - 1.0;
    let x = |i: usize| left + (w - left - 140.0) * i as f64 / n;
    let y = |v: f64| 8.0 + (h - bottom - 8.0) * (1.0 - (v - lo) / (hi - lo));
    let mut s = format!(r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#);
    for t in 0..=4 {
        let v = lo + (hi - lo) * t as f64 / 4.0;
        let _ = write!(
            s,
            r#"<line x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" class="grid"/><text x="{2}" y="{3:.1}" class="axis" text-anchor="end">{4}</text>"#,
            y(v),
            w - 140.0,
            left - 4.0,
            y(v) + 4.0,
            num(v)
        );
    }
    // At most six labels along the axis, so that long ones (`rows 15000–29999`) never overlap.
    let step = labels.len().div_ceil(6).max(1);
    for (i, l) in labels.iter().enumerate().step_by(step) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="axis" text-anchor="middle">{}</text>"#,
            x(i),
            h - bottom + 16.0,
            esc(l)
        );
    }
    if let Some((name, v)) = hline {
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#111" stroke-dasharray="5 4"/><text x="{2}" y="{3:.1}" class="legend">{4} {5}</text>"##,
            y(v),
            w - 140.0,
            w - 134.0,
            y(v) + 4.0,
            esc(name),
            num(v)
        );
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let points: Vec<String> =
            values.iter().enumerate().filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect();
        let _ = write!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, points.join(" "));
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r#"<circle cx="{px}" cy="{py}" r="2.5" fill="{color}"/>"#);
        }
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}" class="legend">{}</text>"#,
            w - 132.0,
            12.0 + 16.0 * k as f64,
            w - 118.0,
            21.0 + 16.0 * k as f64,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#111;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.muted{color:#6b7280}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:150px}.card b{display:block;font-size:22px}
.bad b{color:#dc2626}.ok b{color:#16a34a}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f3}
th{background:#f9fafb;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.tag{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.yes{background:#fee2e2;color:#991b1b}.no{background:#dcfce7;color:#166534}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:14px}.plot{border:1px solid #eef0f3;border-radius:8px;padding:8px}
.plot h3{font-size:13px;margin:0 0 4px}.axis{font-size:10px;fill:#6b7280}.legend{font-size:11px;fill:#111}
.grid{stroke:#eef0f3}.base{stroke:#9ca3af}.key span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"#;

pub fn render(input: &ReportInput) -> String {
    let drifted: Vec<&ColumnDrift> = input.drift.iter().filter(|d| d.drifted).collect();
    let mut h = String::with_capacity(64 << 10);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&input.title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><div class=\"muted\">reference: {} ({} rows) · current: {} ({} rows) · generated {}</div>",
        esc(&input.title),
        esc(&input.reference_name),
        input.reference.rows,
        esc(&input.current_name),
        input.current.rows,
        esc(&input.generated_at)
    );
    // Summary cards.
    let share = if input.drift.is_empty() { 0.0 } else { drifted.len() as f64 / input.drift.len() as f64 };
    let _ = write!(h, "<div class=\"cards\">");
    let _ = write!(
        h,
        "<div class=\"card {}\"><b>{} / {}</b>columns drifted ({:.0}%)</div>",
        if drifted.is_empty() { "ok" } else { "bad" },
        drifted.len(),
        input.drift.len(),
        share * 100.0
    );
    if !input.windows.is_empty() {
        let bad = input.windows.iter().filter(|(_, c)| c.iter().any(|d| d.drifted)).count();
        let first = input.windows.iter().find(|(_, c)| c.iter().any(|d| d.drifted)).map(|(l, _)| l.as_str());
        let _ = write!(
            h,
            "<div class=\"card {}\"><b>{bad} / {}</b>windows with drift{}</div>",
            if bad == 0 { "ok" } else { "bad" },
            input.windows.len(),
            first.map(|f| format!(", from {}", esc(f))).unwrap_or_default()
        );
    }
    if let Some((p, _, eval)) = &input.performance {
        for (name, v) in p.overall.iter().filter(|(k, _)| ["roc_auc", "rmse", "accuracy"].contains(&k.as_str())) {
            let was = eval.get(name).map(|e| format!(" (evaluation {})", num(*e))).unwrap_or_default();
            let _ = write!(h, "<div class=\"card\"><b>{}</b>{name} on {} labeled rows{was}</div>", num(*v), p.matched);
        }
    }
    h.push_str("</div>");
    // Drift table, most severe first (drifted, then by PSI).
    let _ = write!(
        h,
        "<h2>Drift by column</h2><table><tr><th>column</th><th>type</th><th>drift</th><th>test</th><th>score</th>\
         <th>threshold</th><th>PSI</th><th>Jensen–Shannon</th><th>nulls ref → cur</th></tr>"
    );
    for d in input.drift {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:?}</td><td><span class=\"tag {}\">{}</span></td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}% → {:.1}%</td></tr>",
            esc(&d.column),
            d.kind,
            if d.drifted { "yes" } else { "no" },
            if d.drifted { "drifted" } else { "stable" },
            d.method.label(),
            num(d.score),
            num(d.threshold),
            num(d.psi),
            num(d.jensen_shannon),
            d.null_fraction.0 * 100.0,
            d.null_fraction.1 * 100.0
        );
    }
    h.push_str("</table>");
    // Drift over time.
    if input.windows.len() > 1 {
        let labels: Vec<String> = input.windows.iter().map(|(l, _)| l.clone()).collect();
        let mut top: Vec<(&str, f64)> = input.drift.iter().map(|d| (d.column.as_str(), 0.0)).collect();
        for (_, cols) in &input.windows {
            for d in cols {
                if let Some(t) = top.iter_mut().find(|(n, _)| *n == d.column) {
                    t.1 = f64::max(t.1, d.psi);
                }
            }
        }
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let series: Vec<(String, Vec<Option<f64>>)> = top
            .iter()
            .take(5)
            .map(|(name, _)| {
                let values = input
                    .windows
                    .iter()
                    .map(|(_, cols)| cols.iter().find(|d| d.column == *name).map(|d| d.psi))
                    .collect();
                (format!("PSI {name}"), values)
            })
            .collect();
        let _ = write!(
            h,
            "<h2>Drift over time</h2><div class=\"muted\">PSI per window of the five columns that drifted most (0.1: moderate, 0.2: significant)</div>{}",
            line_svg(&labels, &series, Some(("PSI 0.2", 0.2)))
        );
    }
    // Performance over time.
    if let Some((p, labels, eval)) = &input.performance
        && !p.windows.is_empty()
    {
        let primary = ["roc_auc", "rmse", "accuracy"].into_iter().find(|m| p.overall.contains_key(*m));
        if let Some(metric) = primary {
            let values: Vec<Option<f64>> = p.windows.iter().map(|w| w.metrics.get(metric).copied()).collect();
            let hline = eval.get(metric).map(|v| ("evaluation", *v));
            let _ = write!(
                h,
                "<h2>Model performance over time</h2><div class=\"muted\">{metric} per window on {} labeled rows ({} logged rows not labeled yet); dashed: at evaluation</div>{}",
                p.matched,
                p.unlabeled,
                line_svg(labels, &[(metric.to_string(), values)], hline)
            );
        }
    }
    // Distributions.
    let _ = write!(
        h,
        "<h2>Distributions</h2><div class=\"key\"><span style=\"background:{REF}\"></span>reference<span style=\"background:{CUR}\"></span>current</div><div class=\"grid2\">"
    );
    for d in input.drift {
        let (Some(r), Some(c)) = (input.reference.column(&d.column), input.current.column(&d.column)) else { continue };
        let Some((labels, rs, cs)) = distribution(r, c) else { continue };
        let numeric = matches!(r.kind, ColumnKind::Numeric | ColumnKind::Temporal);
        let _ = write!(
            h,
            "<div class=\"plot\"><h3>{} <span class=\"tag {}\">{}</span> <span class=\"muted\">PSI {}</span></h3>{}</div>",
            esc(&d.column),
            if d.drifted { "yes" } else { "no" },
            if d.drifted { "drifted" } else { "stable" },
            num(d.psi),
            bars_svg(&labels, &rs, &cs, numeric)
        );
    }
    h.push_str("</div></body></html>\n");
    h
}
