//! Metric and label names per the Prometheus data model.

use crate::error::{Error, Result};

pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub fn check_metric_name(name: &str) -> Result<()> {
    if is_metric_name(name) {
        Ok(())
    } else {
        Err(Error::value(
            name,
            "invalid metric name: it must match [a-zA-Z_:][a-zA-Z0-9_:]*",
        ))
    }
}

/// Checks one label name of `metric`; `reserved` names (e.g. `le` on histograms) are refused too.
pub fn check_label_name(metric: &str, label: &str, reserved: &[&str]) -> Result<()> {
    if !is_label_name(label) {
        return Err(Error::value(
            metric,
            format!("invalid label name {label:?}: it must match [a-zA-Z_][a-zA-Z0-9_]*"),
        ));
    }
    if label.starts_with("__") {
        return Err(Error::value(
            metric,
            format!("label name {label:?} is reserved: names starting with __ are for Prometheus"),
        ));
    }
    if reserved.contains(&label) {
        return Err(Error::value(
            metric,
            format!("label name {label:?} is reserved for this metric type"),
        ));
    }
    Ok(())
}

/// Checks a whole list of label names: each valid, none repeated.
pub fn check_label_names(metric: &str, labels: &[String], reserved: &[&str]) -> Result<()> {
    for (i, l) in labels.iter().enumerate() {
        check_label_name(metric, l, reserved)?;
        if labels[..i].contains(l) {
            return Err(Error::value(metric, format!("duplicate label name {l:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        assert!(is_metric_name("victor_request_total"));
        assert!(is_metric_name(":a:b"));
        assert!(!is_metric_name("1abc"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("a-b"));
        assert!(!is_metric_name("naïve"));
    }

    #[test]
    fn label_names() {
        assert!(check_label_name("m", "endpoint", &[]).is_ok());
        assert!(check_label_name("m", "__name", &[]).is_err());
        assert!(check_label_name("m", "a:b", &[]).is_err());
        assert!(check_label_name("m", "le", &["le"]).is_err());
        let e = check_label_names("m", &["a".into(), "a".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("duplicate"));
        assert!(e.to_string().contains("\"m\""));
    }
}
