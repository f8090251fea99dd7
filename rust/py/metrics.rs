//! Python bindings of rust/metrics/ and rust/exposition.rs: registry, families, child handles, collector.

use crate::exposition::{self, Format};
use crate::metrics::family::{Family, FamilySpec, Kind, Series, Value, DEFAULT_SERIES_CAP};
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
    m.add_function(wrap_pyfunction!(negotiate, m)?)?;
    m.add("TEXT_CONTENT_TYPE", exposition::TEXT_CONTENT_TYPE)?;
    m.add("OPENMETRICS_CONTENT_TYPE", exposition::OPENMETRICS_CONTENT_TYPE)?;
    m.add("DEFAULT_SERIES_CAP", DEFAULT_SERIES_CAP)?;
    Ok(())
}

/// Logs the once-per-family warning when a family first folds a label set into `__overflow__`.
#[cold]
pub(crate) fn warn_overflow(py: Python<'_>, families: &[String]) {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    // get + set, not get_or_try_init: that would run Python (an import) inside the cell's once-lock, and a fork
    // taken meanwhile by another thread would leave the child that lock held for good. Racing here is harmless.
    let logger = match LOGGER.get(py) {
        Some(logger) => logger,
        None => {
            let Ok(logger) = py
                .import("logging")
                .and_then(|m| m.call_method1("getLogger", ("victor_observability.metrics",)))
            else {
                return;
            };
            let _ = LOGGER.set(py, logger.unbind());
            let Some(logger) = LOGGER.get(py) else { return };
            logger
        }
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
pub(crate) fn label_str<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    match obj.cast::<PyString>() {
        Ok(s) => Ok(s.clone()),
        Err(_) => obj.str(),
    }
}

/// A number from the record path: anything else is refused as a sample, never raised.
#[inline]
pub(crate) fn sample_f64(obj: &Bound<'_, PyAny>) -> f64 {
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

fn encode_bytes<'py>(py: Python<'py>, families: Vec<Arc<Family>>, openmetrics: bool) -> Bound<'py, PyBytes> {
    // The family locks are taken here, with the GIL held, and never inside `detach`: a fork (always taken by
    // a thread holding the GIL) then cannot happen while this thread holds one. See rust/metrics/family.rs.
    let snapshot = exposition::snapshot(&families);
    let text = py.detach(|| exposition::encode_snapshots(&snapshot, format_of(openmetrics)));
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
    pub(crate) inner: Arc<Registry>,
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

    /// The family registered under `name` (a counter's name without `_total`), if any.
    fn get(&self, name: &str) -> Option<FamilyCore> {
        self.inner.get(name).map(|inner| FamilyCore { inner })
    }

    /// Zeroes every series (values only: children held by callers stay valid).
    fn reset(&self) {
        self.inner.reset()
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
#[pyclass(frozen, module = "victor_observability.metrics")]
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
#[pyclass(frozen, module = "victor_observability.metrics")]
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
#[pyclass(frozen, module = "victor_observability.metrics")]
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
