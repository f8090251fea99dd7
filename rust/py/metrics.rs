//! Python bindings of rust/metrics/ and rust/exposition.rs: registry, families, child handles, collector.

use super::trace::current_sampled_ids;
use crate::exposition::{self, Format};
use crate::metrics::exemplar::{check_labels, now_seconds, ExemplarLabels};
use crate::metrics::family::{Family, FamilySpec, Kind, Series, Value, DEFAULT_SERIES_CAP};
use crate::metrics::labels::{escape_surrogates, fit_label_value, DEFAULT_LABEL_VALUE_CAP, TRUNCATION_MARKER};
use crate::metrics::value::Invalid;
use crate::metrics::Registry;
use crate::multiproc::{self, Mode};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::sync::Arc;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RegistryCore>()?;
    m.add_class::<FamilyCore>()?;
    m.add_class::<CounterChild>()?;
    m.add_class::<GaugeChild>()?;
    m.add_class::<HistogramChild>()?;
    m.add_function(wrap_pyfunction!(negotiate, m)?)?;
    m.add_function(wrap_pyfunction!(wants_gzip, m)?)?;
    m.add("TEXT_CONTENT_TYPE", exposition::TEXT_CONTENT_TYPE)?;
    m.add("OPENMETRICS_CONTENT_TYPE", exposition::OPENMETRICS_CONTENT_TYPE)?;
    m.add("DEFAULT_SERIES_CAP", DEFAULT_SERIES_CAP)?;
    m.add("DEFAULT_LABEL_VALUE_CAP", DEFAULT_LABEL_VALUE_CAP)?;
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

/// A label value as a Python str: str objects as they are, anything else through `str()`; an
/// object whose `str()` raises becomes `__unprintable__` (flagged), so recording never raises.
#[inline]
pub(crate) fn label_str<'py>(obj: &Bound<'py, PyAny>, fixes: &mut LabelFixes) -> Bound<'py, PyString> {
    match obj.cast::<PyString>() {
        Ok(s) => s.clone(),
        Err(_) => obj.str().unwrap_or_else(|_| {
            fixes.0 |= LabelFixes::UNPRINTABLE;
            intern!(obj.py(), "__unprintable__").clone()
        }),
    }
}

/// What had to be done to label values before they could be stored; each is counted once per event
/// in `<prefix>_invalid_samples_total{metric,reason}`, and the event itself still counts.
#[derive(Default, Clone, Copy)]
pub(crate) struct LabelFixes(u8);

impl LabelFixes {
    const NOT_UTF8: u8 = 1;
    const TOO_LONG: u8 = 2;
    const UNPRINTABLE: u8 = 4;

    #[inline]
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }

    /// The `reason` label of each fix made.
    pub(crate) fn reasons(self) -> impl Iterator<Item = &'static str> {
        [
            (Self::NOT_UTF8, "label_not_utf8"),
            (Self::TOO_LONG, "label_truncated"),
            (Self::UNPRINTABLE, "label_unprintable"),
        ]
        .into_iter()
        .filter(move |(bit, _)| self.0 & bit != 0)
        .map(|(_, r)| r)
    }
}

/// A label value as UTF-8 of at most `cap` bytes: borrowed from the str when it already is (the hot
/// path), else lone surrogates escaped (`\ud800`, as Python's "backslashreplace" writes them) and
/// long values cut with a marker. Never raises: the record path must not.
#[inline]
pub(crate) fn label_text<'a>(s: &'a Bound<'_, PyString>, cap: usize, fixes: &mut LabelFixes) -> Cow<'a, str> {
    match s.to_str() {
        Ok(v) if v.len() <= cap => Cow::Borrowed(v),
        Ok(v) => {
            fixes.0 |= LabelFixes::TOO_LONG;
            fit_label_value(v, cap)
        }
        Err(_) => {
            fixes.0 |= LabelFixes::NOT_UTF8;
            let escaped = escaped_label(s);
            if escaped.len() > cap {
                fixes.0 |= LabelFixes::TOO_LONG;
            }
            Cow::Owned(fit_label_value(&escaped, cap).into_owned())
        }
    }
}

#[cold]
fn escaped_label(s: &Bound<'_, PyString>) -> String {
    let py = s.py();
    match s.call_method1(
        intern!(py, "encode"),
        (intern!(py, "utf-8"), intern!(py, "surrogatepass")),
    ) {
        Ok(b) => match b.cast::<PyBytes>() {
            Ok(b) => escape_surrogates(b.as_bytes()),
            Err(_) => char::REPLACEMENT_CHARACTER.to_string(),
        },
        Err(_) => char::REPLACEMENT_CHARACTER.to_string(),
    }
}

/// Counts the label fixes of one event against `metric`.
#[cold]
pub(crate) fn count_label_fixes(invalid: &Family, metric: &str, fixes: LabelFixes) {
    for reason in fixes.reasons() {
        invalid.lookup(&[metric, reason]).series.inc_int(1);
    }
}

/// Refuses a label value cap too small to hold anything but the marker.
pub(crate) fn check_label_value_cap(metric: &str, cap: usize) -> PyResult<()> {
    let least = TRUNCATION_MARKER.len() + 5;
    if cap < least {
        return Err(PyValueError::new_err(format!(
            "metric {metric:?}: label_value_cap must be at least {least} bytes, got {cap}"
        )));
    }
    Ok(())
}

/// An outcome flag from the record path: Python truth (1, None, a str work as they read), never raised;
/// an object whose `__bool__` raises reads as a failure.
#[inline]
pub(crate) fn truthy(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_truthy().unwrap_or(false)
}

/// A number from the record path: anything else is refused as a sample, never raised.
#[inline]
pub(crate) fn sample_f64(obj: &Bound<'_, PyAny>) -> Result<f64, Invalid> {
    obj.extract::<f64>().map_err(|_| Invalid::NotANumber)
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

/// Whether a scrape with this Accept-Encoding header gets gzip (RFC 9110 q-values).
#[pyfunction]
fn wants_gzip(accept_encoding: &str) -> bool {
    exposition::wants_gzip(accept_encoding)
}

/// The series to export: this process's, or in multi-process mode the merge of the directory.
/// The family locks are taken here, with the GIL held; the merge runs with the GIL released and
/// takes none (a fork, always taken by a thread holding the GIL, cannot catch one held).
pub(crate) fn view(py: Python<'_>, families: Vec<Arc<Family>>) -> multiproc::View {
    let snapshot = exposition::snapshot(&families);
    if multiproc::is_enabled() {
        py.detach(|| multiproc::view_of(snapshot, false))
    } else {
        snapshot
    }
}

fn encode_bytes<'py>(py: Python<'py>, families: Vec<Arc<Family>>, openmetrics: bool) -> Bound<'py, PyBytes> {
    // The family locks are taken here, with the GIL held, and never inside `detach`: a fork (always taken by
    // a thread holding the GIL) then cannot happen while this thread holds one. See rust/metrics/family.rs.
    // In multi-process mode the merge of the directory runs in `detach` too, from the snapshot.
    let snapshot = exposition::snapshot(&families);
    let merged = multiproc::is_enabled();
    let text = py.detach(|| {
        let view = if merged {
            multiproc::view_of(snapshot, openmetrics)
        } else {
            snapshot
        };
        exposition::encode_snapshots(&view, format_of(openmetrics))
    });
    PyBytes::new(py, text.as_bytes())
}

/// Every family as `(name, type, help, [(sample_name, {labels}, value), ...])`, the shape of
/// prometheus-client's `Metric` (counter names without `_total`).
fn samples<'py>(py: Python<'py>, families: Vec<Arc<Family>>) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for (f, series) in view(py, families) {
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
    /// `multiprocess_mode` says how a gauge's values from several processes combine
    /// (multi-process mode only; see `victor_observability.multiprocess`).
    #[pyo3(signature = (kind, name, help, labelnames, buckets = None, percentiles = false, cap = DEFAULT_SERIES_CAP, label_value_cap = DEFAULT_LABEL_VALUE_CAP, multiprocess_mode = "all"))]
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
        label_value_cap: usize,
        multiprocess_mode: &str,
    ) -> PyResult<FamilyCore> {
        check_label_value_cap(name, label_value_cap)?;
        let Some(mode) = Mode::parse(multiprocess_mode) else {
            return Err(PyValueError::new_err(format!(
                "metric {name:?}: unknown multiprocess_mode {multiprocess_mode:?} (one of {})",
                Mode::NAMES.join(", ")
            )));
        };
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
            mode,
        };
        Ok(FamilyCore {
            inner: self.inner.create(spec)?,
            invalid: self.inner.invalid.clone(),
            label_value_cap,
        })
    }

    fn unregister(&self, name: &str) -> bool {
        self.inner.unregister(name)
    }

    fn names(&self) -> Vec<String> {
        self.inner.families().iter().map(|f| f.name.clone()).collect()
    }

    /// The family registered under `name` (a counter's name without `_total`), if any; label values of children
    /// made from it are capped at `label_value_cap` bytes, as for families defined here.
    #[pyo3(signature = (name, label_value_cap = DEFAULT_LABEL_VALUE_CAP))]
    fn get(&self, name: &str, label_value_cap: usize) -> PyResult<Option<FamilyCore>> {
        check_label_value_cap(name, label_value_cap)?;
        Ok(self.inner.get(name).map(|inner| FamilyCore {
            inner,
            invalid: self.inner.invalid.clone(),
            label_value_cap,
        }))
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
        samples(py, self.inner.families())
    }
}

/// One metric family; `labels(...)` returns the child handle of one series.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct FamilyCore {
    inner: Arc<Family>,
    /// The registry's `<prefix>_invalid_samples_total`, where label fixes and refused samples count.
    invalid: Arc<Family>,
    label_value_cap: usize,
}

fn child(py: Python<'_>, family: &Arc<Family>, invalid: &Arc<Family>, series: Arc<Series>) -> PyResult<Py<PyAny>> {
    let f = family.clone();
    let invalid = invalid.clone();
    Ok(match family.kind {
        Kind::Counter => Py::new(
            py,
            CounterChild {
                series,
                family: f,
                invalid,
            },
        )?
        .into_any(),
        Kind::Gauge => Py::new(py, GaugeChild { series })?.into_any(),
        Kind::Histogram => Py::new(py, HistogramChild { series, invalid })?.into_any(),
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
        let mut fixes = LabelFixes::default();
        let strs: SmallVec<[Bound<'_, PyString>; 8]> = values.iter().map(|v| label_str(&v, &mut fixes)).collect();
        let texts: SmallVec<[Cow<'_, str>; 8]> = strs
            .iter()
            .map(|s| label_text(s, self.label_value_cap, &mut fixes))
            .collect();
        let parts: SmallVec<[&str; 8]> = texts.iter().map(|t| &**t).collect();
        if fixes.any() {
            count_label_fixes(&self.invalid, &self.inner.exposed_name(), fixes);
        }
        let found = self.inner.lookup(&parts);
        if found.first_overflow {
            warn_overflow(py, &[self.inner.exposed_name()]);
        }
        child(py, &self.inner, &self.invalid, found.series)
    }

    /// p-quantiles from the family's HDR recording (histograms made with `percentiles=True`); in
    /// multi-process mode from every process's recording.
    fn quantiles(&self, py: Python<'_>, qs: Vec<f64>) -> Vec<Option<f64>> {
        if multiproc::is_enabled() {
            let merged = view(py, vec![self.inner.clone()]);
            return match merged.first().and_then(|(f, _)| f.hdr()) {
                Some(h) => h.quantiles(&qs),
                None => vec![None; qs.len()],
            };
        }
        match self.inner.hdr() {
            Some(h) => h.quantiles(&qs),
            None => vec![None; qs.len()],
        }
    }

    /// Sum over the family's series (histograms: counts); service-wide in multi-process mode.
    fn total(&self, py: Python<'_>) -> f64 {
        if multiproc::is_enabled() {
            let merged = view(py, vec![self.inner.clone()]);
            return merged.iter().flat_map(|(_, s)| s).map(|s| s.get()).sum();
        }
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
    invalid: Arc<Family>,
}

#[pymethods]
impl CounterChild {
    #[pyo3(signature = (amount = 1.0))]
    fn inc(&self, amount: f64) -> PyResult<()> {
        if amount >= 0.0 && amount.is_finite() {
            if !self.series.inc(amount) {
                count_refused(&self.invalid, &self.series, Invalid::Overflow);
            }
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
    invalid: Arc<Family>,
}

/// Counts a sample a series refused (see `Series::observe`).
#[cold]
fn count_refused(invalid: &Family, series: &Series, why: Invalid) {
    invalid.lookup(&[&series.family_name, why.as_str()]).series.inc_int(1);
}

#[cold]
fn count_refused_reason(invalid: &Family, series: &Series, reason: &str) {
    invalid.lookup(&[&series.family_name, reason]).series.inc_int(1);
}

/// An explicit exemplar: a dict of str to str within prometheus-client's rules; Ok(None) when empty.
fn exemplar_labels(e: &Bound<'_, PyAny>) -> Result<Option<ExemplarLabels>, ()> {
    let d = e.cast::<PyDict>().map_err(|_| ())?;
    if d.is_empty() {
        return Ok(None);
    }
    let mut pairs = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        let k = k
            .cast::<PyString>()
            .map_err(|_| ())?
            .to_str()
            .map_err(|_| ())?
            .to_owned();
        let v = v
            .cast::<PyString>()
            .map_err(|_| ())?
            .to_str()
            .map_err(|_| ())?
            .to_owned();
        pairs.push((k, v));
    }
    check_labels(pairs).map(Some).map_err(|_| ())
}

#[pymethods]
impl HistogramChild {
    /// Observes `value`; one that would make the sum infinite is dropped and counted
    /// (`reason="overflow"`), so one absurd value cannot leave `_sum` at +Inf for good.
    ///
    /// The bucket it lands in keeps it as its exemplar with `exemplar`'s labels (prometheus-client's rules:
    /// names and values at most 128 characters together; a label set that breaks them is dropped and counted,
    /// `reason="invalid_exemplar"`, the value still observed), else with the current span's `trace_id` and
    /// `span_id` when that span is sampled. `exemplar={}` observes without one.
    #[pyo3(signature = (value, exemplar = None))]
    fn observe(&self, py: Python<'_>, value: f64, exemplar: Option<&Bound<'_, PyAny>>) {
        let Some(bucket) = self.series.observe_bucket(value) else {
            count_refused(&self.invalid, &self.series, Invalid::Overflow);
            return;
        };
        let labels = match exemplar.filter(|e| !e.is_none()) {
            None => match current_sampled_ids(py) {
                Some((trace_id, span_id)) => ExemplarLabels::Span { trace_id, span_id },
                None => return,
            },
            Some(e) => match exemplar_labels(e) {
                Ok(Some(labels)) => labels,
                Ok(None) => return,
                Err(()) => {
                    count_refused_reason(&self.invalid, &self.series, "invalid_exemplar");
                    return;
                }
            },
        };
        self.series.set_exemplar_at(bucket, value, labels, now_seconds());
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
