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
    #[error(
        "{flag} {value} is before {earliest}: no capture is that old; give a later time (e.g. {flag} -2h)"
    )]
    TooEarly {
        flag: &'static str,
        value: String,
        earliest: String,
    },
    #[error(
        "{flag} {value} is more than a day after now ({now}); give an earlier time (e.g. {flag} now)"
    )]
    TooLate {
        flag: &'static str,
        value: String,
        now: String,
    },
    #[error(
        "the window --from {from} --to {to} is {hours} hours long, more than --max-window-hours {max_hours} (each hour is one list request per node): narrow the window, or raise --max-window-hours"
    )]
    TooLong {
        from: String,
        to: String,
        hours: i64,
        max_hours: u32,
    },
}

/// No capture is older than this: refused before any arithmetic, so that
/// a date near chrono's minimum never reaches the hour arithmetic.
pub const EARLIEST: DateTime<Utc> = DateTime::from_timestamp_nanos(946_684_800_000_000_000);

/// How far after now a window may end (clock skew between this machine and
/// the nodes).
pub const AFTER_NOW: TimeDelta = TimeDelta::days(1);

/// The default of `--max-window-hours`: 31 days.
pub const DEFAULT_MAX_HOURS: u32 = 31 * 24;

/// What a window may be: every hour of it is a list request per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// `--max-window-hours`.
    pub max_hours: u32,
}

impl Default for WindowLimits {
    fn default() -> Self {
        Self {
            max_hours: DEFAULT_MAX_HOURS,
        }
    }
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

    /// Parses `--from` and `--to` and checks them against `limits`: each
    /// end between [`EARLIEST`] and a day after now, and the window no
    /// longer than `limits.max_hours`.
    pub fn parse(from: &str, to: &str, limits: WindowLimits) -> Result<Self, TimeError> {
        // Microseconds: the precision of the captures' times and metadata.
        let now = Utc::now().trunc_subsecs(6);
        Self::parse_at(from, to, limits, now)
    }

    fn parse_at(
        from: &str,
        to: &str,
        limits: WindowLimits,
        now: DateTime<Utc>,
    ) -> Result<Self, TimeError> {
        let from = within_bounds("--from", parse_time(from, now)?, now)?;
        let to = within_bounds("--to", parse_time(to, now)?, now)?;
        let window = Self::new(from, to)?;
        let length = to - from;
        if length > TimeDelta::hours(limits.max_hours.into()) {
            return Err(TimeError::TooLong {
                from: rfc3339(from),
                to: rfc3339(to),
                // Rounded up: "745 hours" for 744 h and a minute.
                hours: (length + TimeDelta::seconds(3599)).num_hours(),
                max_hours: limits.max_hours,
            });
        }
        Ok(window)
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

/// `t`, if a window may start or end there.
fn within_bounds(
    flag: &'static str,
    t: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, TimeError> {
    if t < EARLIEST {
        return Err(TimeError::TooEarly {
            flag,
            value: rfc3339(t),
            earliest: rfc3339(EARLIEST),
        });
    }
    if t > now + AFTER_NOW {
        return Err(TimeError::TooLate {
            flag,
            value: rfc3339(t),
            now: rfc3339(now),
        });
    }
    Ok(t)
}

pub(crate) fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
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
        let e = Window::parse("now", "-1h", WindowLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("the window is empty"), "{e}");
    }

    fn refusal(from: &str, to: &str, max_hours: u32) -> String {
        let now = at("2026-11-27T14:03:00Z");
        Window::parse_at(from, to, WindowLimits { max_hours }, now)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_start_before_2000_is_refused_naming_the_flag_the_value_and_the_limit() {
        let e = refusal("0001-01-01T00:00:00Z", "now", 744);
        assert_eq!(
            e,
            "--from 0001-01-01T00:00:00Z is before 2000-01-01T00:00:00Z: no capture is that old; give a later time (e.g. --from -2h)"
        );
        let e = refusal("1999-12-31T23:59:59Z", "1999-12-31T23:59:59.5Z", 744);
        assert!(
            e.starts_with("--from 1999-12-31T23:59:59Z is before 2000"),
            "{e}"
        );
    }

    #[test]
    fn an_end_more_than_a_day_after_now_is_refused_naming_the_flag() {
        let e = refusal("-1h", "2026-11-28T14:03:01Z", 744);
        assert_eq!(
            e,
            "--to 2026-11-28T14:03:01Z is more than a day after now (2026-11-27T14:03:00Z); give an earlier time (e.g. --to now)"
        );
        assert!(
            refusal("2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z", 744).starts_with("--from 2030")
        );
    }

    #[test]
    fn a_window_longer_than_max_window_hours_is_refused_naming_the_flag_and_limit() {
        let e = refusal("-32d", "now", 744);
        assert_eq!(
            e,
            "the window --from 2026-10-26T14:03:00Z --to 2026-11-27T14:03:00Z is 768 hours long, more than --max-window-hours 744 (each hour is one list request per node): narrow the window, or raise --max-window-hours"
        );
        assert!(
            refusal("-2h", "now", 1).contains("is 2 hours long, more than --max-window-hours 1")
        );
        let now = at("2026-11-27T14:03:00Z");
        let limits = WindowLimits { max_hours: 1 };
        assert!(
            Window::parse_at("-1h", "now", limits, now).is_ok(),
            "exactly the limit is allowed"
        );
        assert!(Window::parse_at("-31d", "now", WindowLimits::default(), now).is_ok());
    }

    #[test]
    fn times_near_chronos_minimum_and_maximum_are_refused_without_panicking() {
        let min = rfc3339(DateTime::<Utc>::MIN_UTC);
        for (from, to) in [
            ("-96465000d", "now"),
            ("-106751991167d", "now"),
            ("-9223372036854775807s", "now"),
            ("0000-01-01T00:00:00Z", "now"),
            ("0001-01-01T00:00:00+23:59", "now"),
            ("-1h", "9999-12-31T23:59:59Z"),
            (min.as_str(), "now"),
        ] {
            let e = refusal(from, to, u32::MAX);
            assert!(
                e.contains("is before 2000")
                    || e.contains("is not a time")
                    || e.contains("after now"),
                "{from} {to}: {e}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever a person types, parsing refuses or gives a window whose
        /// hours can be listed, never a panic; and an accepted window is
        /// within its bounds.
        #[test]
        fn any_from_and_to_parse_or_are_refused_without_panicking(
            from in "(-[0-9]{1,20}[smhdx]?|[0-9+-]{1,7}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})|now|.{0,12})",
            to in "(-[0-9]{1,20}[smhd]?|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z|now)",
            max_hours in proptest::prelude::any::<u32>(),
            rotation_secs in 0i64..=86_400,
        ) {
            let now = at("2026-11-27T14:03:00Z");
            if let Ok(w) = Window::parse_at(&from, &to, WindowLimits { max_hours }, now) {
                proptest::prop_assert!(w.from >= EARLIEST && w.to <= now + AFTER_NOW);
                let hours = w.start_hours(TimeDelta::seconds(rotation_secs));
                // The window's hours, the rotation's (up to a day) and the ends.
                proptest::prop_assert!(hours.len() as i64 <= (w.to - w.from).num_hours() + 26);
            }
        }
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
