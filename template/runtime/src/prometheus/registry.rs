//! The store behind the `metrics` macros: each series is a few atomics,
//! updated in place where the event happens and read by a scrape.
//!
//! Why written here rather than taken from an exporter crate: the exporter
//! this replaces kept every histogram sample in memory until a periodic
//! upkeep task folded it into its bucket, so its memory grew with the
//! request rate, and it brought more than a dozen crates of its own. Here a
//! sample lands in its bucket as it is recorded: a series has a fixed size,
//! and nothing has to run between scrapes.

use std::{
    collections::HashMap,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use super::exposition::Exposition;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Every series the process has recorded, with the descriptions the code
/// gave them. Series are never removed: label values must come from small
/// fixed sets (see the module above).
pub struct Registry {
    /// Bucket bounds of every histogram, ascending.
    bounds: &'static [f64],
    counters: RwLock<HashMap<Key, Arc<AtomicU64>>>,
    /// Gauges hold the bits of an `f64`, as the `metrics` crate expects.
    gauges: RwLock<HashMap<Key, Arc<AtomicU64>>>,
    histograms: RwLock<HashMap<Key, Arc<Buckets>>>,
    descriptions: RwLock<HashMap<String, SharedString>>,
}

/// A point-in-time copy of one kind of series, sorted by name and labels.
pub type Snapshot<T> = Vec<(Key, T)>;

impl Registry {
    /// A registry whose histograms all use `bounds` (ascending).
    #[must_use]
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.is_sorted(), "histogram bounds must ascend");
        Self {
            bounds,
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
            descriptions: RwLock::default(),
        }
    }

    /// Every series in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        Exposition(self).to_string()
    }

    /// The bucket bounds every histogram uses.
    #[must_use]
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// The description given for the series called `name`, if any.
    #[must_use]
    pub fn description(&self, name: &str) -> Option<SharedString> {
        read(&self.descriptions).get(name).cloned()
    }

    /// Every counter's series and value now.
    #[must_use]
    pub fn counters(&self) -> Snapshot<u64> {
        snapshot(&self.counters, |value| value.load(Ordering::Relaxed))
    }

    /// Every gauge's series and value now.
    #[must_use]
    pub fn gauges(&self) -> Snapshot<f64> {
        snapshot(&self.gauges, |value| {
            f64::from_bits(value.load(Ordering::Relaxed))
        })
    }

    /// Every histogram's series and buckets now.
    #[must_use]
    pub fn histograms(&self) -> Snapshot<HistogramSnapshot> {
        snapshot(&self.histograms, Buckets::snapshot)
    }

    fn describe(&self, name: &KeyName, description: SharedString) {
        write(&self.descriptions).insert(name.as_str().to_owned(), description);
    }
}

impl Recorder for Registry {
    fn describe_counter(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&name, description);
    }

    fn describe_gauge(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&name, description);
    }

    fn describe_histogram(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&name, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(get_or_insert(&self.counters, key, AtomicU64::default))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(get_or_insert(&self.gauges, key, AtomicU64::default))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        debug_assert!(
            key.name().ends_with("_seconds"),
            "{} would get bucket bounds in seconds; give it bounds of its own",
            key.name()
        );
        Histogram::from_arc(get_or_insert(&self.histograms, key, || {
            Buckets::new(self.bounds)
        }))
    }
}

/// One histogram: how many samples fell in each bucket, and their sum.
struct Buckets {
    bounds: &'static [f64],
    /// Per bucket, not cumulative: entry `i` counts the samples above bound
    /// `i - 1` and at most bound `i`; the last entry, those above every bound.
    counts: Box<[AtomicU64]>,
    /// The sum of the samples, as the bits of an `f64`.
    sum: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::default()).collect(),
            sum: AtomicU64::default(),
        }
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut seen = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|count| {
                seen += count.load(Ordering::Relaxed);
                seen
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

impl HistogramFn for Buckets {
    fn record(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

/// A histogram as a scrape reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Samples at most each bound, in the order of the bounds, then all of
    /// them (the `+Inf` bucket, which is also the count).
    pub cumulative: Vec<u64>,
    pub sum: f64,
}

impl HistogramSnapshot {
    /// How many samples were recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or_default()
    }
}

/// The series registered under `key`, registered now if it is new. Series
/// are looked up far more often than they are added, hence the read lock
/// first.
fn get_or_insert<T>(
    series: &RwLock<HashMap<Key, Arc<T>>>,
    key: &Key,
    new: impl FnOnce() -> T,
) -> Arc<T> {
    if let Some(found) = read(series).get(key) {
        return Arc::clone(found);
    }
    Arc::clone(
        write(series)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(new())),
    )
}

fn snapshot<T, V>(series: &RwLock<HashMap<Key, Arc<T>>>, value: impl Fn(&T) -> V) -> Snapshot<V> {
    let mut copy: Snapshot<V> = read(series)
        .iter()
        .map(|(key, series)| (key.clone(), value(series)))
        .collect();
    copy.sort_by(|(a, _), (b, _)| a.cmp(b));
    copy
}

// A panic while holding one of these locks leaves the maps whole (every
// update is a single insert), so a poisoned lock is used as it is.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 3] = [0.1, 1.0, 10.0];

    #[test]
    fn a_sample_counts_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let registry = Registry::new(&BOUNDS);
        let key = Key::from_name("latency_seconds");
        let histogram =
            registry.register_histogram(&key, &Metadata::new("", metrics::Level::INFO, None));
        for sample in [0.05, 0.1, 0.5, 1.0, 20.0, f64::NAN] {
            histogram.record(sample);
        }
        let [(recorded, snapshot)] = &registry.histograms()[..] else {
            panic!("one histogram expected");
        };
        assert_eq!(recorded, &key);
        // At most 0.1: 0.05 and 0.1; at most 1: and 0.5, 1.0; +Inf: and 20.
        // NaN is not a sample.
        assert_eq!(snapshot.cumulative, [2, 4, 4, 5]);
        assert_eq!(snapshot.count(), 5);
        assert!((snapshot.sum - 21.65).abs() < 1e-9, "{}", snapshot.sum);
    }

    #[test]
    fn a_key_registered_twice_is_one_series() {
        let registry = Registry::new(&BOUNDS);
        let key = Key::from_parts("requests_total", vec![metrics::Label::new("route", "/a")]);
        let metadata = Metadata::new("", metrics::Level::INFO, None);
        registry.register_counter(&key, &metadata).increment(2);
        registry.register_counter(&key, &metadata).increment(3);
        registry
            .register_gauge(&Key::from_name("depth"), &metadata)
            .set(-1.5);
        assert_eq!(registry.counters(), vec![(key, 5)]);
        assert_eq!(registry.gauges(), vec![(Key::from_name("depth"), -1.5)]);
    }
}
