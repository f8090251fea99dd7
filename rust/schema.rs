//! The guide's metric schema: every family `ProductionMetricsCollector` defines (names, help, buckets, label
//! names) and its one-call recorders. The one piece of policy in the Rust core, named as such.

use crate::error::Result;
use crate::metrics::collector::Group;
use crate::metrics::family::{Family, FamilySpec, Kind, Series, DEFAULT_SERIES_CAP};
use crate::metrics::registry::Registry;
use crate::metrics::value::{check_non_negative, Invalid};
use crate::multiproc::Mode;
use std::sync::Arc;

/// A value from the record path: a float, or why it is not one (e.g. a str where a number belongs).
pub type Sample = std::result::Result<f64, Invalid>;

/// Request latency buckets in milliseconds, as the pure-Python collector exports them.
pub const LATENCY_BUCKETS_MS: [f64; 10] = [10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// Every family of a `ProductionMetricsCollector`, named `<prefix>_...` exactly as the
/// pure-Python collector names them.
#[derive(Debug)]
pub struct CollectorCore {
    /// `<prefix>_`, or empty for no prefix.
    pub prefix: String,
    pub registry: Arc<Registry>,
    pub requests: Group,
    pub tools: Group,
    pub coordinators: Group,
    pub caches: Group,
    pub cache_size: Arc<Family>,
    pub errors: Arc<Family>,
    pub active_requests: Arc<Series>,
    pub tool_active: Arc<Series>,
    pub tasks_completed: Arc<Series>,
    pub tasks_failed: Arc<Series>,
    pub total_cost: Arc<Series>,
    pub tokens: Arc<Series>,
    pub error_rate: Arc<Series>,
    pub memory: Arc<Series>,
    pub cpu: Arc<Series>,
    pub disk: Arc<Series>,
    pub fds: Arc<Series>,
    pub uptime: Arc<Series>,
}

struct Builder<'a> {
    registry: &'a Registry,
    prefix: String,
    cap: usize,
}

impl Builder<'_> {
    fn family(&self, name: &str, help: &str, kind: Kind, labels: &[&str], extra: bool) -> Result<Arc<Family>> {
        let mut spec = FamilySpec::new(&format!("{}{name}", self.prefix), help, kind, labels);
        spec.extra_labels = extra;
        spec.cap = self.cap;
        if kind == Kind::Histogram {
            spec.buckets = Some(LATENCY_BUCKETS_MS.to_vec());
            spec.percentiles = true;
        }
        self.registry.create(spec)
    }

    fn single(&self, name: &str, help: &str, kind: Kind) -> Result<Arc<Series>> {
        Ok(self.family(name, help, kind, &[], false)?.lookup(&[]).series)
    }

    /// A gauge with how its per-process values combine in multi-process mode.
    fn gauge(&self, name: &str, help: &str, labels: &[&str], mode: Mode) -> Result<Arc<Family>> {
        let mut spec = FamilySpec::new(&format!("{}{name}", self.prefix), help, Kind::Gauge, labels);
        spec.cap = self.cap;
        spec.mode = mode;
        self.registry.create(spec)
    }

    fn single_gauge(&self, name: &str, help: &str, mode: Mode) -> Result<Arc<Series>> {
        Ok(self.gauge(name, help, &[], mode)?.lookup(&[]).series)
    }
}

impl CollectorCore {
    pub fn new(prefix: &str, cap: usize) -> Result<Self> {
        let registry = Arc::new(Registry::new(prefix)?);
        let b = Builder {
            registry: &registry,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}_")
            },
            cap: if cap == 0 { DEFAULT_SERIES_CAP } else { cap },
        };
        use Kind::*;
        let req = ["endpoint", "provider"];
        let requests = Group::new(
            vec![
                b.family("request_total", "Total requests.", Counter, &req, true)?,
                b.family("request_success_total", "Successful requests.", Counter, &req, true)?,
                b.family("request_errors_total", "Failed requests.", Counter, &req, true)?,
                b.family(
                    "request_latency_ms",
                    "Request latency in milliseconds.",
                    Histogram,
                    &req,
                    true,
                )?,
            ],
            b.cap,
        );
        let active_requests = b.single_gauge("active_requests", "Requests in flight.", Mode::LiveSum)?;
        let tools = Group::new(
            vec![
                b.family("tool_calls_total", "Tool executions.", Counter, &["tool"], true)?,
                b.family("tool_errors_total", "Failed tool executions.", Counter, &["tool"], true)?,
                b.family(
                    "tool_duration_ms",
                    "Tool execution time in milliseconds.",
                    Histogram,
                    &["tool"],
                    true,
                )?,
            ],
            b.cap,
        );
        let tool_active = b.single_gauge("tool_active", "Tool executions in progress.", Mode::LiveSum)?;
        let co = ["coordinator"];
        let coordinators = Group::new(
            vec![
                b.family(
                    "coordinator_invocations_total",
                    "Coordinator invocations.",
                    Counter,
                    &co,
                    true,
                )?,
                b.family(
                    "coordinator_errors_total",
                    "Failed coordinator invocations.",
                    Counter,
                    &co,
                    true,
                )?,
                b.family(
                    "coordinator_duration_ms",
                    "Coordinator execution time in milliseconds.",
                    Histogram,
                    &co,
                    true,
                )?,
            ],
            b.cap,
        );
        let tasks_completed = b.single("tasks_completed_total", "Tasks completed successfully.", Counter)?;
        let tasks_failed = b.single("tasks_failed_total", "Tasks that failed.", Counter)?;
        let total_cost = b.single_gauge(
            "total_cost_usd",
            "Total cost of completed tasks in US dollars.",
            Mode::Sum,
        )?;
        let tokens = b.single("tokens_used_total", "Tokens used.", Counter)?;
        // Registration order is exposition order: cache_size sits between misses and evictions.
        let caches = vec![
            b.family("cache_hits_total", "Cache hits.", Counter, &["cache"], false)?,
            b.family("cache_misses_total", "Cache misses.", Counter, &["cache"], false)?,
        ];
        let cache_size = b.gauge("cache_size", "Entries in the cache.", &["cache"], Mode::LiveMostRecent)?;
        let cache_evictions = b.family("cache_evictions_total", "Cache evictions.", Counter, &["cache"], false)?;
        let caches = Group::new([caches, vec![cache_evictions]].concat(), b.cap);
        let errors = b.family("errors_total", "Errors by type.", Counter, &["type"], false)?;
        let error_rate = b.single_gauge(
            "error_rate",
            "Failed requests as a percentage of all requests.",
            Mode::LiveMostRecent,
        )?;
        let memory = b.single_gauge(
            "memory_usage_bytes",
            "Resident memory of the process in bytes.",
            Mode::LiveSum,
        )?;
        let cpu = b.single_gauge("cpu_usage_percent", "CPU use of the process in percent.", Mode::LiveSum)?;
        let disk = b.single_gauge(
            "disk_usage_bytes",
            "Disk space used on the working directory's filesystem.",
            Mode::LiveMax,
        )?;
        let fds = b.single_gauge(
            "open_file_descriptors",
            "Open file descriptors of the process.",
            Mode::LiveSum,
        )?;
        let uptime = b.single_gauge("uptime_seconds", "Seconds since the collector started.", Mode::LiveMax)?;
        Ok(CollectorCore {
            prefix: b.prefix.clone(),
            registry,
            requests,
            tools,
            coordinators,
            caches,
            cache_size,
            errors,
            active_requests,
            tool_active,
            tasks_completed,
            tasks_failed,
            total_cost,
            tokens,
            error_rate,
            memory,
            cpu,
            disk,
            fds,
            uptime,
        })
    }

    /// Counts an outcome (total, then success or error) and observes a duration on a group's
    /// resolved series. A bad duration (or none that is a number) is dropped and counted; the
    /// outcome still counts. Returns the duration series and value when the duration was observed (for its exemplar).
    #[inline]
    pub fn record_outcome<'s>(
        &self,
        series: &'s [Arc<Series>],
        success: bool,
        duration: Sample,
    ) -> Option<(&'s Series, f64)> {
        series[0].inc_int(1);
        // Layouts: [total, success, errors, duration] (requests) or [total, errors, duration].
        match (series.len(), success) {
            (4, true) => series[1].inc_int(1),
            (4, false) => series[2].inc_int(1),
            (_, false) => series[1].inc_int(1),
            (_, true) => {}
        }
        let last = &series[series.len() - 1];
        match duration.and_then(check_non_negative) {
            Ok(v) if last.observe(v) => return Some((last, v)),
            Ok(_) => self.registry.count_invalid(&last.family_name, Invalid::Overflow),
            Err(why) => self.registry.count_invalid(&last.family_name, why),
        }
        None
    }

    pub fn record_task_completion(&self, success: bool, cost: Sample) {
        if success {
            &self.tasks_completed
        } else {
            &self.tasks_failed
        }
        .inc_int(1);
        // A running total like a histogram's sum: an addend that would make it infinite is refused.
        let why = match cost.and_then(check_non_negative) {
            Ok(v) if (self.total_cost.get() + v).is_finite() => return self.total_cost.add(v),
            Ok(_) => Invalid::Overflow,
            Err(why) => why,
        };
        self.registry
            .count_invalid(&format!("{}total_cost_usd", self.prefix), why)
    }

    pub fn record_tokens(&self, n: Sample) {
        let why = match n.and_then(check_non_negative) {
            Ok(v) if self.tokens.inc(v) => return,
            Ok(_) => Invalid::Overflow,
            Err(why) => why,
        };
        self.registry
            .count_invalid(&format!("{}tokens_used_total", self.prefix), why)
    }

    pub fn cache_hit_rate(&self) -> f64 {
        let hits = self.caches.families[0].total();
        let misses = self.caches.families[1].total();
        if hits + misses == 0.0 {
            0.0
        } else {
            hits / (hits + misses) * 100.0
        }
    }

    /// Failed requests as a percentage of all requests (0 with no requests).
    pub fn request_error_rate(&self) -> f64 {
        let total = self.requests.families[0].total();
        if total == 0.0 {
            0.0
        } else {
            self.requests.families[2].total() / total * 100.0
        }
    }

    /// Counts a value refused for a reason the caller determined (e.g. not a number).
    pub fn count_invalid(&self, metric: &str, why: Invalid) {
        self.registry.count_invalid(metric, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{encode, Format};
    use smallvec::SmallVec;

    #[test]
    fn record_request_touches_every_request_family() {
        let c = CollectorCore::new("victor", 100).unwrap();
        let r = c.requests.resolve(&["/chat", "anthropic", "model", "m1"]).series;
        c.record_outcome(&r, true, Ok(123.4));
        c.record_outcome(&r, false, Ok(20.0));
        let text = encode(&c.registry.families(), Format::Text);
        assert!(text.contains("victor_request_total{endpoint=\"/chat\",model=\"m1\",provider=\"anthropic\"} 2.0\n"));
        assert!(
            text.contains("victor_request_errors_total{endpoint=\"/chat\",model=\"m1\",provider=\"anthropic\"} 1.0\n")
        );
        assert!(text
            .contains("victor_request_latency_ms_count{endpoint=\"/chat\",model=\"m1\",provider=\"anthropic\"} 2.0\n"));
        assert_eq!(c.request_error_rate(), 50.0);
    }

    #[test]
    fn tool_success_is_not_an_error() {
        let c = CollectorCore::new("victor", 100).unwrap();
        let r = c.tools.resolve(&["read_file"]).series;
        c.record_outcome(&r, true, Ok(1.0));
        c.record_outcome(&r, false, Ok(1.0));
        assert_eq!(c.tools.families[0].total(), 2.0);
        assert_eq!(c.tools.families[1].total(), 1.0);
        assert_eq!(c.tools.families[2].total(), 2.0);
    }

    #[test]
    fn bad_latency_is_dropped_and_counted() {
        let c = CollectorCore::new("victor", 100).unwrap();
        c.record_outcome(&c.requests.resolve(&["/a", "p"]).series, true, Ok(f64::NAN));
        assert_eq!(c.requests.families[0].total(), 1.0);
        assert_eq!(c.requests.families[3].total(), 0.0);
        assert_eq!(
            c.registry
                .invalid
                .lookup(&["victor_request_latency_ms", "nan"])
                .series
                .get(),
            1.0
        );
    }

    #[test]
    fn sums_that_would_overflow_are_refused_and_counted() {
        let c = CollectorCore::new("victor", 100).unwrap();
        let r = c.requests.resolve(&["/a", "p"]).series;
        c.record_outcome(&r, true, Ok(1e308));
        c.record_outcome(&r, true, Ok(1e308));
        c.record_outcome(&r, true, Err(Invalid::NotANumber));
        assert_eq!(c.requests.families[0].total(), 3.0);
        assert_eq!(c.requests.families[3].total(), 1.0);
        let text = encode(&c.registry.families(), Format::Text);
        assert!(text.contains("victor_request_latency_ms_sum{endpoint=\"/a\",provider=\"p\"} 1e+308\n"));
        for reason in ["overflow", "not_a_number"] {
            let key = ["victor_request_latency_ms", reason];
            assert_eq!(c.registry.invalid.lookup(&key).series.get(), 1.0, "{reason}");
        }
        c.record_tokens(Ok(1e308));
        c.record_tokens(Ok(1e308));
        assert_eq!(c.tokens.get(), 1e308);
    }

    #[test]
    fn extras_are_cleaned_and_sorted() {
        let c = CollectorCore::new("victor", 100).unwrap();
        let mut extras: SmallVec<[(&str, &str); 2]> =
            SmallVec::from_vec(vec![("z", "1"), ("a", "2"), ("bad-name", "3"), ("endpoint", "x")]);
        c.requests.clean_extras(&c.registry, &mut extras);
        assert_eq!(extras.as_slice(), &[("a", "2"), ("z", "1")]);
        assert_eq!(c.registry.invalid.total(), 1.0);
    }
}
