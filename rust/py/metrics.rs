//! Python bindings of rust/metrics/ and rust/exposition.rs: registry, families, child handles, collector.

use crate::exposition::{self, Format};
use crate::metrics::collector::{CollectorCore as Core, Group};
use crate::metrics::family::{Family, FamilySpec, Kind, Series, Value, DEFAULT_SERIES_CAP};
use crate::metrics::value::{check_non_negative, Invalid};
use crate::metrics::Registry;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use std::sync::Arc;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RegistryCore>()?;
    m.add_class::<FamilyCore>()?;
    m.add_class::<CounterChild>()?;
    m.add_class::<GaugeChild>()?;
    m.add_class::<HistogramChild>()?;
    m.add_class::<CollectorCore>()?;
    m.add_function(wrap_pyfunction!(negotiate, m)?)?;
    m.add_function(wrap_pyfunction!(noop, m)?)?;
    m.add("TEXT_CONTENT_TYPE", exposition::TEXT_CONTENT_TYPE)?;
    m.add("OPENMETRICS_CONTENT_TYPE", exposition::OPENMETRICS_CONTENT_TYPE)?;
    m.add("DEFAULT_SERIES_CAP", DEFAULT_SERIES_CAP)?;
    Ok(())
}

/// Logs the once-per-family warning when a family first folds a label set into `__overflow__`.
#[cold]
fn warn_overflow(py: Python<'_>, families: &[String]) {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let Ok(logger) = LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("logging")?
            .call_method1("getLogger", ("victor_observability.metrics",))?
            .unbind())
    }) else {
        return;
    };
    for name in families {
        let msg = format!(
            "metric {name:?} reached its series cap; new label sets are folded into the series labelled \
             __overflow__ and counted in the *_metric_series_overflow_total metric"
        );
        // A failing log handler must not break the record path.
        let _ = logger.bind(py).call_method1("warning", (msg,));
    }
}

/// A label value as a Python str: str objects as they are, anything else through `str()`.
#[inline]
fn label_str<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    match obj.cast::<PyString>() {
        Ok(s) => Ok(s.clone()),
        Err(_) => obj.str(),
    }
}

/// A number from the record path: anything else is refused as a sample, never raised.
#[inline]
fn sample_f64(obj: &Bound<'_, PyAny>) -> f64 {
    obj.extract::<f64>().unwrap_or(f64::NAN)
}

fn format_of(openmetrics: bool) -> Format {
    if openmetrics {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// The content type the scraper's Accept header asks for: (is_openmetrics, content_type).
#[pyfunction]
fn negotiate(accept: &str) -> (bool, &'static str) {
    match exposition::negotiate(accept) {
        Format::OpenMetrics => (true, exposition::OPENMETRICS_CONTENT_TYPE),
        Format::Text => (false, exposition::TEXT_CONTENT_TYPE),
    }
}

/// Does nothing: the floor the benches compare record calls against.
#[pyfunction]
#[pyo3(signature = (*_args, **_kwargs))]
fn noop(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) {}

fn encode_bytes<'py>(py: Python<'py>, families: Vec<Arc<Family>>, openmetrics: bool) -> Bound<'py, PyBytes> {
    let text = py.detach(|| exposition::encode(&families, format_of(openmetrics)));
    PyBytes::new(py, text.as_bytes())
}

/// Every family as `(name, type, help, [(sample_name, {labels}, value), ...])`, the shape of
/// prometheus-client's `Metric` (counter names without `_total`).
fn samples<'py>(py: Python<'py>, families: &[Arc<Family>]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for f in families {
        let series = f.snapshot();
        if f.hide_when_empty && series.is_empty() {
            continue;
        }
        let rows = PyList::empty(py);
        for s in &series {
            let labels = PyDict::new(py);
            for (k, v) in s.labels.iter() {
                labels.set_item(&**k, &**v)?;
            }
            match &s.value {
                Value::Counter(c) => rows.append((format!("{}_total", f.name), labels, c.get()))?,
                Value::Gauge(g) => rows.append((f.name.clone(), labels, g.get()))?,
                Value::Histogram(h) => {
                    let cumulative = h.cumulative();
                    for (b, n) in h.bounds().iter().zip(&cumulative) {
                        let with_le = labels.copy()?;
                        let mut le = String::new();
                        exposition::go_float(*b, &mut le);
                        with_le.set_item("le", le)?;
                        rows.append((format!("{}_bucket", f.name), with_le, *n as f64))?;
                    }
                    rows.append((format!("{}_count", f.name), labels.copy()?, h.count() as f64))?;
                    rows.append((format!("{}_sum", f.name), labels, h.sum()))?;
                }
            }
        }
        out.append((f.name.clone(), f.kind.as_str(), f.help.clone(), rows))?;
    }
    Ok(out)
}

/// A registry of metric families (`victor_observability.metrics.Registry` wraps it).
#[pyclass(frozen, module = "victor_observability._core")]
pub struct RegistryCore {
    inner: Arc<Registry>,
}

#[pymethods]
impl RegistryCore {
    #[new]
    #[pyo3(signature = (prefix = ""))]
    fn new(prefix: &str) -> PyResult<Self> {
        Ok(RegistryCore {
            inner: Arc::new(Registry::new(prefix)?),
        })
    }

    /// Defines and registers a family; `kind` is "counter", "gauge" or "histogram".
    #[pyo3(signature = (kind, name, help, labelnames, buckets = None, percentiles = false, cap = DEFAULT_SERIES_CAP))]
    #[allow(clippy::too_many_arguments)]
    fn family(
        &self,
        kind: &str,
        name: &str,
        help: &str,
        labelnames: Vec<String>,
        buckets: Option<Vec<f64>>,
        percentiles: bool,
        cap: usize,
    ) -> PyResult<FamilyCore> {
        let kind = match kind {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            other => {
                return Err(PyValueError::new_err(format!(
                    "metric {name:?}: unknown metric type {other:?}"
                )))
            }
        };
        let spec = FamilySpec {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            labelnames,
            buckets,
            percentiles,
            extra_labels: false,
            cap,
        };
        Ok(FamilyCore {
            inner: self.inner.create(spec)?,
        })
    }

    fn unregister(&self, name: &str) -> bool {
        self.inner.unregister(name)
    }

    fn names(&self) -> Vec<String> {
        self.inner.families().iter().map(|f| f.name.clone()).collect()
    }

    /// The exposition as UTF-8 bytes, text 0.0.4 or OpenMetrics 1.0.0.
    #[pyo3(signature = (openmetrics = false))]
    fn encode<'py>(&self, py: Python<'py>, openmetrics: bool) -> Bound<'py, PyBytes> {
        encode_bytes(py, self.inner.families(), openmetrics)
    }

    fn samples<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        samples(py, &self.inner.families())
    }
}

/// One metric family; `labels(...)` returns the child handle of one series.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct FamilyCore {
    inner: Arc<Family>,
}

fn child(py: Python<'_>, family: &Arc<Family>, series: Arc<Series>) -> PyResult<Py<PyAny>> {
    let f = family.clone();
    Ok(match family.kind {
        Kind::Counter => Py::new(py, CounterChild { series, family: f })?.into_any(),
        Kind::Gauge => Py::new(py, GaugeChild { series })?.into_any(),
        Kind::Histogram => Py::new(py, HistogramChild { series })?.into_any(),
    })
}

#[pymethods]
impl FamilyCore {
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }

    #[getter]
    fn labelnames(&self) -> Vec<String> {
        self.inner.labelnames.iter().map(|s| s.to_string()).collect()
    }

    /// The child of the series with these label values (in label-name order).
    #[pyo3(signature = (*values))]
    fn labels(&self, py: Python<'_>, values: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        self.inner.check_arity(values.len())?;
        let strs: SmallVec<[Bound<'_, PyString>; 8]> = values.iter().map(|v| label_str(&v)).collect::<PyResult<_>>()?;
        let parts: SmallVec<[&str; 8]> = strs.iter().map(|s| s.to_str()).collect::<PyResult<_>>()?;
        let found = self.inner.lookup(&parts);
        if found.first_overflow {
            warn_overflow(py, &[self.inner.exposed_name()]);
        }
        child(py, &self.inner, found.series)
    }

    /// p-quantiles from the family's HDR recording (histograms made with `percentiles=True`).
    fn quantiles(&self, qs: Vec<f64>) -> Vec<Option<f64>> {
        match self.inner.hdr() {
            Some(h) => h.quantiles(&qs),
            None => vec![None; qs.len()],
        }
    }

    fn total(&self) -> f64 {
        self.inner.total()
    }

    fn series_count(&self) -> usize {
        self.inner.series_count()
    }

    fn clear(&self) {
        self.inner.clear()
    }
}

/// A counter series: `inc()` goes straight to an atomic.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct CounterChild {
    series: Arc<Series>,
    family: Arc<Family>,
}

#[pymethods]
impl CounterChild {
    #[pyo3(signature = (amount = 1.0))]
    fn inc(&self, amount: f64) -> PyResult<()> {
        if amount >= 0.0 && amount.is_finite() {
            self.series.inc(amount);
            Ok(())
        } else {
            Err(PyValueError::new_err(format!(
                "metric {:?}: counters can only be incremented by non-negative finite amounts, got {amount}",
                self.family.exposed_name()
            )))
        }
    }

    fn get(&self) -> f64 {
        self.series.get()
    }
}

/// A gauge series.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct GaugeChild {
    series: Arc<Series>,
}

#[pymethods]
impl GaugeChild {
    #[pyo3(signature = (amount = 1.0))]
    fn inc(&self, amount: f64) {
        self.series.add(amount)
    }

    #[pyo3(signature = (amount = 1.0))]
    fn dec(&self, amount: f64) {
        self.series.add(-amount)
    }

    fn set(&self, value: f64) {
        self.series.set(value)
    }

    fn get(&self) -> f64 {
        self.series.get()
    }
}

/// A histogram series.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct HistogramChild {
    series: Arc<Series>,
}

#[pymethods]
impl HistogramChild {
    fn observe(&self, value: f64) {
        self.series.observe(value)
    }

    /// The number of observations.
    fn get(&self) -> f64 {
        self.series.get()
    }

    fn sum(&self) -> f64 {
        match &self.series.value {
            Value::Histogram(h) => h.sum(),
            _ => 0.0,
        }
    }
}

/// Runs `f` on a group's series for fixed label values plus an optional dict of extra labels,
/// warning once per family that overflows. Never raises for bad label names: they are dropped
/// and counted.
#[inline]
fn with_series<R>(
    py: Python<'_>,
    core: &Core,
    group: &Group,
    fixed: &[&Bound<'_, PyAny>],
    labels: Option<&Bound<'_, PyAny>>,
    f: impl FnOnce(&[Arc<Series>]) -> R,
) -> PyResult<R> {
    // Pushes rather than collect::<PyResult<SmallVec>>: this is the hot path, and it shows.
    let mut strs: SmallVec<[Bound<'_, PyString>; 6]> = SmallVec::new();
    for v in fixed {
        strs.push(label_str(v)?);
    }
    match labels.map(|l| l.cast::<PyDict>()) {
        None => {}
        Some(Ok(d)) => {
            for (k, v) in d.iter() {
                strs.push(label_str(&k)?);
                strs.push(label_str(&v)?);
            }
        }
        Some(Err(_)) if labels.is_some_and(|l| l.is_none()) => {}
        Some(Err(_)) => core.registry.count_invalid_reason(&group.name(), "invalid_labels"),
    }
    let mut parts: SmallVec<[&str; 6]> = SmallVec::new();
    for s in &strs {
        parts.push(s.to_str()?);
    }
    let mut f = Some(f);
    if parts.len() > fixed.len() {
        let mut extras: SmallVec<[(&str, &str); 2]> =
            parts[fixed.len()..].chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
        if extras.len() > 1 {
            extras.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        parts.truncate(fixed.len());
        let fixed_len = parts.len();
        parts.extend(extras.iter().flat_map(|(k, v)| [*k, *v]));
        // Only cleaned label sets are ever stored, so a hit needs no validation; a miss is cleaned first.
        if let Some(r) = group.with_known(&parts, |s| (f.take().expect("called once"))(s)) {
            return Ok(r);
        }
        group.clean_extras(&core.registry, &mut extras);
        parts.truncate(fixed_len);
        parts.extend(extras.iter().flat_map(|(k, v)| [*k, *v]));
    }
    let (r, overflowed) = group.apply(&parts, f.take().expect("called once"));
    if !overflowed.is_empty() {
        warn_overflow(py, &overflowed);
    }
    Ok(r)
}

/// The Rust half of `ProductionMetricsCollector`, which subclasses it: its record methods are these.
#[pyclass(frozen, subclass, module = "victor_observability._core")]
pub struct CollectorCore {
    core: Core,
    registry: Py<RegistryCore>,
}

impl CollectorCore {
    #[inline]
    fn outcome(
        &self,
        py: Python<'_>,
        group: &Group,
        fixed: &[&Bound<'_, PyAny>],
        success: bool,
        duration: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let d = sample_f64(duration);
        with_series(py, &self.core, group, fixed, labels, |series| {
            self.core.record_outcome(series, success, d)
        })
    }

    fn cache(&self, py: Python<'_>, cache_name: &Bound<'_, PyAny>, which: usize) -> PyResult<()> {
        with_series(py, &self.core, &self.core.caches, &[cache_name], None, |series| {
            series[which].inc_int(1)
        })
    }
}

#[pymethods]
impl CollectorCore {
    #[new]
    #[pyo3(signature = (prefix = "victor", *_args, series_cap = DEFAULT_SERIES_CAP, **_kwargs))]
    fn new(
        py: Python<'_>,
        prefix: &str,
        _args: &Bound<'_, PyTuple>,
        series_cap: usize,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let core = Core::new(prefix, series_cap)?;
        let registry = Py::new(
            py,
            RegistryCore {
                inner: core.registry.clone(),
            },
        )?;
        Ok(CollectorCore { core, registry })
    }

    /// The registry holding the collector's families; define more metrics on it.
    #[getter]
    fn core_registry(&self, py: Python<'_>) -> Py<RegistryCore> {
        self.registry.clone_ref(py)
    }

    #[pyo3(signature = (endpoint, provider, success, latency_ms, labels = None))]
    fn record_request(
        &self,
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        provider: &Bound<'_, PyAny>,
        success: bool,
        latency_ms: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.outcome(
            py,
            &self.core.requests,
            &[endpoint, provider],
            success,
            latency_ms,
            labels,
        )
    }

    /// Marks a request in flight (`<prefix>_active_requests` + 1); `end_request` records and undoes it.
    fn begin_request(&self) {
        self.core.active_requests.add(1.0);
    }

    /// `record_request` and `<prefix>_active_requests` - 1 in one call (the middleware's end of request).
    #[pyo3(signature = (endpoint, provider, success, latency_ms, labels = None))]
    fn end_request(
        &self,
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        provider: &Bound<'_, PyAny>,
        success: bool,
        latency_ms: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.core.active_requests.add(-1.0);
        self.outcome(
            py,
            &self.core.requests,
            &[endpoint, provider],
            success,
            latency_ms,
            labels,
        )
    }

    #[pyo3(signature = (tool_name, success, duration_ms, labels = None))]
    fn record_tool_execution(
        &self,
        py: Python<'_>,
        tool_name: &Bound<'_, PyAny>,
        success: bool,
        duration_ms: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.outcome(py, &self.core.tools, &[tool_name], success, duration_ms, labels)
    }

    #[pyo3(signature = (coordinator_name, success, duration_ms, labels = None))]
    fn record_coordinator_execution(
        &self,
        py: Python<'_>,
        coordinator_name: &Bound<'_, PyAny>,
        success: bool,
        duration_ms: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.outcome(
            py,
            &self.core.coordinators,
            &[coordinator_name],
            success,
            duration_ms,
            labels,
        )
    }

    #[pyo3(signature = (count = 1))]
    fn increment_tool_active(&self, count: i64) {
        self.core.tool_active.add(count as f64);
    }

    #[pyo3(signature = (count = 1))]
    fn decrement_tool_active(&self, count: i64) {
        self.core.tool_active.add(-(count as f64));
    }

    #[pyo3(signature = (success, cost_usd = None))]
    fn record_task_completion(&self, success: bool, cost_usd: Option<&Bound<'_, PyAny>>) {
        self.core
            .record_task_completion(success, cost_usd.map_or(0.0, sample_f64));
    }

    fn record_token_usage(&self, token_count: &Bound<'_, PyAny>) {
        self.core.record_tokens(sample_f64(token_count));
    }

    fn record_cache_hit(&self, py: Python<'_>, cache_name: &Bound<'_, PyAny>) -> PyResult<()> {
        self.cache(py, cache_name, 0)
    }

    fn record_cache_miss(&self, py: Python<'_>, cache_name: &Bound<'_, PyAny>) -> PyResult<()> {
        self.cache(py, cache_name, 1)
    }

    fn record_cache_eviction(&self, py: Python<'_>, cache_name: &Bound<'_, PyAny>) -> PyResult<()> {
        self.cache(py, cache_name, 2)
    }

    fn set_cache_size(&self, py: Python<'_>, cache_name: &Bound<'_, PyAny>, size: &Bound<'_, PyAny>) -> PyResult<()> {
        let name = label_str(cache_name)?;
        let size = sample_f64(size);
        match check_non_negative(size) {
            Ok(v) => {
                let found = self.core.cache_size.lookup(&[name.to_str()?]);
                if found.first_overflow {
                    warn_overflow(py, std::slice::from_ref(&self.core.cache_size.name));
                }
                found.series.set(v);
            }
            Err(why) => self.core.count_invalid(&self.core.cache_size.name, why),
        }
        Ok(())
    }

    /// Counts one error in `<prefix>_errors_total{type=...}` (the message is kept by the Python side).
    fn _count_error(&self, py: Python<'_>, error_type: &Bound<'_, PyAny>) -> PyResult<()> {
        let t = label_str(error_type)?;
        let found = self.core.errors.lookup(&[t.to_str()?]);
        if found.first_overflow {
            warn_overflow(py, &[self.core.errors.exposed_name()]);
        }
        found.series.inc_int(1);
        Ok(())
    }

    /// Sets the system gauges; None leaves one as it is.
    #[pyo3(signature = (memory_bytes = None, cpu_percent = None, disk_bytes = None, open_fds = None, uptime_seconds = None))]
    fn _set_system(
        &self,
        memory_bytes: Option<f64>,
        cpu_percent: Option<f64>,
        disk_bytes: Option<f64>,
        open_fds: Option<f64>,
        uptime_seconds: Option<f64>,
    ) {
        let c = &self.core;
        for (series, v) in [
            (&c.memory, memory_bytes),
            (&c.cpu, cpu_percent),
            (&c.disk, disk_bytes),
            (&c.fds, open_fds),
            (&c.uptime, uptime_seconds),
        ] {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                series.set(v);
            }
        }
    }

    /// Recomputes `<prefix>_error_rate` from the request counters (called before each export).
    fn _refresh_error_rate(&self) {
        self.core.error_rate.set(self.core.request_error_rate());
    }

    fn get_cache_hit_rate(&self) -> f64 {
        self.core.cache_hit_rate()
    }

    /// The numbers `get_summary()` arranges: totals, percentiles from the HDR recordings.
    fn _stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.core;
        let d = PyDict::new(py);
        let r = &c.requests.families;
        d.set_item("requests_total", r[0].total())?;
        d.set_item("requests_success", r[1].total())?;
        d.set_item("requests_errors", r[2].total())?;
        d.set_item("error_rate", c.request_error_rate())?;
        let lat = r[3].hdr().map(|h| h.quantiles(&[0.5, 0.95, 0.99])).unwrap_or_default();
        d.set_item("latency_quantiles", lat)?;
        let t = &c.tools.families;
        d.set_item("tool_calls", t[0].total())?;
        d.set_item("tool_errors", t[1].total())?;
        d.set_item("tool_active", c.tool_active.get())?;
        d.set_item(
            "tool_quantiles",
            t[2].hdr().map(|h| h.quantiles(&[0.5, 0.95])).unwrap_or_default(),
        )?;
        let k = &c.coordinators.families;
        d.set_item("coordinator_invocations", k[0].total())?;
        d.set_item("coordinator_errors", k[1].total())?;
        d.set_item("cache_hits", c.caches.families[0].total())?;
        d.set_item("cache_misses", c.caches.families[1].total())?;
        d.set_item("cache_evictions", c.caches.families[2].total())?;
        d.set_item("cache_size", c.cache_size.total())?;
        d.set_item("cache_hit_rate", c.cache_hit_rate())?;
        d.set_item("tasks_completed", c.tasks_completed.get())?;
        d.set_item("tasks_failed", c.tasks_failed.get())?;
        d.set_item("total_cost_usd", c.total_cost.get())?;
        d.set_item("tokens_used", c.tokens.get())?;
        d.set_item("active_requests", c.active_requests.get())?;
        d.set_item("errors_total", c.errors.total())?;
        d.set_item("invalid_samples", c.registry.invalid.total())?;
        Ok(d)
    }

    /// Counts a sample refused by the Python side (same counter as the record path's).
    fn _count_invalid(&self, metric: &str, reason: &str) {
        match reason {
            "nan" => self.core.count_invalid(metric, Invalid::Nan),
            "infinite" => self.core.count_invalid(metric, Invalid::Infinite),
            "negative" => self.core.count_invalid(metric, Invalid::Negative),
            other => self.core.registry.count_invalid_reason(metric, other),
        }
    }
}
