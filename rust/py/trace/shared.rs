//! What a tracer's spans share (limits, sampler, counters, the store) and how a parent is resolved.

use super::context::{Ctx, SpanContext};
use super::convert::{to_attr, warn_once, WARNED_ATTRIBUTE, WARNED_SAMPLER};
use super::non_recording::NonRecordingSpan;
use super::span::Span;
use crate::trace::buffer::Store;
use crate::trace::hex::trace_id_hex;
use crate::trace::sampler::{ParentInfo, Sampler as CoreSampler};
use crate::trace::span::{AttrValue, Limits, Text};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) enum SamplerImpl {
    Core(CoreSampler),
    /// A Python object with `should_sample(trace_id: str, parent_sampled: bool | None, name: str) -> bool`.
    Custom(Py<PyAny>),
}

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) limits: Limits,
    pub(crate) sampler: SamplerImpl,
    pub(crate) service_name: String,
    pub(crate) invalid_attributes: AtomicU64,
    pub(crate) sampler_errors: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) unsampled: AtomicU64,
}

impl Shared {
    pub(crate) fn sample(
        &self,
        py: Python<'_>,
        trace_id: u128,
        parent: Option<ParentInfo>,
        name: &Bound<'_, PyString>,
    ) -> bool {
        match &self.sampler {
            SamplerImpl::Core(s) => s.should_sample(trace_id, parent),
            SamplerImpl::Custom(obj) => {
                let parent_sampled = parent.map(|p| p.sampled);
                match obj
                    .bind(py)
                    .call_method1(
                        intern!(py, "should_sample"),
                        (trace_id_hex(trace_id), parent_sampled, name),
                    )
                    .and_then(|r| r.is_truthy())
                {
                    Ok(b) => b,
                    Err(e) => {
                        // A broken sampler must not break requests: do not sample, count, log once.
                        self.sampler_errors.fetch_add(1, Ordering::Relaxed);
                        warn_once(
                            py,
                            &WARNED_SAMPLER,
                            &format!("custom sampler failed, spans not sampled: {e}"),
                        );
                        false
                    }
                }
            }
        }
    }

    /// True when an unsampled parent always yields an unsampled child.
    #[inline]
    pub(crate) fn follows_unsampled_parent(&self) -> bool {
        matches!(
            self.sampler,
            SamplerImpl::Core(CoreSampler::AlwaysOff | CoreSampler::ParentBased { .. })
        )
    }

    pub(crate) fn convert(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> Option<(Text, AttrValue)> {
        let key = key
            .cast::<PyString>()
            .ok()
            .and_then(|k| k.to_str().ok())
            .filter(|k| !k.is_empty());
        match (key, to_attr(value)) {
            (Some(k), Some(v)) => Some((k.into(), self.limits.clip(v))),
            _ => {
                self.invalid_attributes.fetch_add(1, Ordering::Relaxed);
                warn_once(
                    py,
                    &WARNED_ATTRIBUTE,
                    "span attribute dropped: keys must be non-empty str, values str, bool, int, float or \
                     homogeneous sequences of them (counted in tracer.stats()['invalid_attributes'])",
                );
                None
            }
        }
    }
}

/// What a new span inherits from its parent.
pub(crate) fn parent_of(obj: &Bound<'_, PyAny>) -> PyResult<Option<Ctx>> {
    if let Ok(s) = obj.cast::<Span>() {
        return Ok(Some(s.get().ctx()));
    }
    if let Ok(s) = obj.cast::<NonRecordingSpan>() {
        return Ok(Some(s.get().ctx.clone()));
    }
    if let Ok(c) = obj.cast::<SpanContext>() {
        return Ok(Some(c.get().ctx.clone()));
    }
    // None: no parent here; False: explicitly none, a new trace (start_span reads None as "the current span").
    if obj.is_none() || obj.cast::<PyBool>().is_ok_and(|b| !b.is_true()) {
        return Ok(None);
    }
    Err(PyTypeError::new_err(format!(
        "parent must be a Span, NonRecordingSpan, SpanContext, None or False, not {}",
        obj.get_type().name()?
    )))
}
