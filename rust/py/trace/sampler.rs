//! The built-in head samplers, decided in Rust.

use crate::trace::hex::parse_trace_id;
use crate::trace::sampler::{ParentInfo, Sampler as CoreSampler};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A built-in head sampler; `TraceIdRatioSampler` and `ParentBasedSampler` are its public constructors.
#[pyclass(frozen, subclass, module = "victor_observability.tracing")]
pub struct Sampler {
    pub(crate) inner: CoreSampler,
}

#[pymethods]
impl Sampler {
    #[staticmethod]
    pub(crate) fn always_on() -> Sampler {
        Sampler {
            inner: CoreSampler::AlwaysOn,
        }
    }
    #[staticmethod]
    pub(crate) fn always_off() -> Sampler {
        Sampler {
            inner: CoreSampler::AlwaysOff,
        }
    }
    #[staticmethod]
    pub(crate) fn trace_id_ratio(ratio: f64) -> PyResult<Sampler> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(PyValueError::new_err(format!(
                "sampler ratio {ratio} must be within [0, 1]"
            )));
        }
        Ok(Sampler {
            inner: CoreSampler::ratio(ratio),
        })
    }
    #[staticmethod]
    pub(crate) fn parent_based(root: &Bound<'_, Sampler>) -> Sampler {
        Sampler {
            inner: CoreSampler::ParentBased {
                root: Box::new(root.get().inner.clone()),
            },
        }
    }
    /// The decision for a trace id (hex) and the parent's sampled flag (None for a root).
    #[pyo3(signature = (trace_id, parent_sampled=None, name=None))]
    pub(crate) fn should_sample(
        &self,
        trace_id: &str,
        parent_sampled: Option<bool>,
        name: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = name;
        let id = parse_trace_id(trace_id)
            .ok_or_else(|| PyValueError::new_err(format!("trace_id {trace_id:?} is invalid")))?;
        Ok(self
            .inner
            .should_sample(id, parent_sampled.map(|sampled| ParentInfo { sampled, remote: false })))
    }
    #[getter]
    pub(crate) fn description(&self) -> String {
        self.inner.describe()
    }
    pub(crate) fn __repr__(&self) -> String {
        format!("Sampler({})", self.inner.describe())
    }
}

/// Samples `ratio` of traces, decided on the trace id alone so that every service agrees.
#[pyclass(frozen, extends = Sampler, module = "victor_observability.tracing")]
pub struct TraceIdRatioSampler;

#[pymethods]
impl TraceIdRatioSampler {
    #[new]
    fn new(ratio: f64) -> PyResult<PyClassInitializer<Self>> {
        Ok(PyClassInitializer::from(Sampler::trace_id_ratio(ratio)?).add_subclass(TraceIdRatioSampler))
    }
}

/// Follows the parent's sampled flag; roots are decided by `root` (default: always on).
#[pyclass(frozen, extends = Sampler, module = "victor_observability.tracing")]
pub struct ParentBasedSampler;

#[pymethods]
impl ParentBasedSampler {
    #[new]
    #[pyo3(signature = (root=None))]
    fn new(root: Option<&Bound<'_, Sampler>>) -> PyClassInitializer<Self> {
        let base = match root {
            Some(root) => Sampler::parent_based(root),
            None => Sampler {
                inner: CoreSampler::ParentBased {
                    root: Box::new(CoreSampler::AlwaysOn),
                },
            },
        };
        PyClassInitializer::from(base).add_subclass(ParentBasedSampler)
    }
}
