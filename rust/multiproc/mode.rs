//! Gauge modes: how one gauge's values from several processes combine into the service's number.

/// prometheus-client's `multiprocess_mode` names. `Live*` modes count only processes that are
/// alive; the others also keep what dead processes left (folded into the archive), except `All`,
/// whose per-pid series of a dead process go when it is archived (a pid label of a gone process
/// would grow the directory without bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Mode {
    /// One series per process with a `pid` label.
    #[default]
    All = 0,
    LiveAll = 1,
    Sum = 2,
    LiveSum = 3,
    Max = 4,
    LiveMax = 5,
    Min = 6,
    LiveMin = 7,
    MostRecent = 8,
    LiveMostRecent = 9,
}

impl Mode {
    pub const NAMES: [&'static str; 10] = [
        "all",
        "liveall",
        "sum",
        "livesum",
        "max",
        "livemax",
        "min",
        "livemin",
        "mostrecent",
        "livemostrecent",
    ];

    pub fn parse(s: &str) -> Option<Mode> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .and_then(|i| Mode::from_u8(i as u8))
    }

    pub fn from_u8(b: u8) -> Option<Mode> {
        use Mode::*;
        Some(match b {
            0 => All,
            1 => LiveAll,
            2 => Sum,
            3 => LiveSum,
            4 => Max,
            5 => LiveMax,
            6 => Min,
            7 => LiveMin,
            8 => MostRecent,
            9 => LiveMostRecent,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Counts only live processes.
    pub fn is_live(self) -> bool {
        (self as u8) % 2 == 1
    }

    /// The mode without its `live` restriction.
    pub fn base(self) -> Mode {
        Mode::from_u8((self as u8) & !1).expect("even codes are modes")
    }

    /// The gauge keeps the time of its last change, so a merge can pick the latest.
    pub fn timestamped(self) -> bool {
        self.base() == Mode::MostRecent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in Mode::NAMES {
            assert_eq!(Mode::parse(n).unwrap().as_str(), n);
        }
        assert_eq!(Mode::parse("livesum").unwrap().base(), Mode::Sum);
        assert!(Mode::LiveMax.is_live() && !Mode::Max.is_live());
        assert!(Mode::parse("avg").is_none());
    }
}
