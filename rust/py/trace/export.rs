//! SpanBatch: one drained batch of finished spans, encoded to OTLP or JSON lines in one call without the GIL.

use super::convert::to_attr;
use super::data::SpanData;
use super::shared::Shared;
use crate::trace::encode::{json, otlp};
use crate::trace::http::Poster;
use crate::trace::span::{AttrValue, Attributes, SpanRecord, Text};
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyMapping};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

/// The spans one export takes from the queue. Exporters that write bytes call `encode_otlp()` or
/// `encode_json_lines()` (Rust, GIL released, no Python object per span); the others read it as a sequence of
/// SpanData, made on demand.
#[pyclass(frozen, module = "victor_observability.tracing")]
pub struct SpanBatch {
    pub(crate) records: Vec<Arc<SpanRecord>>,
    pub(crate) shared: Arc<Shared>,
}

impl SpanBatch {
    /// The OTLP resource: service.name, the telemetry.sdk.* attributes, then the exporter's (which may override).
    fn resource(&self, extra: Option<&Bound<'_, PyMapping>>) -> PyResult<Attributes> {
        let mut resource: Attributes = vec![
            (
                "service.name".into(),
                AttrValue::Str(self.shared.service_name.as_str().into()),
            ),
            (
                "telemetry.sdk.name".into(),
                AttrValue::Str("victor-observability".into()),
            ),
            ("telemetry.sdk.language".into(), AttrValue::Str("python".into())),
            (
                "telemetry.sdk.version".into(),
                AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
            ),
        ];
        if let Some(extra) = extra {
            for item in extra.items()?.iter() {
                let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
                let key: Text = k.str()?.to_str()?.into();
                // Anything outside the attribute rules (None, mixed lists) is sent as its str(), not dropped.
                let value = match to_attr(&v) {
                    Some(a) => a,
                    None => AttrValue::Str(v.str()?.to_str()?.into()),
                };
                match resource.iter_mut().find(|(rk, _)| *rk == key) {
                    Some(slot) => slot.1 = value,
                    None => resource.push((key, value)),
                }
            }
        }
        Ok(resource)
    }

    fn data(&self, record: &Arc<SpanRecord>) -> SpanData {
        SpanData {
            record: record.clone(),
            shared: self.shared.clone(),
        }
    }
}

#[pymethods]
impl SpanBatch {
    /// A batch of SpanData from elsewhere (an exporter called directly); all of one service, not empty.
    #[staticmethod]
    pub(crate) fn of(spans: &Bound<'_, PyAny>) -> PyResult<SpanBatch> {
        let mut records = Vec::new();
        let mut shared: Option<Arc<Shared>> = None;
        for item in spans.try_iter()? {
            let item = item?;
            let data = item.cast::<SpanData>()?.get();
            match &shared {
                None => shared = Some(data.shared.clone()),
                Some(s) if s.service_name != data.shared.service_name => {
                    return Err(PyValueError::new_err(
                        "SpanBatch.of: the spans must all be of one service",
                    ));
                }
                Some(_) => {}
            }
            records.push(data.record.clone());
        }
        match shared {
            Some(shared) => Ok(SpanBatch { records, shared }),
            None => Err(PyValueError::new_err("SpanBatch.of: no spans")),
        }
    }

    pub(crate) fn __len__(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn __getitem__(&self, index: isize) -> PyResult<SpanData> {
        let n = self.records.len() as isize;
        let i = if index < 0 { index + n } else { index };
        if !(0..n).contains(&i) {
            return Err(PyIndexError::new_err("SpanBatch index out of range"));
        }
        Ok(self.data(&self.records[i as usize]))
    }

    pub(crate) fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        self.spans(py)?.try_iter()
    }

    /// The spans as SpanData, in the order they finished.
    pub(crate) fn spans<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.records.iter().map(|r| self.data(r)))
    }

    #[getter]
    pub(crate) fn service_name(&self) -> &str {
        &self.shared.service_name
    }

    /// One JSON object per span and line, exactly `json.dumps(span.to_dict())` plus `"\n"` (ASCII; compact
    /// separators, or json's defaults with `compact=False`).
    #[pyo3(signature = (compact=true))]
    pub(crate) fn encode_json_lines<'py>(&self, py: Python<'py>, compact: bool) -> Bound<'py, PyBytes> {
        let style = if compact {
            json::Style::COMPACT
        } else {
            json::Style::DEFAULT
        };
        let (records, service) = (&self.records, self.shared.service_name.as_str());
        encode_into_bytes(py, |out| json::write_lines(out, records, service, style))
    }

    /// Appends `encode_json_lines(compact)` to the open file descriptor `fd`, encoded and written with the GIL
    /// released and without a bytes object in between; returns the number of bytes written. An error (OSError)
    /// may come after part of the lines were written, as with `os.write`.
    #[pyo3(signature = (fd, compact=true))]
    pub(crate) fn write_json_lines(&self, py: Python<'_>, fd: i32, compact: bool) -> PyResult<usize> {
        let style = if compact {
            json::Style::COMPACT
        } else {
            json::Style::DEFAULT
        };
        let (records, service) = (&self.records, self.shared.service_name.as_str());
        encode_with(py, |out| {
            json::write_lines(out, records, service, style);
            write_fd(fd, out).map(|()| out.len())
        })
        .map_err(PyErr::from)
    }

    /// The body of an OTLP/HTTP protobuf export: an ExportTraceServiceRequest whose resource carries
    /// service.name, the telemetry.sdk.* attributes and then `resource_attributes` (which may override them).
    #[pyo3(signature = (resource_attributes=None))]
    pub(crate) fn encode_otlp<'py>(
        &self,
        py: Python<'py>,
        resource_attributes: Option<&Bound<'py, PyMapping>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let resource = self.resource(resource_attributes)?;
        let records = &self.records;
        Ok(encode_into_bytes(py, |out| {
            otlp::encode_request(out, records, &resource)
        }))
    }

    /// `encode_otlp(resource_attributes)` posted on `connection`, encoded and sent with the GIL released and no
    /// bytes object in between; returns the response status. OSError when no complete answer came.
    #[pyo3(signature = (connection, resource_attributes=None))]
    pub(crate) fn post_otlp(
        &self,
        py: Python<'_>,
        connection: &OtlpHttpConnection,
        resource_attributes: Option<&Bound<'_, PyMapping>>,
    ) -> PyResult<u16> {
        let resource = self.resource(resource_attributes)?;
        let (records, poster) = (&self.records, &connection.poster);
        encode_with(py, |out| {
            otlp::encode_request(out, records, &resource);
            poster.post(out)
        })
        .map_err(PyErr::from)
    }

    pub(crate) fn __repr__(&self) -> String {
        format!("SpanBatch({} spans)", self.records.len())
    }
}

/// One kept-alive HTTP/1.1 connection to an OTLP collector at a plain `http://` endpoint: the exporter's send in
/// Rust, without the GIL. What a status means, retries and timeouts as policy stay in `tracing/otlp.py`.
#[pyclass(frozen, module = "victor_observability._core")]
pub struct OtlpHttpConnection {
    poster: Poster,
}

#[pymethods]
impl OtlpHttpConnection {
    /// `host_header` is the Host value (host[:port] as the URL has it); `timeout` bounds the connect and each
    /// read and write, in seconds. ValueError for a header or path that holds a line break.
    #[new]
    pub(crate) fn new(
        host: &str,
        port: u16,
        path: &str,
        host_header: &str,
        headers: Vec<(String, String)>,
        timeout: f64,
    ) -> PyResult<Self> {
        let timeout = Duration::from_secs_f64(timeout.clamp(0.001, 86_400.0));
        Poster::new(host, port, path, host_header, &headers, timeout)
            .map(|poster| OtlpHttpConnection { poster })
            .map_err(|e| PyValueError::new_err(format!("OTLP endpoint: {e}")))
    }

    /// Posts `body`; returns the response status. OSError when no complete answer came.
    pub(crate) fn post(&self, py: Python<'_>, body: &[u8]) -> PyResult<u16> {
        let poster = &self.poster;
        py.detach(|| poster.post(body)).map_err(PyErr::from)
    }

    /// Closes the kept-alive connection (shutdown; a forked child drops its copy of the parent's).
    pub(crate) fn close(&self) {
        self.poster.close()
    }
}

thread_local! {
    /// The export thread's encoding buffer, kept between batches: a fresh one per batch cost more in page faults
    /// and regrowth than the encoding itself. Plain memory, no lock: nothing for a fork to find held.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Bytes past this are not kept between batches (one huge batch must not pin its buffer for good).
const SCRATCH_KEEP: usize = 4 << 20;

/// Runs `encode` with the GIL released into this thread's scratch buffer, then copies the result into `bytes`.
fn encode_into_bytes<'py>(py: Python<'py>, encode: impl FnOnce(&mut Vec<u8>) + Send) -> Bound<'py, PyBytes> {
    SCRATCH.with(|scratch| {
        let mut buf = std::mem::take(&mut *scratch.borrow_mut());
        buf.clear();
        let buf = py.detach(move || {
            encode(&mut buf);
            buf
        });
        let bytes = PyBytes::new(py, &buf);
        if buf.capacity() <= SCRATCH_KEEP {
            *scratch.borrow_mut() = buf;
        }
        bytes
    })
}

/// Runs `f` with the GIL released on this thread's scratch buffer (cleared), and returns what it returns.
pub(crate) fn encode_with<T: Send>(py: Python<'_>, f: impl FnOnce(&mut Vec<u8>) -> T + Send) -> T {
    SCRATCH.with(|scratch| {
        let mut buf = std::mem::take(&mut *scratch.borrow_mut());
        buf.clear();
        let (buf, result) = py.detach(move || {
            let result = f(&mut buf);
            (buf, result)
        });
        if buf.capacity() <= SCRATCH_KEEP {
            *scratch.borrow_mut() = buf;
        }
        result
    })
}

/// Writes all of `data` to `fd` (retrying short writes and EINTR), leaving the descriptor open.
fn write_fd(fd: i32, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the File only borrows the caller's descriptor: ManuallyDrop never closes it.
    let mut file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    file.write_all(data)
}
