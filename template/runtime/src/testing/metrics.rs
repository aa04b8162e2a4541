//! Reading the Prometheus text format that `GET /metrics` serves.

/// A series as the exposition writes it: `name{label="value",...}`, with
/// the labels in the order the code records them.
#[must_use]
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(label, value)| format!("{label}=\"{value}\""))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The value of `series` as written, `None` when absent.
fn raw<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
}

/// The value of `series` (a gauge or a sum), `None` when absent.
///
/// # Panics
/// When the value is not a number.
#[must_use]
pub fn sample(text: &str, series: &str) -> Option<f64> {
    raw(text, series).map(|value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{series} has a non-numeric value: {value}"))
    })
}

/// The value of a counter, a bucket or a whole-number gauge.
///
/// # Panics
/// When the series is absent or its value is not a whole number.
#[must_use]
pub fn count(text: &str, series: &str) -> u64 {
    let value = raw(text, series).unwrap_or_else(|| panic!("/metrics has no {series}:\n{text}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("{series} is not a whole number: {value}"))
}

/// Every sample line names a series with the `nebula_` prefix: no other
/// library's metrics leak in unprefixed.
///
/// # Panics
/// On the first line that does not.
pub fn assert_all_prefixed(text: &str) {
    for line in text.lines() {
        if !line.is_empty() && !line.starts_with('#') {
            assert!(line.starts_with("nebula_"), "unprefixed series: {line}");
        }
    }
}
