//! Reading ASGI scopes and messages: a dict (what servers hand) on the fast path, any mapping or sequence besides.

use super::UNMATCHED_ROUTE;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

/// A response without a declared length: never reached.
pub(super) const UNDECLARED: i64 = -(1 << 62);

/// `scope.get(key)`, None for a missing key or None.
pub(super) fn scope_get<'py>(
    scope: &Bound<'py, PyAny>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let v = match scope.cast::<PyDict>() {
        Ok(d) => d.get_item(key)?,
        Err(_) => Some(scope.call_method1(intern!(scope.py(), "get"), (key,))?),
    };
    Ok(v.filter(|v| !v.is_none()))
}

/// `scope.get(key)` as a str, None when missing or not a str.
pub(super) fn scope_str<'py>(
    scope: &Bound<'py, PyAny>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyString>>> {
    Ok(scope_get(scope, key)?.and_then(|v| v.cast_into::<PyString>().ok()))
}

/// `scope[key] = value`.
pub(super) fn scope_set(scope: &Bound<'_, PyAny>, key: &Bound<'_, PyString>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    match scope.cast::<PyDict>() {
        Ok(d) => d.set_item(key, value),
        Err(_) => scope.set_item(key, value),
    }
}

/// `scope.pop(key, None)`: a key already gone, or a scope that refuses, is left as it is.
pub(super) fn scope_remove(scope: &Bound<'_, PyAny>, key: &Bound<'_, PyString>) {
    let _ = match scope.cast::<PyDict>() {
        Ok(d) => d.del_item(key),
        Err(_) => scope
            .call_method1(intern!(scope.py(), "pop"), (key, scope.py().None()))
            .map(drop),
    };
}

/// The response's Content-Length (ASGI header names are lowercase), or UNDECLARED.
pub(super) fn declared_length(headers: &Bound<'_, PyAny>) -> i64 {
    let found = |pair: Bound<'_, PyAny>| -> Option<i64> {
        let pair = pair.cast_into::<PyTuple>().ok().filter(|p| p.len() == 2)?;
        let name = pair.get_borrowed_item(0).ok()?;
        if name.cast::<PyBytes>().ok()?.as_bytes() != b"content-length" {
            return None;
        }
        let value = pair.get_borrowed_item(1).ok()?;
        let value = value.cast::<PyBytes>().ok()?;
        let v = value.as_bytes();
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(std::str::from_utf8(v).ok()?.parse().unwrap_or(UNDECLARED))
    };
    if let Ok(list) = headers.cast::<PyList>() {
        return list.iter().find_map(found).unwrap_or(UNDECLARED);
    }
    let Ok(iter) = headers.try_iter() else {
        return UNDECLARED;
    };
    iter.flatten().find_map(found).unwrap_or(UNDECLARED)
}

/// The matched route's template (`/items/{item_id}`), as Starlette and FastAPI leave it in the scope; None when no
/// route matched or the route has no template.
pub(super) fn route_of<'py>(scope: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyString>>> {
    let py = scope.py();
    let Some(route) = scope_get(scope, intern!(py, "route"))? else {
        return Ok(None);
    };
    if let Some(t) = route.getattr_opt(intern!(py, "path_format"))? {
        if let Ok(t) = t.cast_into::<PyString>() {
            if t.len()? > 0 {
                return Ok(Some(t));
            }
        }
    }
    Ok(route
        .getattr_opt(intern!(py, "path"))?
        .and_then(|p| p.cast_into::<PyString>().ok()))
}

pub(super) fn route_matched(route: &Bound<'_, PyString>) -> bool {
    route.to_str().is_ok_and(|r| r != UNMATCHED_ROUTE)
}
