//! Head sampling decisions: always on/off, trace-id ratio (deterministic, OpenTelemetry's rule) and parent-based.

/// What a sampler knows about the parent of the span being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentInfo {
    pub sampled: bool,
    pub remote: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Keeps a trace when the low 64 bits of its id are below `bound` = ratio * 2^64, the rule of OpenTelemetry's
    /// TraceIdRatioBased: every service (ours or an OpenTelemetry SDK) with the same ratio agrees.
    Ratio {
        ratio: f64,
        bound: u64,
    },
    /// Follows the parent's sampled flag; roots go to `root`.
    ParentBased {
        root: Box<Sampler>,
    },
}

impl Sampler {
    /// A ratio sampler; the ratio is clamped to [0, 1] (NaN counts as 0).
    pub fn ratio(ratio: f64) -> Sampler {
        let ratio = if ratio.is_nan() { 0.0 } else { ratio.clamp(0.0, 1.0) };
        let bound = if ratio >= 1.0 {
            u64::MAX
        } else {
            (ratio * 18_446_744_073_709_551_616.0) as u64
        };
        Sampler::Ratio { ratio, bound }
    }

    #[inline]
    pub fn should_sample(&self, trace_id: u128, parent: Option<ParentInfo>) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio { ratio, bound } => *ratio >= 1.0 || (trace_id as u64) < *bound,
            Sampler::ParentBased { root } => match parent {
                Some(p) => p.sampled,
                None => root.should_sample(trace_id, None),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sampler::AlwaysOn => "AlwaysOn".into(),
            Sampler::AlwaysOff => "AlwaysOff".into(),
            Sampler::Ratio { ratio, .. } => format!("TraceIdRatio({ratio})"),
            Sampler::ParentBased { root } => format!("ParentBased(root={})", root.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::ids;

    #[test]
    fn ratio_is_close_and_deterministic() {
        let s = Sampler::ratio(0.1);
        let n = 100_000;
        let kept = (0..n).filter(|_| s.should_sample(ids::trace_id(), None)).count();
        assert!((9_000..11_000).contains(&kept), "{kept}");
        let id = ids::trace_id();
        assert_eq!(s.should_sample(id, None), s.should_sample(id, None));
        assert!(!Sampler::ratio(0.0).should_sample(1, None));
        assert!(Sampler::ratio(1.0).should_sample(u128::MAX, None));
    }

    #[test]
    fn parent_based() {
        let s = Sampler::ParentBased {
            root: Box::new(Sampler::AlwaysOff),
        };
        assert!(!s.should_sample(1, None));
        assert!(s.should_sample(
            1,
            Some(ParentInfo {
                sampled: true,
                remote: true
            })
        ));
        assert!(!s.should_sample(
            1,
            Some(ParentInfo {
                sampled: false,
                remote: false
            })
        ));
    }
}
