//! The Prometheus text exposition format (version 0.0.4): the registry's families in
//! [`FAMILIES`] order, then the process's own series, read at scrape time.

use std::fmt::Write as _;

use super::{FAMILIES, Family, MetricKind, Metrics};

impl Metrics {
    /// The registry, then the `process_*` series, in the Prometheus text format.
    pub fn render(&self) -> String {
        let values = self.values.lock().map(|v| v.clone()).unwrap_or_default();
        let histograms = self.histograms.lock().map(|h| h.clone()).unwrap_or_default();
        let mut out = String::new();
        for family in FAMILIES {
            header(&mut out, family.name, family.help, family.kind);
            for ((name, labels), value) in values.iter().filter(|((n, _), _)| *n == family.name) {
                let _ = writeln!(out, "{name}{} {}", label_text(family.labels, labels, None), number(*value));
            }
            for ((name, labels), h) in histograms.iter().filter(|((n, _), _)| *n == family.name) {
                histogram(&mut out, family, name, labels, h);
            }
        }
        for sample in super::process::sample() {
            header(&mut out, sample.name, sample.help, sample.kind);
            let _ = writeln!(out, "{} {}", sample.name, number(sample.value));
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: MetricKind) {
    let kind = match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram(_) => "histogram",
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, family: &Family, name: &str, labels: &[String], h: &super::Histogram) {
    for (bound, count) in h.bounds.iter().zip(&h.buckets) {
        let le = number(*bound);
        let _ = writeln!(out, "{name}_bucket{} {count}", label_text(family.labels, labels, Some(&le)));
    }
    let _ = writeln!(out, "{name}_bucket{} {}", label_text(family.labels, labels, Some("+Inf")), h.count);
    let _ = writeln!(out, "{name}_sum{} {}", label_text(family.labels, labels, None), number(h.sum));
    let _ = writeln!(out, "{name}_count{} {}", label_text(family.labels, labels, None), h.count);
}

fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> =
        names.iter().zip(values).map(|(name, value)| format!("{name}=\"{}\"", escape(value))).collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() { String::new() } else { format!("{{{}}}", pairs.join(",")) }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { value.to_string() }
}
