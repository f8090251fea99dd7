//! The one error type of the core; rust/py/mod.rs maps it to a Python exception once.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad value: maps to `ValueError`.
    Value,
    /// A value of the wrong type: maps to `TypeError`.
    Type,
}

/// A definition-time or low-level API mistake, always naming the metric it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub metric: String,
    pub message: String,
}

impl Error {
    pub fn value(metric: &str, message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Value,
            metric: metric.to_owned(),
            message: message.into(),
        }
    }

    pub fn type_error(metric: &str, message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::Type,
            metric: metric.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.metric.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "metric {:?}: {}", self.metric, self.message)
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
