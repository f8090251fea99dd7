//! Python binding of rust/multiproc/: turning multi-process mode on and asking about it.

use crate::multiproc;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use std::path::PathBuf;

/// The environment variable that turns multi-process mode on at import (must match multiprocess.py).
pub const ENV_VAR: &str = "VICTOR_MULTIPROC_DIR";

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mp_enable, m)?)?;
    m.add_function(wrap_pyfunction!(mp_is_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(mp_directory, m)?)?;
    m.add_function(wrap_pyfunction!(mp_store_path, m)?)?;
    m.add_function(wrap_pyfunction!(mp_archive_dead, m)?)?;
    m.add_function(wrap_pyfunction!(mp_is_leader, m)?)?;
    m.add("MULTIPROC_ENV_VAR", ENV_VAR)?;
    // At import, before any metric exists: the only moment the switch is safe to throw.
    if let Some(dir) = std::env::var_os(ENV_VAR).filter(|d| !d.is_empty()) {
        mp_enable(PathBuf::from(dir))?;
    }
    Ok(())
}

/// Turns multi-process mode on with `path` as the shared directory (created 0700 if missing).
#[pyfunction]
fn mp_enable(path: PathBuf) -> PyResult<()> {
    multiproc::enable(&path).map_err(|e| {
        PyOSError::new_err(format!(
            "victor_observability multi-process mode: cannot use directory {}: {e}",
            path.display()
        ))
    })
}

#[pyfunction]
fn mp_is_enabled() -> bool {
    multiproc::is_enabled()
}

#[pyfunction]
fn mp_directory() -> Option<String> {
    multiproc::dir().map(|d| d.to_string_lossy().into_owned())
}

/// This process's store file, once it has one.
#[pyfunction]
fn mp_store_path() -> Option<String> {
    multiproc::own_path().map(|p| p.to_string_lossy().into_owned())
}

/// Folds the files of every dead process into the archive now (scrapes also do it); returns how
/// many were folded. Never raises: a directory it cannot tidy is left for the next scrape.
#[pyfunction]
fn mp_archive_dead(py: Python<'_>) -> usize {
    let Some(dir) = multiproc::dir() else { return 0 };
    py.detach(|| multiproc::archive_dead(&dir).unwrap_or(0))
}

/// Whether this process is the directory's one leader (always true in single-process mode);
/// takes the lead when nobody holds it. A directory it cannot use leaves it leading alone, so
/// alerts are never silenced by a broken directory.
#[pyfunction]
fn mp_is_leader() -> bool {
    match multiproc::dir() {
        None => true,
        Some(dir) => multiproc::try_lead(&dir).unwrap_or(true),
    }
}
