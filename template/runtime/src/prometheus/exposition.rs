//! The Prometheus text exposition format, version 0.0.4, of a [`Registry`]:
//! a `# HELP` and `# TYPE` line per metric, then a line per series.

use std::{
    collections::{BTreeMap, HashSet},
    fmt::{self, Display, Formatter, Write},
};

use metrics::Key;

use super::registry::{Registry, Snapshot};

/// The content type of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes every series of a registry, sorted by name and labels.
pub struct Exposition<'a>(pub &'a Registry);

impl Display for Exposition<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        let registry = self.0;
        let mut names = Names::default();
        for (name, series) in names.families(&registry.counters()) {
            header(out, registry, &name, series[0], "counter")?;
            for (key, value) in series {
                writeln!(out, "{name}{} {value}", Labels(key, None))?;
            }
        }
        for (name, series) in names.families(&registry.gauges()) {
            header(out, registry, &name, series[0], "gauge")?;
            for (key, value) in series {
                writeln!(out, "{name}{} {}", Labels(key, None), Number(*value))?;
            }
        }
        let bounds = registry.bounds().iter().chain([&f64::INFINITY]);
        for (name, series) in names.families(&registry.histograms()) {
            header(out, registry, &name, series[0], "histogram")?;
            for (key, histogram) in series {
                for (bound, count) in bounds.clone().zip(&histogram.cumulative) {
                    let le = Some(Number(*bound));
                    writeln!(out, "{name}_bucket{} {count}", Labels(key, le))?;
                }
                let labels = Labels(key, None);
                writeln!(out, "{name}_sum{labels} {}", Number(histogram.sum))?;
                writeln!(out, "{name}_count{labels} {}", histogram.count())?;
            }
        }
        Ok(())
    }
}

/// The metric names written so far. Prometheus rejects a whole scrape that
/// declares a name twice, so a name the code gives to two kinds of metric is
/// kept by the first kind written (and fails a debug build).
#[derive(Default)]
struct Names(HashSet<String>);

impl Names {
    /// The series of a snapshot, grouped by their name as written, without
    /// the names already taken.
    fn families<'a, T>(&mut self, snapshot: &'a Snapshot<T>) -> Vec<(String, Vec<&'a (Key, T)>)> {
        let mut families: BTreeMap<String, Vec<&(Key, T)>> = BTreeMap::new();
        for series in snapshot {
            let name = Identifier::metric(series.0.name()).to_string();
            families.entry(name).or_default().push(series);
        }
        families
            .into_iter()
            .filter(|(name, _)| {
                let new = self.0.insert(name.clone());
                debug_assert!(new, "the metric name {name} is used by two kinds of metric");
                new
            })
            .collect()
    }
}

/// Writes the `# HELP` (when the code described the metric) and `# TYPE`
/// lines of a family.
fn header<T>(
    out: &mut Formatter<'_>,
    registry: &Registry,
    name: &str,
    (first, _): &(Key, T),
    kind: &str,
) -> fmt::Result {
    if let Some(description) = registry.description(first.name()) {
        write!(out, "# HELP {name} ")?;
        escape(out, &description, false)?;
        out.write_char('\n')?;
    }
    writeln!(out, "# TYPE {name} {kind}")
}

/// A metric or label name, with each character the format does not allow
/// written as `_`: a name given in code cannot break the output.
#[derive(Clone, Copy)]
struct Identifier<'a> {
    text: &'a str,
    /// Metric names may contain `:`, label names may not.
    colon: bool,
}

impl<'a> Identifier<'a> {
    fn metric(text: &'a str) -> Self {
        Self { text, colon: true }
    }

    fn label(text: &'a str) -> Self {
        Self { text, colon: false }
    }
}

impl Display for Identifier<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        if self.text.starts_with(|c: char| c.is_ascii_digit()) {
            out.write_char('_')?;
        }
        for c in self.text.chars() {
            let allowed = c.is_ascii_alphanumeric() || c == '_' || (self.colon && c == ':');
            out.write_char(if allowed { c } else { '_' })?;
        }
        Ok(())
    }
}

/// A series' labels in the order the code gave them, with `le` last for a
/// histogram bucket; nothing at all for a series without labels.
struct Labels<'a>(&'a Key, Option<Number>);

impl Display for Labels<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        let Self(key, le) = self;
        if key.labels().len() == 0 && le.is_none() {
            return Ok(());
        }
        out.write_char('{')?;
        for (index, label) in key.labels().enumerate() {
            if index > 0 {
                out.write_char(',')?;
            }
            write!(out, "{}=\"", Identifier::label(label.key()))?;
            escape(out, label.value(), true)?;
            out.write_char('"')?;
        }
        if let Some(le) = le {
            let comma = if key.labels().len() > 0 { "," } else { "" };
            write!(out, "{comma}le=\"{le}\"")?;
        }
        out.write_char('}')
    }
}

/// A sample value or bucket bound, infinities and NaN spelled as the
/// format spells them.
#[derive(Clone, Copy)]
struct Number(f64);

impl Display for Number {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            value if value.is_nan() => out.write_str("NaN"),
            f64::INFINITY => out.write_str("+Inf"),
            f64::NEG_INFINITY => out.write_str("-Inf"),
            value => write!(out, "{value}"),
        }
    }
}

/// Escapes `\` and line feeds, and `"` too in a label value.
fn escape(out: &mut Formatter<'_>, text: &str, quote: bool) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\\' => out.write_str(r"\\")?,
            '\n' => out.write_str(r"\n")?,
            '"' if quote => out.write_str("\\\"")?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use metrics::{Label, Level, Metadata, Recorder, SharedString};

    use super::*;

    const METADATA: Metadata<'static> = Metadata::new("", Level::INFO, None);

    #[test]
    fn every_kind_renders_in_the_text_format() {
        let registry = Registry::new(&[0.5, 1.0]);
        let labelled = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::new(k, v)).collect();
            Key::from_parts(name, labels)
        };
        registry.describe_counter(
            "jobs_total".into(),
            None,
            SharedString::from("Jobs, by \\outcome\nand more"),
        );
        let succeeded = labelled("jobs_total", &[("outcome", "succeeded"), ("queue", "a\"b")]);
        registry
            .register_counter(&succeeded, &METADATA)
            .increment(3);
        registry
            .register_gauge(&Key::from_name("queue.depth"), &METADATA)
            .set(f64::INFINITY);
        let timed = labelled("run_seconds", &[("job", "hook")]);
        let histogram = registry.register_histogram(&timed, &METADATA);
        histogram.record(0.25);
        histogram.record(2.0);

        let expected = "\
# HELP jobs_total Jobs, by \\\\outcome\\nand more
# TYPE jobs_total counter
jobs_total{outcome=\"succeeded\",queue=\"a\\\"b\"} 3
# TYPE queue_depth gauge
queue_depth +Inf
# TYPE run_seconds histogram
run_seconds_bucket{job=\"hook\",le=\"0.5\"} 1
run_seconds_bucket{job=\"hook\",le=\"1\"} 1
run_seconds_bucket{job=\"hook\",le=\"+Inf\"} 2
run_seconds_sum{job=\"hook\"} 2.25
run_seconds_count{job=\"hook\"} 2
";
        assert_eq!(registry.render(), expected);
    }

    #[test]
    fn series_of_one_metric_are_grouped_under_one_header_in_label_order() {
        let registry = Registry::new(&[]);
        for route in ["/b", "/a"] {
            let key = Key::from_parts("requests_total", vec![Label::new("route", route)]);
            registry.register_counter(&key, &METADATA).increment(1);
        }
        let histogram = registry.register_histogram(&Key::from_name("wait_seconds"), &METADATA);
        histogram.record(1.0);
        let expected = "\
# TYPE requests_total counter
requests_total{route=\"/a\"} 1
requests_total{route=\"/b\"} 1
# TYPE wait_seconds histogram
wait_seconds_bucket{le=\"+Inf\"} 1
wait_seconds_sum 1
wait_seconds_count 1
";
        assert_eq!(registry.render(), expected);
    }
}
