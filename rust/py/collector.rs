//! Python binding of the production collector's core: `CollectorCore`, which `ProductionMetricsCollector`
//! subclasses, so its record methods are these (one crossing per user operation).

use super::metrics::{
    check_label_value_cap, count_label_fixes, label_str, label_text, sample_f64, truthy, view, warn_overflow,
    LabelFixes, RegistryCore,
};
use super::trace::{current_sampled_ids, sampled_ids};
use crate::metrics::collector::Group;
use crate::metrics::exemplar::{now_seconds, ExemplarLabels};
use crate::metrics::family::Family;
use crate::metrics::family::{Series, DEFAULT_SERIES_CAP};
use crate::metrics::labels::DEFAULT_LABEL_VALUE_CAP;
use crate::metrics::value::{check_non_negative, Invalid};
use crate::multiproc;
use crate::schema::CollectorCore as Core;
use hashbrown::HashMap;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::sync::Arc;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CollectorCore>()
}

/// Runs `f` on a group's series for fixed label values plus an optional dict of extra labels,
/// warning once per family that overflows. Never raises for bad labels: names that are not str
/// or not valid are dropped, values that are not UTF-8 or too long are escaped or cut, and each
/// is counted.
#[inline]
#[allow(clippy::too_many_arguments)]
fn with_series<R>(
    py: Python<'_>,
    core: &Core,
    group: &Group,
    cap: usize,
    fixed: &[&Bound<'_, PyAny>],
    labels: Option<&Bound<'_, PyAny>>,
    f: impl FnOnce(&[Arc<Series>]) -> R,
) -> PyResult<R> {
    let mut fixes = LabelFixes::default();
    // Pushes rather than collect: this is the hot path, and it shows.
    let mut strs: SmallVec<[Bound<'_, PyString>; 6]> = SmallVec::new();
    for v in fixed {
        strs.push(label_str(v, &mut fixes));
    }
    match labels.map(|l| l.cast::<PyDict>()) {
        None => {}
        Some(Ok(d)) => {
            for (k, v) in d.iter() {
                // A name that is not a str (None, 1) is not a label name: `None="v"` would be a lie.
                match k.cast::<PyString>() {
                    Ok(k) => strs.push(k.clone()),
                    Err(_) => {
                        core.registry.count_invalid_reason(&group.name(), "invalid_label");
                        continue;
                    }
                }
                strs.push(label_str(&v, &mut fixes));
            }
        }
        Some(Err(_)) if labels.is_some_and(|l| l.is_none()) => {}
        Some(Err(_)) => core.registry.count_invalid_reason(&group.name(), "invalid_labels"),
    }
    // Values that are UTF-8 and short enough (all of them, nearly always) are borrowed as they are;
    // the first that is not sends every value through `label_text`.
    let fixed_texts: SmallVec<[Cow<'_, str>; 6]>;
    let mut parts: SmallVec<[&str; 6]> = SmallVec::new();
    for s in &strs {
        match s.to_str() {
            Ok(v) if v.len() <= cap => parts.push(v),
            _ => break,
        }
    }
    if parts.len() != strs.len() {
        fixed_texts = strs.iter().map(|s| label_text(s, cap, &mut fixes)).collect();
        parts.clear();
        parts.extend(fixed_texts.iter().map(|t| &**t));
    }
    if fixes.any() {
        count_label_fixes(&core.registry.invalid, &group.name(), fixes);
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

/// A latency from Python: None, or no argument at all, is a latency not given (the event counts, the sample is
/// refused as missing).
fn given(duration: Option<&Bound<'_, PyAny>>) -> Result<f64, Invalid> {
    duration
        .filter(|d| !d.is_none())
        .map_or(Err(Invalid::Missing), sample_f64)
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
fn rate(part: f64, whole: f64) -> f64 {
    if whole == 0.0 {
        0.0
    } else {
        part / whole * 100.0
    }
}

/// Family totals and percentiles: this process's, or the directory's in multi-process mode.
struct Totals {
    merged: Option<HashMap<String, (f64, Arc<Family>)>>,
}

impl Totals {
    fn of(py: Python<'_>, families: Vec<Arc<Family>>) -> Totals {
        if !multiproc::is_enabled() {
            return Totals { merged: None };
        }
        let merged = view(py, families)
            .into_iter()
            .map(|(f, series)| {
                let total = series.iter().map(|s| s.get()).sum();
                (f.exposed_name(), (total, f))
            })
            .collect();
        Totals { merged: Some(merged) }
    }

    fn total(&self, f: &Family) -> f64 {
        match &self.merged {
            None => f.total(),
            Some(m) => m.get(&f.exposed_name()).map_or(0.0, |e| e.0),
        }
    }

    /// The value of an unlabelled family's one series.
    fn value(&self, s: &Series) -> f64 {
        match &self.merged {
            None => s.get(),
            Some(m) => m.get(&*s.family_name).map_or(0.0, |e| e.0),
        }
    }

    fn quantiles(&self, f: &Family, qs: &[f64]) -> Vec<Option<f64>> {
        let hdr = match &self.merged {
            None => f.hdr(),
            Some(m) => m.get(&f.exposed_name()).and_then(|e| e.1.hdr()),
        };
        hdr.map(|h| h.quantiles(qs)).unwrap_or_default()
    }
}

/// The Rust half of `ProductionMetricsCollector`, which subclasses it: its record methods are these.
#[pyclass(frozen, subclass, module = "victor_observability._core")]
pub struct CollectorCore {
    core: Core,
    registry: Py<RegistryCore>,
    /// Bytes a label value may take (see `fit_label_value`).
    label_value_cap: usize,
}

impl CollectorCore {
    /// `begin_request` for the middleware's `TracerCore.begin_server`, which starts a request in one crossing.
    #[inline]
    pub(crate) fn mark_in_flight(&self) {
        self.core.active_requests.add(1.0);
    }

    /// `cancel_request` for the middleware core: a request taken out (a scrape or a probe) leaves the in-flight gauge.
    #[inline]
    pub(crate) fn unmark_in_flight(&self) {
        self.core.active_requests.add(-1.0);
    }

    /// `end_request` with Rust values: the middleware core's, and the Python method's once it has read its arguments.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn end_request_with(
        &self,
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        provider: &Bound<'_, PyAny>,
        success: bool,
        latency_ms: Result<f64, Invalid>,
        labels: Option<&Bound<'_, PyAny>>,
        span: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.unmark_in_flight();
        self.outcome(
            py,
            &self.core.requests,
            &[endpoint, provider],
            success,
            latency_ms,
            labels,
            span,
        )
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn outcome(
        &self,
        py: Python<'_>,
        group: &Group,
        fixed: &[&Bound<'_, PyAny>],
        success: bool,
        d: Result<f64, Invalid>,
        labels: Option<&Bound<'_, PyAny>>,
        span: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // The exemplar: the span given, else the current one; only a sampled span has a trace to link to.
        let ids = match span {
            Some(s) if !s.is_none() => sampled_ids(s),
            _ => current_sampled_ids(py),
        };
        with_series(py, &self.core, group, self.label_value_cap, fixed, labels, |series| {
            if let (Some((s, v)), Some((trace_id, span_id))) = (self.core.record_outcome(series, success, d), ids) {
                s.set_exemplar(v, ExemplarLabels::Span { trace_id, span_id }, now_seconds());
            }
        })
    }

    fn cache(&self, py: Python<'_>, cache_name: &Bound<'_, PyAny>, which: usize) -> PyResult<()> {
        let caches = &self.core.caches;
        with_series(
            py,
            &self.core,
            caches,
            self.label_value_cap,
            &[cache_name],
            None,
            |series| series[which].inc_int(1),
        )
    }

    /// One label value of a single-label family outside the groups, fixed and counted as in `with_series`.
    fn single_label(&self, metric: &str, value: &Bound<'_, PyAny>) -> String {
        let mut fixes = LabelFixes::default();
        let s = label_str(value, &mut fixes);
        let text = label_text(&s, self.label_value_cap, &mut fixes).into_owned();
        if fixes.any() {
            count_label_fixes(&self.core.registry.invalid, metric, fixes);
        }
        text
    }
}

#[pymethods]
impl CollectorCore {
    #[new]
    #[pyo3(signature = (prefix = "victor", *_args, series_cap = DEFAULT_SERIES_CAP, label_value_cap = DEFAULT_LABEL_VALUE_CAP, **_kwargs))]
    fn new(
        py: Python<'_>,
        prefix: &str,
        _args: &Bound<'_, PyTuple>,
        series_cap: usize,
        label_value_cap: usize,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        check_label_value_cap(prefix, label_value_cap)?;
        let core = Core::new(prefix, series_cap)?;
        let registry = Py::new(
            py,
            RegistryCore {
                inner: core.registry.clone(),
            },
        )?;
        Ok(CollectorCore {
            core,
            registry,
            label_value_cap,
        })
    }

    /// The registry holding the collector's families; define more metrics on it.
    #[getter]
    fn core_registry(&self, py: Python<'_>) -> Py<RegistryCore> {
        self.registry.clone_ref(py)
    }

    /// `latency_ms` may be missing, and `success` is read for its truth, so that a mis-call such as the guide's
    /// "Bad" `record_request("/chat", True, 123.4)` drops the sample and counts it (reason "missing_argument")
    /// instead of raising into the caller's request.
    #[pyo3(signature = (endpoint, provider, success, latency_ms = None, labels = None))]
    fn record_request(
        &self,
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        provider: &Bound<'_, PyAny>,
        success: &Bound<'_, PyAny>,
        latency_ms: Option<&Bound<'_, PyAny>>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.outcome(
            py,
            &self.core.requests,
            &[endpoint, provider],
            truthy(success),
            given(latency_ms),
            labels,
            None,
        )
    }

    /// Marks a request in flight (`<prefix>_active_requests` + 1); `end_request` records and undoes it.
    fn begin_request(&self) {
        self.mark_in_flight();
    }

    /// Undoes `begin_request` for a request that is not to be recorded (a scrape or a probe).
    fn cancel_request(&self) {
        self.unmark_in_flight();
    }

    /// `record_request` and `<prefix>_active_requests` - 1 in one call (the middleware's end of request). The
    /// latency's exemplar is `span` (the request's server span) when it is sampled, else the current span's.
    #[pyo3(signature = (endpoint, provider, success, latency_ms, labels = None, span = None))]
    #[allow(clippy::too_many_arguments)]
    fn end_request(
        &self,
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        provider: &Bound<'_, PyAny>,
        success: &Bound<'_, PyAny>,
        latency_ms: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        span: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.end_request_with(
            py,
            endpoint,
            provider,
            truthy(success),
            given(Some(latency_ms)),
            labels,
            span,
        )
    }

    #[pyo3(signature = (tool_name, success, duration_ms, labels = None))]
    fn record_tool_execution(
        &self,
        py: Python<'_>,
        tool_name: &Bound<'_, PyAny>,
        success: &Bound<'_, PyAny>,
        duration_ms: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.outcome(
            py,
            &self.core.tools,
            &[tool_name],
            truthy(success),
            given(Some(duration_ms)),
            labels,
            None,
        )
    }

    #[pyo3(signature = (coordinator_name, success, duration_ms, labels = None))]
    fn record_coordinator_execution(
        &self,
        py: Python<'_>,
        coordinator_name: &Bound<'_, PyAny>,
        success: &Bound<'_, PyAny>,
        duration_ms: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.outcome(
            py,
            &self.core.coordinators,
            &[coordinator_name],
            truthy(success),
            given(Some(duration_ms)),
            labels,
            None,
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
    fn record_task_completion(&self, success: &Bound<'_, PyAny>, cost_usd: Option<&Bound<'_, PyAny>>) {
        self.core
            .record_task_completion(truthy(success), cost_usd.map_or(Ok(0.0), sample_f64));
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
        let name = self.single_label(&self.core.cache_size.exposed_name(), cache_name);
        match sample_f64(size).and_then(check_non_negative) {
            Ok(v) => {
                let found = self.core.cache_size.lookup(&[&name]);
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
        let t = self.single_label(&self.core.errors.exposed_name(), error_type);
        let found = self.core.errors.lookup(&[&t]);
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

    /// Recomputes `<prefix>_error_rate` from the request counters (called before each export);
    /// in multi-process mode from the service-wide counters.
    fn _refresh_error_rate(&self, py: Python<'_>) {
        let rate = if multiproc::is_enabled() {
            let r = &self.core.requests.families;
            let t = Totals::of(py, vec![r[0].clone(), r[2].clone()]);
            rate(t.total(&r[2]), t.total(&r[0]))
        } else {
            self.core.request_error_rate()
        };
        self.core.error_rate.set(rate);
    }

    fn get_cache_hit_rate(&self, py: Python<'_>) -> f64 {
        if multiproc::is_enabled() {
            let c = &self.core.caches.families;
            let t = Totals::of(py, vec![c[0].clone(), c[1].clone()]);
            let (hits, misses) = (t.total(&c[0]), t.total(&c[1]));
            return rate(hits, hits + misses);
        }
        self.core.cache_hit_rate()
    }

    /// The numbers `get_summary()` arranges: totals, percentiles from the HDR recordings; in
    /// multi-process mode service-wide, from the merged view.
    fn _stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.core;
        let t = Totals::of(py, c.registry.families());
        let d = PyDict::new(py);
        let r = &c.requests.families;
        let requests = t.total(&r[0]);
        d.set_item("requests_total", requests)?;
        d.set_item("requests_success", t.total(&r[1]))?;
        d.set_item("requests_errors", t.total(&r[2]))?;
        d.set_item("error_rate", rate(t.total(&r[2]), requests))?;
        d.set_item("latency_quantiles", t.quantiles(&r[3], &[0.5, 0.95, 0.99]))?;
        let tl = &c.tools.families;
        d.set_item("tool_calls", t.total(&tl[0]))?;
        d.set_item("tool_errors", t.total(&tl[1]))?;
        d.set_item("tool_active", t.value(&c.tool_active))?;
        d.set_item("tool_quantiles", t.quantiles(&tl[2], &[0.5, 0.95]))?;
        let k = &c.coordinators.families;
        d.set_item("coordinator_invocations", t.total(&k[0]))?;
        d.set_item("coordinator_errors", t.total(&k[1]))?;
        let ca = &c.caches.families;
        let (hits, misses) = (t.total(&ca[0]), t.total(&ca[1]));
        d.set_item("cache_hits", hits)?;
        d.set_item("cache_misses", misses)?;
        d.set_item("cache_evictions", t.total(&ca[2]))?;
        d.set_item("cache_size", t.total(&c.cache_size))?;
        d.set_item("cache_hit_rate", rate(hits, hits + misses))?;
        d.set_item("tasks_completed", t.value(&c.tasks_completed))?;
        d.set_item("tasks_failed", t.value(&c.tasks_failed))?;
        d.set_item("total_cost_usd", t.value(&c.total_cost))?;
        d.set_item("tokens_used", t.value(&c.tokens))?;
        d.set_item("active_requests", t.value(&c.active_requests))?;
        d.set_item("errors_total", t.total(&c.errors))?;
        d.set_item("invalid_samples", t.total(&c.registry.invalid))?;
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
