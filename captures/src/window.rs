//! The time window a person asks about, and the hours of the key layout it
//! can touch.

use chrono::{DateTime, SecondsFormat, SubsecRound as _, TimeDelta, Utc};

#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error(
        "{0:?} is not a time: give RFC 3339 (2026-11-27T14:03:00Z), `now`, or a time relative to now such as -30m, -2h, -90s or -1d"
    )]
    Unparsable(String),
    #[error("the window is empty: --from {from} is not before --to {to}; give an earlier --from")]
    Empty { from: String, to: String },
}

/// Parses RFC 3339 or a time relative to `now` (`now`, `-30m`, `-2h`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(relative) = text.strip_prefix('-') {
        let unparsable = || TimeError::Unparsable(text.to_owned());
        let split = relative
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(unparsable)?;
        let (digits, unit) = relative.split_at(split);
        let n: i64 = digits.parse().map_err(|_| unparsable())?;
        let delta = match unit {
            "s" => TimeDelta::try_seconds(n),
            "m" => TimeDelta::try_minutes(n),
            "h" => TimeDelta::try_hours(n),
            "d" => TimeDelta::try_days(n),
            _ => None,
        }
        .ok_or_else(unparsable)?;
        return now.checked_sub_signed(delta).ok_or_else(unparsable);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| TimeError::Unparsable(text.to_owned()))
}

/// A non-empty stretch of time, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, TimeError> {
        if from >= to {
            return Err(TimeError::Empty {
                from: rfc3339(from),
                to: rfc3339(to),
            });
        }
        Ok(Self { from, to })
    }

    pub fn parse(from: &str, to: &str) -> Result<Self, TimeError> {
        // Microseconds: the precision of the captures' times and metadata.
        let now = Utc::now().trunc_subsecs(6);
        Self::new(parse_time(from, now)?, parse_time(to, now)?)
    }

    /// Whether `[start, end]` shares a moment with the window.
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        start <= self.to && end >= self.from
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t <= self.to
    }

    /// The UTC hours a capture overlapping the window can have started in:
    /// a capture that started up to `lookback` before `from` still covers it.
    pub fn start_hours(&self, lookback: TimeDelta) -> Vec<DateTime<Utc>> {
        let mut hour = floor_hour(self.from - lookback);
        let last = floor_hour(self.to);
        let mut hours = Vec::new();
        while hour <= last {
            hours.push(hour);
            hour += TimeDelta::hours(1);
        }
        hours
    }
}

fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0).unwrap_or(t)
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn relative_and_absolute_times_parse_and_nonsense_is_named() {
        let now = at("2026-11-27T14:03:00Z");
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("-30m", now).unwrap(), at("2026-11-27T13:33:00Z"));
        assert_eq!(parse_time("-2h", now).unwrap(), at("2026-11-27T12:03:00Z"));
        assert_eq!(parse_time("-1d", now).unwrap(), at("2026-11-26T14:03:00Z"));
        assert_eq!(parse_time("2026-11-27T15:03:00+01:00", now).unwrap(), now);
        for bad in ["-5x", "yesterday", "-m", ""] {
            let e = parse_time(bad, now).unwrap_err().to_string();
            assert!(e.contains("is not a time"), "{e}");
        }
    }

    #[test]
    fn an_empty_window_is_refused() {
        let e = Window::parse("now", "-1h").unwrap_err().to_string();
        assert!(e.contains("the window is empty"), "{e}");
    }

    #[test]
    fn start_hours_reach_back_by_the_rotation_and_stop_at_the_end_hour() {
        let w = Window::new(at("2026-11-27T14:00:30Z"), at("2026-11-27T15:10:00Z")).unwrap();
        let hours = w.start_hours(TimeDelta::seconds(60));
        assert_eq!(
            hours,
            vec![
                at("2026-11-27T13:00:00Z"),
                at("2026-11-27T14:00:00Z"),
                at("2026-11-27T15:00:00Z")
            ]
        );
    }
}
