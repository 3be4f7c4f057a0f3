//! An HTML timeline of a failed run (`timeline.html`): one lane per client, one bar per
//! operation from invocation to return (unknown outcomes open-ended, failed ones red), the
//! faults shaded behind, for the key and time window where the check got stuck.

use std::fmt::Write as _;

use super::Fault;
use super::history::{Op, Outcome};

/// Fill of a fault's span, and a bar's edge.
const FAULT: &str = "#fde8c8";
const EDGE: &str = "#456";

/// Time shown either side of the focus.
const WINDOW_NS: u64 = 300_000_000;

/// The page for `ops` on `focus` = (key, time) (the first key and the run's end without one).
pub fn html(
    kind: &str,
    seed: u64,
    ops: &[Op],
    faults: &[Fault],
    focus: Option<(&str, u64)>,
) -> String {
    let (key, t) = focus.unwrap_or_else(|| {
        let last = ops
            .iter()
            .map(|o| o.end.min(o.start + 1))
            .max()
            .unwrap_or(0);
        (ops.first().map_or("", |o| o.key.as_str()), last)
    });
    let (from, to) = (t.saturating_sub(WINDOW_NS), t + WINDOW_NS);
    let shown: Vec<&Op> = ops
        .iter()
        .filter(|o| o.key == key && o.start <= to && o.end.max(o.start) >= from)
        .collect();
    let mut clients: Vec<usize> = shown.iter().map(|o| o.client).collect();
    clients.sort_unstable();
    clients.dedup();
    let (width, lane) = (1400.0, 34.0);
    let x = |ns: u64| (ns.clamp(from, to) - from) as f64 / (to - from) as f64 * width + 60.0;
    let height = lane * (clients.len() as f64 + 1.0) + 20.0;
    let mut svg = String::new();
    for f in faults.iter().filter(|f| f.end >= from && f.start <= to) {
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="0" width="{:.1}" height="{height}" fill="{FAULT}"><title>{}</title></rect><text x="{:.1}" y="12" font-size="10">{}</text>"#,
            x(f.start),
            (x(f.end.max(f.start + 1_000_000)) - x(f.start)).max(2.0),
            f.kind,
            x(f.start) + 2.0,
            f.kind
        );
    }
    for (lane_index, client) in clients.iter().enumerate() {
        let y = lane * (lane_index as f64 + 1.0);
        let _ = write!(
            svg,
            r#"<text x="0" y="{:.1}" font-size="11">c{client}</text>"#,
            y + 14.0
        );
        for op in shown.iter().filter(|o| o.client == *client) {
            let color = match op.outcome {
                Outcome::Failed(_) => "#e88",
                Outcome::Unknown(_) => "#bbb",
                _ => "#9bd",
            };
            let end = if matches!(op.outcome, Outcome::Unknown(_)) {
                to
            } else {
                op.end
            };
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="22" fill="{color}" stroke="{EDGE}"><title>{}</title></rect>"#,
                x(op.start),
                (x(end) - x(op.start)).max(2.0),
                escape(&op.describe())
            );
        }
    }
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>{kind} seed {seed}: {key}</title>\
         <body style=\"font-family:sans-serif\"><h1>{kind}, seed {seed}: key {}</h1>\
         <p>{:.1} ms to {:.1} ms since the run began. Bars: one operation from invocation to \
         return (grey: unknown outcome, open-ended; red: failed saying nothing was applied); \
         hover for what it was told. Shaded: faults.</p>\
         <svg width=\"{}\" height=\"{height}\">{svg}</svg></body>\n",
        escape(key),
        from as f64 / 1e6,
        to as f64 / 1e6,
        width + 80.0
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
