//! Business-hours calendar for reply-SLA time.
//!
//! The SLA clock runs only inside a tenant's business hours and pauses outside them and on
//! holidays, as in Zendesk / Freshdesk / Chatwoot SLA policies. A [`BusinessCalendar`] is a
//! weekly schedule of local wall-clock ranges (e.g. Mon 09:00-17:30) in an IANA time zone, plus
//! whole local days that are closed (holidays). [`BusinessCalendar::always_open`] (the default)
//! makes business time equal to elapsed time.
//!
//! # How time is measured
//!
//! Every local date `d` that is not a holiday contributes, for each weekly range `HH:MM-HH:MM` of
//! its weekday, the UTC interval `[resolve(d, start), resolve(d, end))`; "24:00" is 00:00 of the
//! next date. `resolve` maps a local wall-clock time to the first instant at which the local
//! clock reads that time or later: a time that does not exist (spring-forward gap) maps to the
//! first instant after the gap, an ambiguous time (fall-back) to the earlier instant. This mapping
//! is non-decreasing, so the intervals never overlap; business time in `[from, to)` is the length
//! of their intersection with `[from, to)`, computed in integer milliseconds. A range covering
//! 00:00-24:00 therefore counts 23 h on a spring-forward day and 25 h on a fall-back day.
//!
//! # Cost, and the DST note
//!
//! Queries are O(1) in the span length plus O(log n) in the number of holidays and DST days:
//! the first and last local days are intersected range by range; the days in between are summed
//! as "nominal" open time (whole weeks × weekly open time + a partial week, from a prefix table)
//! plus a precomputed per-day correction for *special* days: holidays (minus the nominal time)
//! and days on which the UTC offset changes (actual minus nominal time, computed exactly with the
//! real offsets when the calendar is built). Corrections are summed with a binary search over a
//! prefix-sum table, so the whole-weeks shortcut is exact across DST whether or not the
//! transition falls inside business hours. [`BusinessCalendar::add_business_seconds`] inverts the
//! same sum with a binary search over days.
//!
//! The offset changes of the zone are found once, when the calendar is built, by probing the
//! embedded tz database (`chrono-tz`) every 2 days from 1800 to 2110 and bisecting to the second
//! (chrono-tz has no transitions after 2099, so offsets are constant after that). Two offset
//! changes less than 2 days apart that cancel out would be missed (the closest such pair in the
//! tz data is 7 days apart); the days around an offset change are handled exactly. The scan
//! (about 1 ms) runs once per zone per process and is memoized; building a calendar after that
//! costs tens of µs. Instants are clamped to about ±95,000 years around 1970.
//!
//! Everything here is pure and deterministic: no clock reads, no I/O; the per-zone memo is the
//! only shared state and holds values that depend on the zone alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, Offset, TimeZone};
use chrono_tz::{GapInfo, Tz};
use serde::Deserialize;

/// Business hours as written in the config file (TOML), e.g.
///
/// ```toml
/// [sla.business_hours]
/// time_zone = "Europe/London"
/// holidays = ["2026-12-25", "2026-12-26"]
/// [sla.business_hours.weekly]
/// mon = ["09:00-17:30"]           # one or more "HH:MM-HH:MM" ranges per day, local time; "24:00" allowed as an end
/// tue = ["09:00-12:00", "13:00-17:30"]
/// sat = []                        # closed (a day that is absent is closed too)
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// IANA time zone name, e.g. "Europe/London" (case-sensitive).
    pub time_zone: String,
    /// Day name (mon..sun or monday..sunday, any case) to open ranges "HH:MM-HH:MM" in local time.
    pub weekly: BTreeMap<String, Vec<String>>,
    /// Whole local days (YYYY-MM-DD) on which the calendar is closed.
    pub holidays: Vec<String>,
}

/// The parsed, validated calendar. Always-open is the default (SLA clock = wall clock).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BusinessCalendar {
    /// `None` means always open.
    schedule: Option<Arc<Schedule>>,
}

/// Why a business-hours config was refused: `key` is the dotted config key under the given prefix
/// (e.g. `sla.business_hours.weekly.mon[1]`), `message` says what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct CalendarError {
    /// Dotted config key of the offending value.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

const MS_PER_SECOND: i64 = 1_000;
const SECONDS_PER_DAY: i64 = 86_400;
const MS_PER_DAY: i64 = SECONDS_PER_DAY * MS_PER_SECOND;
/// Instants are clamped to ±this many milliseconds around 1970 (about 95,000 years), well inside
/// chrono's date range, so day numbers fit an `i32` and sums fit an `i64`.
const MAX_ABS_MS: i64 = 3_000_000_000_000_000;
/// Days from 0001-01-01 (day 1 in chrono's count) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
/// Offset changes are searched from 1800-01-01T00:00Z ...
const TRANSITION_SCAN_FROM_S: i64 = -5_364_662_400;
/// ... to 2110-01-01T00:00Z (chrono-tz has none after 2099).
const TRANSITION_SCAN_TO_S: i64 = 4_417_977_600;
/// Probe step for the offset-change scan (the closest pair of changes that cancel out in the tz
/// data, e.g. Brazil's one-week DST of October 2000, is 167 h apart).
const TRANSITION_PROBE_STEP_S: i64 = 2 * SECONDS_PER_DAY;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_LONG_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A validated, non-trivial schedule (some hours closed).
#[derive(Debug, PartialEq)]
struct Schedule {
    tz: Tz,
    /// Open ranges per weekday (Monday = 0) in seconds of the local day, sorted, merged,
    /// `0 <= start < end <= 86_400`.
    ranges_s: [Vec<(i64, i64)>; 7],
    /// `week_prefix_ms[i]` = nominal open ms of weekdays `0..i` (mod 7), for `i` in `0..=14`.
    week_prefix_ms: [i64; 15],
    /// Nominal open ms in a whole week (> 0).
    week_ms: i64,
    /// Holidays as day numbers (days since 1970-01-01), sorted, unique.
    holidays: Vec<i32>,
    /// Days near a UTC-offset change, sorted, unique: only on these days can the offset differ
    /// within the day (or from its neighbours), so they are resolved with the real offsets.
    irregular_days: Arc<[i32]>,
    /// Days whose open time differs from nominal (holidays, DST days), sorted, unique.
    special_days: Vec<i32>,
    /// `special_prefix_ms[i]` = sum of (actual - nominal) open ms over `special_days[..i]`.
    special_prefix_ms: Vec<i64>,
}

impl BusinessCalendar {
    /// Open all the time: business time equals elapsed time.
    pub fn always_open() -> Self {
        Self { schedule: None }
    }

    /// Parses and validates; `key_prefix` is where the section sits in the config (e.g.
    /// "sla.business_hours" or "sla.tenants.acme.business_hours"), used in error keys.
    /// A schedule open 00:00-24:00 every day with no holidays is always open.
    pub fn from_config(
        config: &BusinessHoursConfig,
        key_prefix: &str,
    ) -> Result<Self, CalendarError> {
        let key = |rest: &str| {
            if key_prefix.is_empty() {
                rest.to_string()
            } else {
                format!("{key_prefix}.{rest}")
            }
        };
        let err = |key: String, message: String| CalendarError { key, message };

        let tz_name = config.time_zone.as_str();
        if tz_name.trim().is_empty() {
            return Err(err(key("time_zone"), "time zone is required".into()));
        }
        let tz: Tz = tz_name.parse().map_err(|_| {
            err(
                key("time_zone"),
                format!("unknown time zone {tz_name:?} (expected an IANA name such as \"Europe/London\")"),
            )
        })?;

        let mut ranges_s: [Vec<(i64, i64)>; 7] = Default::default();
        let mut seen_as: [Option<&str>; 7] = [None; 7];
        for (day_name, ranges) in &config.weekly {
            let day_key = key(&format!("weekly.{day_name}"));
            let Some(weekday) = parse_day_name(day_name) else {
                return Err(err(
                    day_key,
                    format!("unknown day name {day_name:?} (expected mon..sun or monday..sunday)"),
                ));
            };
            if let Some(other) = seen_as[weekday] {
                return Err(err(day_key, format!("day given twice (also as {other:?})")));
            }
            seen_as[weekday] = Some(day_name);
            // (start, end, index) for the overlap check.
            let mut parsed: Vec<(i64, i64, usize)> = Vec::with_capacity(ranges.len());
            for (index, text) in ranges.iter().enumerate() {
                let range_key = format!("{day_key}[{index}]");
                let (start_s, end_s) = parse_range(text).ok_or_else(|| {
                    err(
                        range_key.clone(),
                        format!("malformed range {text:?} (expected \"HH:MM-HH:MM\", end may be \"24:00\")"),
                    )
                })?;
                if end_s <= start_s {
                    return Err(err(
                        range_key,
                        format!(
                            "end {} is not after start {}",
                            fmt_hm(end_s),
                            fmt_hm(start_s)
                        ),
                    ));
                }
                parsed.push((start_s, end_s, index));
            }
            parsed.sort_unstable();
            for pair in parsed.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                if b.0 < a.1 {
                    let (first, second) = if a.2 < b.2 { (a, b) } else { (b, a) };
                    return Err(err(
                        format!("{day_key}[{}]", second.2),
                        format!(
                            "range {}-{} overlaps {day_name}[{}] ({}-{})",
                            fmt_hm(second.0),
                            fmt_hm(second.1),
                            first.2,
                            fmt_hm(first.0),
                            fmt_hm(first.1)
                        ),
                    ));
                }
            }
            // Merge touching ranges ("09:00-12:00", "12:00-13:00"): same open time, less work.
            let day = &mut ranges_s[weekday];
            for (start_s, end_s, _) in parsed {
                match day.last_mut() {
                    Some(last) if last.1 == start_s => last.1 = end_s,
                    _ => day.push((start_s, end_s)),
                }
            }
        }

        let nominal_ms: [i64; 7] = std::array::from_fn(|w| {
            ranges_s[w]
                .iter()
                .map(|(s, e)| (e - s) * MS_PER_SECOND)
                .sum()
        });
        let week_ms: i64 = nominal_ms.iter().sum();
        if week_ms == 0 {
            return Err(err(key("weekly"), "no open hours in the week".into()));
        }

        let mut holidays: Vec<(i32, usize)> = Vec::with_capacity(config.holidays.len());
        for (index, text) in config.holidays.iter().enumerate() {
            let day = parse_date(text).ok_or_else(|| {
                err(
                    key(&format!("holidays[{index}]")),
                    format!("malformed date {text:?} (expected YYYY-MM-DD)"),
                )
            })?;
            holidays.push((day, index));
        }
        holidays.sort_unstable();
        for pair in holidays.windows(2) {
            if pair[0].0 == pair[1].0 {
                let (first, second) = (pair[0].1.min(pair[1].1), pair[0].1.max(pair[1].1));
                return Err(err(
                    key(&format!("holidays[{second}]")),
                    format!(
                        "duplicate holiday {:?} (same as holidays[{first}])",
                        config.holidays[second]
                    ),
                ));
            }
        }
        let holidays: Vec<i32> = holidays.into_iter().map(|(day, _)| day).collect();

        if holidays.is_empty() && ranges_s.iter().all(|day| day == &[(0, SECONDS_PER_DAY)]) {
            return Ok(Self::always_open());
        }

        let mut week_prefix_ms = [0i64; 15];
        for i in 0..14 {
            week_prefix_ms[i + 1] = week_prefix_ms[i] + nominal_ms[i % 7];
        }
        let mut schedule = Schedule {
            tz,
            ranges_s,
            week_prefix_ms,
            week_ms,
            holidays,
            irregular_days: cached_irregular_days(tz),
            special_days: Vec::new(),
            special_prefix_ms: Vec::new(),
        };

        // Corrections: holidays lose their nominal time; other irregular days get actual - nominal.
        let mut deltas: Vec<(i32, i64)> = Vec::new();
        for &day in &schedule.holidays {
            let nominal = nominal_ms[weekday_of(day)];
            if nominal != 0 {
                deltas.push((day, -nominal));
            }
        }
        for &day in schedule.irregular_days.iter() {
            if schedule.is_holiday(day) {
                continue;
            }
            let actual: i64 = schedule
                .day_intervals_ms(day, None)
                .map(|(s, e)| e - s)
                .sum();
            let delta = actual - nominal_ms[weekday_of(day)];
            if delta != 0 {
                deltas.push((day, delta));
            }
        }
        deltas.sort_unstable();
        schedule.special_prefix_ms.push(0);
        let mut acc = 0i64;
        for (day, delta) in deltas {
            acc += delta;
            schedule.special_days.push(day);
            schedule.special_prefix_ms.push(acc);
        }
        Ok(Self {
            schedule: Some(Arc::new(schedule)),
        })
    }

    /// Whether this calendar is always open.
    pub fn is_always_open(&self) -> bool {
        self.schedule.is_none()
    }

    /// Business seconds in [from_ms, to_ms) (Unix milliseconds, UTC); 0 when to_ms <= from_ms.
    pub fn business_seconds_between(&self, from_ms: i64, to_ms: i64) -> f64 {
        if to_ms <= from_ms {
            return 0.0;
        }
        match &self.schedule {
            None => (i128::from(to_ms) - i128::from(from_ms)) as f64 / 1_000.0,
            Some(schedule) => {
                schedule.business_ms_between(clamp_ms(from_ms), clamp_ms(to_ms)) as f64 / 1_000.0
            }
        }
    }

    /// The instant at which `business_seconds` of business time have passed since `from_ms`
    /// (the SLA due time); None when the calendar has no open hours at all.
    ///
    /// Rounds to whole milliseconds. Returns `from_ms` when `business_seconds <= 0`, and None
    /// as well when `business_seconds` is NaN or the due time is not representable (beyond
    /// about ±95,000 years, or the `i64` range for an always-open calendar).
    pub fn add_business_seconds(&self, from_ms: i64, business_seconds: f64) -> Option<i64> {
        if business_seconds.is_nan() {
            return None;
        }
        // `as` saturates; a saturated target is simply not reached and yields None.
        let target_ms = (business_seconds * 1_000.0).round() as i64;
        if target_ms <= 0 {
            return Some(from_ms);
        }
        match &self.schedule {
            None => from_ms.checked_add(target_ms),
            Some(schedule) => schedule.add_business_ms(clamp_ms(from_ms), target_ms),
        }
    }
}

impl Schedule {
    fn is_holiday(&self, day: i32) -> bool {
        self.holidays.binary_search(&day).is_ok()
    }

    fn is_irregular(&self, day: i32) -> bool {
        self.irregular_days.binary_search(&day).is_ok()
    }

    /// Open UTC intervals (ms) of local day `day`, in order. `offset_s` is the day's UTC offset
    /// when known to be constant over the day (regular days); otherwise every boundary is resolved
    /// with the real offsets.
    fn day_intervals_ms(
        &self,
        day: i32,
        offset_s: Option<i64>,
    ) -> impl Iterator<Item = (i64, i64)> + '_ {
        let ranges: &[(i64, i64)] = if self.is_holiday(day) {
            &[]
        } else {
            &self.ranges_s[weekday_of(day)]
        };
        let midnight_s = i64::from(day) * SECONDS_PER_DAY;
        let tz = self.tz;
        let to_utc_ms = move |local_s: i64| match offset_s {
            Some(offset) => (local_s - offset) * MS_PER_SECOND,
            None => resolve_local_s(tz, local_s) * MS_PER_SECOND,
        };
        ranges
            .iter()
            .map(move |&(s, e)| (to_utc_ms(midnight_s + s), to_utc_ms(midnight_s + e)))
    }

    /// The UTC offset (s) of a regular day; any instant of it gives the same answer.
    fn regular_day_offset_s(&self, day: i32) -> i64 {
        offset_at_s(
            self.tz,
            i64::from(day) * SECONDS_PER_DAY + SECONDS_PER_DAY / 2,
        )
    }

    /// Local days `first..=last` around instant `t_ms` whose intervals may contain it: the local
    /// date, widened by one day each way near an offset change. Also returns the offset when the
    /// day is regular.
    fn days_around(&self, t_ms: i64) -> (i32, i32, Option<i64>) {
        let offset_s = offset_at_s(self.tz, t_ms.div_euclid(MS_PER_SECOND));
        let day = day_of_local_ms(t_ms + offset_s * MS_PER_SECOND);
        if self.is_irregular(day) {
            (day - 1, day + 1, None)
        } else {
            (day, day, Some(offset_s))
        }
    }

    /// Intervals of the given day, with the known offset when `offset_s` is given and the day is
    /// regular.
    fn intervals_for(
        &self,
        day: i32,
        offset_s: Option<i64>,
    ) -> impl Iterator<Item = (i64, i64)> + '_ {
        let offset = match offset_s {
            Some(o) => Some(o),
            None if self.is_irregular(day) => None,
            None => Some(self.regular_day_offset_s(day)),
        };
        self.day_intervals_ms(day, offset)
    }

    /// Nominal open ms of days `first..=last` (0 when empty).
    fn nominal_ms(&self, first: i32, last: i32) -> i64 {
        if last < first {
            return 0;
        }
        let count = i64::from(last) - i64::from(first) + 1;
        let weekday = weekday_of(first);
        let rest = (count % 7) as usize;
        (count / 7) * self.week_ms + self.week_prefix_ms[weekday + rest]
            - self.week_prefix_ms[weekday]
    }

    /// Actual open ms of whole days `first..=last` (0 when empty).
    fn full_days_ms(&self, first: i32, last: i32) -> i64 {
        if last < first {
            return 0;
        }
        let lo = self.special_days.partition_point(|&d| d < first);
        let hi = self.special_days.partition_point(|&d| d <= last);
        self.nominal_ms(first, last) + self.special_prefix_ms[hi] - self.special_prefix_ms[lo]
    }

    fn overlap_ms(
        &self,
        first: i32,
        last: i32,
        offset_s: Option<i64>,
        from_ms: i64,
        to_ms: i64,
    ) -> i64 {
        let mut total = 0;
        for day in first..=last {
            let known = if first == last { offset_s } else { None };
            for (s, e) in self.intervals_for(day, known) {
                total += (e.min(to_ms) - s.max(from_ms)).max(0);
            }
        }
        total
    }

    fn business_ms_between(&self, from_ms: i64, to_ms: i64) -> i64 {
        if to_ms <= from_ms {
            return 0;
        }
        let (a_first, a_last, a_offset) = self.days_around(from_ms);
        let (b_first, b_last, b_offset) = self.days_around(to_ms);
        if b_first <= a_last + 1 {
            // Short span: every day it touches, one by one (at most a handful).
            let offset = if a_offset == b_offset { a_offset } else { None };
            return self.overlap_ms(a_first, b_last.max(a_last), offset, from_ms, to_ms);
        }
        self.overlap_ms(a_first, a_last, a_offset, from_ms, to_ms)
            + self.full_days_ms(a_last + 1, b_first - 1)
            + self.overlap_ms(b_first, b_last, b_offset, from_ms, to_ms)
    }

    /// Walks the intervals of `first..=last` from `from_ms`: `Ok(instant)` when `remaining_ms`
    /// runs out inside them, else `Err(what is still remaining)`.
    fn walk_ms(
        &self,
        first: i32,
        last: i32,
        offset_s: Option<i64>,
        from_ms: i64,
        mut remaining_ms: i64,
    ) -> Result<i64, i64> {
        for day in first..=last {
            let known = if first == last { offset_s } else { None };
            for (s, e) in self.intervals_for(day, known) {
                let start = s.max(from_ms);
                let available = e - start;
                if available <= 0 {
                    continue;
                }
                if remaining_ms <= available {
                    return Ok(start + remaining_ms);
                }
                remaining_ms -= available;
            }
        }
        Err(remaining_ms)
    }

    fn add_business_ms(&self, from_ms: i64, target_ms: i64) -> Option<i64> {
        let (first, last, offset) = self.days_around(from_ms);
        let remaining_ms = match self.walk_ms(first, last, offset, from_ms, target_ms) {
            Ok(due_ms) => return Some(due_ms),
            Err(remaining_ms) => remaining_ms,
        };
        // Smallest day `due_day` >= start with full_days_ms(start, due_day) >= remaining_ms.
        let start = last + 1;
        let max_day = day_of_local_ms(MAX_ABS_MS);
        if start > max_day {
            return None;
        }
        // Nominal guess (exact when no special day is in the way), then gallop and bisect.
        let guess = self
            .nominal_due_day(start, remaining_ms)
            .min(i64::from(max_day));
        let mut hi = i32::try_from(guess).ok()?;
        let mut lo = start - 1; // full_days_ms(start, lo) == 0 < remaining_ms
        if self.full_days_ms(start, hi) >= remaining_ms {
            // DST can make a day longer than nominal: the answer may precede the guess.
        } else {
            let mut step = i64::from(hi - start) + 7;
            loop {
                lo = hi;
                if hi == max_day {
                    return None;
                }
                hi = i32::try_from((i64::from(hi) + step).min(i64::from(max_day))).ok()?;
                if self.full_days_ms(start, hi) >= remaining_ms {
                    break;
                }
                step = step.saturating_mul(2);
            }
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.full_days_ms(start, mid) >= remaining_ms {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let left_ms = remaining_ms - self.full_days_ms(start, hi - 1);
        // Day `hi` lies wholly after `from_ms`, so walking it from its start is exact.
        self.walk_ms(hi, hi, None, i64::MIN, left_ms).ok()
    }

    /// Smallest day `d >= start` with `nominal_ms(start, d) >= remaining_ms` (`remaining_ms > 0`).
    fn nominal_due_day(&self, start: i32, remaining_ms: i64) -> i64 {
        let weeks = (remaining_ms - 1) / self.week_ms;
        let rest = remaining_ms - weeks * self.week_ms; // in 1..=week_ms
        let weekday = weekday_of(start);
        let base = self.week_prefix_ms[weekday];
        let mut extra = 0;
        while extra < 6 && self.week_prefix_ms[weekday + extra + 1] - base < rest {
            extra += 1;
        }
        i64::from(start) + weeks.saturating_mul(7) + extra as i64
    }
}

/// [`irregular_days`] of `tz`, computed once per zone per process (about 1 ms) and shared.
fn cached_irregular_days(tz: Tz) -> Arc<[i32]> {
    static CACHE: OnceLock<Mutex<HashMap<Tz, Arc<[i32]>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(days) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&tz)
    {
        return Arc::clone(days);
    }
    // Computed outside the lock; a racing thread computes the same value.
    let days: Arc<[i32]> = irregular_days(tz).into();
    let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(map.entry(tz).or_insert(days))
}

/// Days (since 1970-01-01) near an offset change of `tz`: for each change, the local dates of the
/// instant before and after it, widened by a day each way.
fn irregular_days(tz: Tz) -> Vec<i32> {
    let mut days = Vec::new();
    let mut t = TRANSITION_SCAN_FROM_S;
    let mut offset = offset_at_s(tz, t);
    while t < TRANSITION_SCAN_TO_S {
        let next = t + TRANSITION_PROBE_STEP_S;
        let next_offset = offset_at_s(tz, next);
        if next_offset == offset {
            t = next;
            continue;
        }
        // Bisect to the first second with a different offset.
        let (mut lo, mut hi) = (t, next);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if offset_at_s(tz, mid) == offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let after = offset_at_s(tz, hi);
        let d1 = day_of_local_ms((hi + offset) * MS_PER_SECOND);
        let d2 = day_of_local_ms((hi + after) * MS_PER_SECOND);
        days.extend((d1.min(d2) - 1)..=(d1.max(d2) + 1));
        t = hi;
        offset = after;
    }
    days.sort_unstable();
    days.dedup();
    days
}

/// UTC offset (seconds, local minus UTC) of `tz` at Unix second `t_s`.
fn offset_at_s(tz: Tz, t_s: i64) -> i64 {
    match DateTime::from_timestamp(t_s, 0) {
        Some(utc) => i64::from(
            tz.offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc(),
        ),
        // Unreachable for clamped instants; UTC is a harmless answer.
        None => 0,
    }
}

/// The first Unix second at which the local clock of `tz` reads `local_s` (seconds since
/// 1970-01-01T00:00 local) or later: a nonexistent time maps to the first instant after the gap,
/// an ambiguous one to the earlier instant.
fn resolve_local_s(tz: Tz, local_s: i64) -> i64 {
    let Some(local) = DateTime::from_timestamp(local_s, 0).map(|d| d.naive_utc()) else {
        return local_s;
    };
    match tz.from_local_datetime(&local) {
        LocalResult::Single(dt) => dt.timestamp(),
        LocalResult::Ambiguous(a, b) => a.timestamp().min(b.timestamp()),
        LocalResult::None => match GapInfo::new(&local, &tz).and_then(|gap| gap.end) {
            Some(end) => end.timestamp(),
            None => first_instant_at_or_after(tz, local_s),
        },
    }
}

/// Fallback for [`resolve_local_s`]: bisects for the first second whose local time is >= `local`
/// (offsets are within ±26 h, so the answer lies within ±30 h of `local_s`).
fn first_instant_at_or_after(tz: Tz, local_s: i64) -> i64 {
    let reaches = |t_s: i64| t_s + offset_at_s(tz, t_s) >= local_s;
    let (mut lo, mut hi) = (local_s - 30 * 3_600, local_s + 30 * 3_600);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reaches(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

fn clamp_ms(t_ms: i64) -> i64 {
    t_ms.clamp(-MAX_ABS_MS, MAX_ABS_MS)
}

/// Day number (days since 1970-01-01) of a local-clock millisecond count. The clamp keeps it in
/// `i32` (only reachable with unclamped input, which callers never pass).
fn day_of_local_ms(local_ms: i64) -> i32 {
    let day = local_ms.div_euclid(MS_PER_DAY);
    day.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Weekday of a day number, Monday = 0 (1970-01-01 was a Thursday).
fn weekday_of(day: i32) -> usize {
    (i64::from(day) + 3).rem_euclid(7) as usize
}

fn parse_day_name(name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| *d == lower)
        .or_else(|| DAY_LONG_NAMES.iter().position(|d| *d == lower))
}

/// "HH:MM-HH:MM" (surrounding spaces allowed) to seconds of the day; the end may be "24:00".
fn parse_range(text: &str) -> Option<(i64, i64)> {
    let (start, end) = text.split_once('-')?;
    let start_s = parse_hm(start.trim())?;
    let end_s = parse_hm(end.trim())?;
    (start_s < SECONDS_PER_DAY).then_some((start_s, end_s))
}

/// "H:MM" or "HH:MM", 00:00..=23:59 or 24:00, to seconds of the day.
fn parse_hm(text: &str) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(h) && h.len() <= 2 && digits(m) && m.len() == 2) {
        return None;
    }
    let hours: i64 = h.parse().ok()?;
    let minutes: i64 = m.parse().ok()?;
    let valid = (hours < 24 && minutes < 60) || (hours == 24 && minutes == 0);
    valid.then_some(hours * 3_600 + minutes * 60)
}

fn fmt_hm(seconds_of_day: i64) -> String {
    format!(
        "{:02}:{:02}",
        seconds_of_day / 3_600,
        seconds_of_day % 3_600 / 60
    )
}

/// Strict "YYYY-MM-DD" to a day number.
fn parse_date(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let year: i32 = text[0..4].parse().ok()?;
    let month: u32 = text[5..7].parse().ok()?;
    let day: u32 = text[8..10].parse().ok()?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    Some(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PREFIX: &str = "sla.business_hours";
    const HOUR_MS: i64 = 3_600_000;

    fn config(tz: &str, weekly: &[(&str, &[&str])], holidays: &[&str]) -> BusinessHoursConfig {
        BusinessHoursConfig {
            time_zone: tz.to_string(),
            weekly: weekly
                .iter()
                .map(|(day, ranges)| {
                    (
                        day.to_string(),
                        ranges.iter().map(|r| r.to_string()).collect(),
                    )
                })
                .collect(),
            holidays: holidays.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn calendar(tz: &str, weekly: &[(&str, &[&str])], holidays: &[&str]) -> BusinessCalendar {
        BusinessCalendar::from_config(&config(tz, weekly, holidays), PREFIX).unwrap()
    }

    fn refused(tz: &str, weekly: &[(&str, &[&str])], holidays: &[&str]) -> CalendarError {
        BusinessCalendar::from_config(&config(tz, weekly, holidays), PREFIX).unwrap_err()
    }

    /// Mon-Fri 09:00-17:00 in `tz`.
    fn office(tz: &str, holidays: &[&str]) -> BusinessCalendar {
        let day: &[&str] = &["09:00-17:00"];
        calendar(
            tz,
            &[
                ("mon", day),
                ("tue", day),
                ("wed", day),
                ("thu", day),
                ("fri", day),
            ],
            holidays,
        )
    }

    /// Unix ms of a local wall-clock time in `tz` (must exist and be unambiguous).
    fn at(tz: &str, text: &str) -> i64 {
        let tz: Tz = tz.parse().unwrap();
        let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&local)
            .single()
            .unwrap()
            .timestamp_millis()
    }

    fn utc(text: &str) -> i64 {
        at("UTC", text)
    }

    use chrono::NaiveDateTime;

    // ---- refusals -------------------------------------------------------------------------

    #[test]
    fn refuses_unknown_time_zone() {
        let e = refused("Europe/Londn", &[("mon", &["09:00-17:00"])], &[]);
        assert_eq!(e.key, "sla.business_hours.time_zone");
        assert!(e.message.contains("unknown time zone"), "{e}");
        let e = refused("", &[("mon", &["09:00-17:00"])], &[]);
        assert_eq!(e.key, "sla.business_hours.time_zone");
    }

    #[test]
    fn refuses_unknown_day_name() {
        let e = refused(
            "UTC",
            &[("mon", &["09:00-17:00"]), ("mondy", &["09:00-17:00"])],
            &[],
        );
        assert_eq!(e.key, "sla.business_hours.weekly.mondy");
        assert!(e.message.contains("unknown day name"), "{e}");
    }

    #[test]
    fn accepts_long_and_mixed_case_day_names_but_not_twice() {
        let a = calendar(
            "UTC",
            &[("Monday", &["09:00-17:00"]), ("TUE", &["09:00-17:00"])],
            &[],
        );
        let b = calendar(
            "UTC",
            &[("mon", &["09:00-17:00"]), ("tuesday", &["09:00-17:00"])],
            &[],
        );
        assert_eq!(a, b);
        let e = refused(
            "UTC",
            &[("mon", &["09:00-17:00"]), ("monday", &["10:00-11:00"])],
            &[],
        );
        assert_eq!(e.key, "sla.business_hours.weekly.monday");
        assert!(e.message.contains("twice"), "{e}");
    }

    #[test]
    fn refuses_malformed_range() {
        for bad in [
            "9-17",
            "09:00",
            "09:00-",
            "09:00-17",
            "0900-1700",
            "25:00-26:00",
            "09:60-10:00",
            "24:00-24:00",
            "09:00-24:01",
            "09:00–17:00",
            "a9:00-17:00",
            "009:00-17:00",
        ] {
            let e = refused("UTC", &[("tue", &["08:00-08:30", bad])], &[]);
            assert_eq!(e.key, "sla.business_hours.weekly.tue[1]", "{bad}");
            assert!(e.message.contains("malformed range"), "{bad}: {e}");
        }
        // Accepted shapes.
        calendar("UTC", &[("tue", &["9:00-17:00", " 18:00 - 24:00 "])], &[]);
    }

    #[test]
    fn refuses_end_not_after_start() {
        let e = refused("UTC", &[("wed", &["17:00-09:00"])], &[]);
        assert_eq!(e.key, "sla.business_hours.weekly.wed[0]");
        assert!(e.message.contains("not after"), "{e}");
        let e = refused("UTC", &[("wed", &["09:00-09:00"])], &[]);
        assert_eq!(e.key, "sla.business_hours.weekly.wed[0]");
    }

    #[test]
    fn refuses_overlapping_ranges() {
        let e = refused("UTC", &[("thu", &["13:00-17:00", "09:00-13:30"])], &[]);
        assert_eq!(e.key, "sla.business_hours.weekly.thu[1]");
        assert!(e.message.contains("overlaps"), "{e}");
        // Touching ranges are fine.
        calendar("UTC", &[("thu", &["09:00-12:00", "12:00-13:00"])], &[]);
    }

    #[test]
    fn refuses_a_week_without_open_hours() {
        for weekly in [&[][..], &[("sat", &[][..])][..]] {
            let e = refused("UTC", weekly, &[]);
            assert_eq!(e.key, "sla.business_hours.weekly");
            assert_eq!(e.message, "no open hours in the week");
        }
    }

    #[test]
    fn refuses_malformed_holiday() {
        for bad in [
            "2026-02-30",
            "2026-2-01",
            "26-12-25",
            "2026/12/25",
            "2026-12-25 ",
            "christmas",
        ] {
            let e = refused("UTC", &[("mon", &["09:00-17:00"])], &["2026-12-24", bad]);
            assert_eq!(e.key, "sla.business_hours.holidays[1]", "{bad}");
            assert!(e.message.contains("malformed date"), "{bad}: {e}");
        }
    }

    #[test]
    fn refuses_duplicate_holiday() {
        let e = refused(
            "UTC",
            &[("mon", &["09:00-17:00"])],
            &["2026-12-25", "2026-12-26", "2026-12-25"],
        );
        assert_eq!(e.key, "sla.business_hours.holidays[2]");
        assert!(e.message.contains("duplicate"), "{e}");
    }

    #[test]
    fn error_keys_follow_the_prefix() {
        let cfg = config("UTC", &[("mon", &["x"])], &[]);
        let e = BusinessCalendar::from_config(&cfg, "sla.tenants.acme.business_hours").unwrap_err();
        assert_eq!(e.key, "sla.tenants.acme.business_hours.weekly.mon[0]");
        assert_eq!(e.to_string(), format!("{}: {}", e.key, e.message));
        let e = BusinessCalendar::from_config(&cfg, "").unwrap_err();
        assert_eq!(e.key, "weekly.mon[0]");
    }

    #[test]
    fn deserializes_from_toml() {
        #[derive(Deserialize)]
        struct Section {
            business_hours: BusinessHoursConfig,
        }
        #[derive(Deserialize)]
        struct File {
            sla: Section,
        }
        let text = r#"
            [sla.business_hours]
            time_zone = "Europe/London"
            holidays = ["2026-12-25", "2026-12-26"]
            [sla.business_hours.weekly]
            mon = ["09:00-17:30"]
            tue = ["09:00-12:00", "13:00-17:30"]
            sat = []
        "#;
        let file: File = toml::from_str(text).unwrap();
        let cfg = file.sla.business_hours;
        assert_eq!(cfg.weekly["tue"], vec!["09:00-12:00", "13:00-17:30"]);
        let cal = BusinessCalendar::from_config(&cfg, PREFIX).unwrap();
        assert!(!cal.is_always_open());
        let unknown = "time_zone = \"UTC\"\nweekly = {}\nholiday = []\n";
        assert!(toml::from_str::<BusinessHoursConfig>(unknown).is_err());
        let minimal: BusinessHoursConfig =
            toml::from_str("time_zone = \"UTC\"\nweekly = { mon = [\"09:00-10:00\"] }").unwrap();
        assert!(minimal.holidays.is_empty());
    }

    #[test]
    fn calendar_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<BusinessCalendar>();
        assert_send_sync::<CalendarError>();
    }

    // ---- behaviour ------------------------------------------------------------------------

    #[test]
    fn always_open_equals_elapsed() {
        let cal = BusinessCalendar::always_open();
        assert!(cal.is_always_open());
        assert_eq!(cal, BusinessCalendar::default());
        assert_eq!(cal.business_seconds_between(1_000, 4_601_500), 4_600.5);
        assert_eq!(cal.business_seconds_between(5_000, 1_000), 0.0);
        assert_eq!(cal.add_business_seconds(1_000, 4_600.5), Some(4_601_500));
        assert_eq!(cal.add_business_seconds(i64::MAX - 10, 1.0), None);
        assert_eq!(
            cal.business_seconds_between(i64::MIN, i64::MAX),
            2f64.powi(64) / 1_000.0
        );
        // A schedule open around the clock, without holidays, is always open.
        let all: &[&str] = &["00:00-24:00"];
        let days = DAY_NAMES.map(|d| (d, all));
        assert!(calendar("Europe/London", &days, &[]).is_always_open());
        assert!(!calendar("Europe/London", &days, &["2026-12-25"]).is_always_open());
    }

    #[test]
    fn monday_afternoon_to_tuesday_morning_is_two_hours() {
        let cal = office("Europe/London", &[]);
        let from = at("Europe/London", "2026-01-05 16:00"); // Monday
        let to = at("Europe/London", "2026-01-06 10:00");
        assert_eq!(cal.business_seconds_between(from, to), 7_200.0);
        assert_eq!(cal.add_business_seconds(from, 7_200.0), Some(to));
        // In summer time too (offset +1).
        let from = at("Europe/London", "2026-07-06 16:00");
        let to = at("Europe/London", "2026-07-07 10:00");
        assert_eq!(cal.business_seconds_between(from, to), 7_200.0);
    }

    #[test]
    fn weekend_in_between_is_skipped() {
        let cal = office("America/New_York", &[]);
        let from = at("America/New_York", "2026-01-09 16:00"); // Friday
        let to = at("America/New_York", "2026-01-12 10:00"); // Monday
        assert_eq!(cal.business_seconds_between(from, to), 7_200.0);
        assert_eq!(cal.add_business_seconds(from, 7_200.0), Some(to));
        // Due exactly at closing time stays on Friday.
        assert_eq!(
            cal.add_business_seconds(from, 3_600.0),
            Some(at("America/New_York", "2026-01-09 17:00"))
        );
        // Starting outside hours: the clock starts at the next opening.
        let sat = at("America/New_York", "2026-01-10 12:00");
        assert_eq!(
            cal.add_business_seconds(sat, 60.0),
            Some(at("America/New_York", "2026-01-12 09:01"))
        );
        assert_eq!(cal.add_business_seconds(sat, 0.0), Some(sat));
    }

    #[test]
    fn holiday_in_between_is_skipped() {
        let cal = office("Europe/London", &["2026-01-06"]);
        let from = at("Europe/London", "2026-01-05 16:00"); // Monday
        let to = at("Europe/London", "2026-01-07 10:00"); // Wednesday
        assert_eq!(cal.business_seconds_between(from, to), 7_200.0);
        assert_eq!(cal.add_business_seconds(from, 7_200.0), Some(to));
        // A holiday on a closed day changes nothing.
        let with_sunday = office("Europe/London", &["2026-01-04"]);
        let sun = at("Europe/London", "2026-01-04 12:00");
        assert_eq!(
            with_sunday.business_seconds_between(sun - 3 * 86_400_000, to),
            office("Europe/London", &[]).business_seconds_between(sun - 3 * 86_400_000, to)
        );
    }

    #[test]
    fn long_spans_count_whole_weeks() {
        let cal = office("UTC", &["2026-12-25"]);
        let from = utc("2026-01-01 00:00");
        let to = utc("2027-01-01 00:00");
        // 2026 has 261 weekdays; minus Christmas (a Friday).
        assert_eq!(
            cal.business_seconds_between(from, to),
            260.0 * 8.0 * 3_600.0
        );
        assert_eq!(
            cal.add_business_seconds(from, 260.0 * 8.0 * 3_600.0),
            Some(utc("2026-12-31 17:00"))
        );
        // Ten years, both ways.
        let to = utc("2036-01-01 00:00");
        let seconds = cal.business_seconds_between(from, to);
        assert_eq!(
            cal.add_business_seconds(from, seconds),
            Some(utc("2035-12-31 17:00"))
        );
    }

    /// Sunday open 00:00-24:00 (plus weekday hours so that the calendar is not always open).
    fn london_sundays(sunday: &[&str]) -> BusinessCalendar {
        calendar(
            "Europe/London",
            &[("mon", &["09:00-17:00"]), ("sun", sunday)],
            &[],
        )
    }

    #[test]
    fn dst_spring_forward_day_has_23_hours() {
        let cal = london_sundays(&["00:00-24:00"]);
        // 2026-03-29: 01:00 GMT -> 02:00 BST.
        let sat = at("Europe/London", "2026-03-28 12:00");
        let mon = at("Europe/London", "2026-03-30 08:00");
        assert_eq!(cal.business_seconds_between(sat, mon), 23.0 * 3_600.0);
        assert_eq!(
            cal.add_business_seconds(sat, 23.0 * 3_600.0),
            Some(at("Europe/London", "2026-03-30 00:00"))
        );
        // Within the day: from 00:30 GMT to 03:00 BST is 1.5 h of real time.
        let cal = london_sundays(&["00:30-03:00"]);
        assert_eq!(cal.business_seconds_between(sat, mon), 1.5 * 3_600.0);
        // A start in the gap maps to the first instant after it (01:00 UTC).
        let cal = london_sundays(&["01:30-03:00"]);
        assert_eq!(cal.business_seconds_between(sat, mon), 3_600.0);
        assert_eq!(
            cal.add_business_seconds(sat, 1.0),
            Some(utc("2026-03-29 01:00") + 1_000)
        );
        // Over months, the whole-weeks path sees the short day: Mar-Apr 2026 has 9 Sundays (one
        // of 23 h) and 9 Mondays.
        let cal = london_sundays(&["00:00-24:00"]);
        let from = utc("2026-03-01 00:00");
        let to = utc("2026-05-01 00:00");
        let expected = (9.0 * 24.0 - 1.0 + 9.0 * 8.0) * 3_600.0;
        assert_eq!(cal.business_seconds_between(from, to), expected);
    }

    #[test]
    fn dst_fall_back_day_has_25_hours() {
        let cal = london_sundays(&["00:00-24:00"]);
        // 2026-10-25: 02:00 BST -> 01:00 GMT.
        let sat = at("Europe/London", "2026-10-24 12:00");
        let mon = at("Europe/London", "2026-10-26 08:00");
        assert_eq!(cal.business_seconds_between(sat, mon), 25.0 * 3_600.0);
        assert_eq!(
            cal.add_business_seconds(sat, 25.0 * 3_600.0),
            Some(at("Europe/London", "2026-10-26 00:00"))
        );
        // Inside the repeated hour, the clock keeps running.
        let first_0130 = utc("2026-10-25 00:30");
        let second_0130 = utc("2026-10-25 01:30");
        assert_eq!(
            cal.business_seconds_between(first_0130, second_0130),
            3_600.0
        );
        // An ambiguous start maps to the earlier instant: 01:30 BST (00:30 UTC) to 03:00 GMT.
        let cal = london_sundays(&["01:30-03:00"]);
        assert_eq!(cal.business_seconds_between(sat, mon), 2.5 * 3_600.0);
        // Over months: Oct-Nov 2026 has 9 Sundays (one 25 h) and 9 Mondays.
        let cal = london_sundays(&["00:00-24:00"]);
        let from = at("Europe/London", "2026-10-01 00:00");
        let to = at("Europe/London", "2026-12-01 00:00");
        let expected = (9.0 * 24.0 + 1.0 + 9.0 * 8.0) * 3_600.0;
        assert_eq!(cal.business_seconds_between(from, to), expected);
        let due = cal.add_business_seconds(from, expected).unwrap();
        assert_eq!(due, at("Europe/London", "2026-11-30 17:00"));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let cal = office("Europe/London", &["2026-12-25"]);
        assert_eq!(cal.business_seconds_between(10, 10), 0.0);
        assert!(cal.business_seconds_between(i64::MIN, i64::MAX) > 0.0);
        assert_eq!(cal.add_business_seconds(0, f64::NAN), None);
        assert_eq!(cal.add_business_seconds(0, f64::INFINITY), None);
        assert_eq!(cal.add_business_seconds(0, -5.0), Some(0));
        assert!(cal.add_business_seconds(i64::MIN, 1e9).is_some());
        assert_eq!(cal.add_business_seconds(i64::MAX, 1.0), None);
        // Far future (no DST data after 2099) and far past.
        let from = utc("2150-06-01 00:00");
        assert_eq!(
            cal.business_seconds_between(from, from + 7 * 86_400_000),
            5.0 * 8.0 * 3_600.0
        );
        let from = utc("1700-06-01 00:00");
        assert!(cal.business_seconds_between(from, from + 7 * 86_400_000) > 0.0);
    }

    // ---- reference implementation and properties ------------------------------------------

    /// First instant (ms) at which the local clock reads `local` or later, the plain way:
    /// single -> it, ambiguous -> earlier, nonexistent -> the first existing minute after it.
    fn reference_resolve_ms(tz: Tz, local: NaiveDateTime) -> i64 {
        let mut probe = local;
        loop {
            match tz.from_local_datetime(&probe) {
                LocalResult::Single(dt) => return dt.timestamp_millis(),
                LocalResult::Ambiguous(a, b) => {
                    return a.timestamp_millis().min(b.timestamp_millis())
                }
                LocalResult::None => probe += chrono::Duration::minutes(1),
            }
        }
    }

    /// Day by day: every local date near the span, every range, intersected with the span.
    fn reference_between_ms(tz: Tz, cfg: &BusinessHoursConfig, from_ms: i64, to_ms: i64) -> i64 {
        if to_ms <= from_ms {
            return 0;
        }
        let local_date = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .unwrap()
                .with_timezone(&tz)
                .date_naive()
        };
        let holidays: Vec<NaiveDate> = cfg
            .holidays
            .iter()
            .map(|h| NaiveDate::parse_from_str(h, "%Y-%m-%d").unwrap())
            .collect();
        let mut total = 0;
        let mut date = local_date(from_ms) - chrono::Duration::days(2);
        let last = local_date(to_ms) + chrono::Duration::days(2);
        while date <= last {
            if !holidays.contains(&date) {
                let weekday = date.weekday().num_days_from_monday() as usize;
                for (name, ranges) in &cfg.weekly {
                    if parse_day_name(name) != Some(weekday) {
                        continue;
                    }
                    for range in ranges {
                        let (s, e) = parse_range(range).unwrap();
                        let midnight = date.and_hms_opt(0, 0, 0).unwrap();
                        let start =
                            reference_resolve_ms(tz, midnight + chrono::Duration::seconds(s));
                        let end = reference_resolve_ms(tz, midnight + chrono::Duration::seconds(e));
                        total += (end.min(to_ms) - start.max(from_ms)).max(0);
                    }
                }
            }
            date = date.succ_opt().unwrap();
        }
        total
    }

    const ZONES: [&str; 14] = [
        "America/Goose_Bay",
        "Pacific/Apia",
        "America/Havana",
        "Antarctica/Troll",
        "Europe/London",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Asia/Kolkata",
        "UTC",
        "Pacific/Chatham",
        "America/St_Johns",
        "Africa/Casablanca",
        "Asia/Tehran",
    ];

    /// 1995-01-01T00:00Z.
    const BASE_MS: i64 = 788_918_400_000;
    const FORTY_YEARS_MS: i64 = 40 * 365 * 86_400_000;
    const SIXTY_DAYS_MS: i64 = 60 * 86_400_000;

    /// A random calendar: a zone, 0-3 ranges a day on a 15-minute grid, holidays near `BASE_MS +
    /// anchor_ms`.
    fn arb_config() -> impl Strategy<Value = (BusinessHoursConfig, i64)> {
        let day = prop::collection::vec(0u32..=96, 0..=6);
        (
            prop::sample::select(&ZONES[..]),
            prop::collection::vec(day, 7),
            0..FORTY_YEARS_MS,
            prop::collection::vec(0i64..70, 0..8),
        )
            .prop_map(|(tz, days, anchor_ms, holiday_offsets)| {
                let hm = |q: u32| format!("{:02}:{:02}", q / 4, q % 4 * 15);
                let mut weekly = BTreeMap::new();
                for (w, mut points) in days.into_iter().enumerate() {
                    points.sort_unstable();
                    points.dedup();
                    let ranges = points
                        .chunks_exact(2)
                        .map(|p| format!("{}-{}", hm(p[0]), hm(p[1])))
                        .collect();
                    weekly.insert(DAY_NAMES[w].to_string(), ranges);
                }
                if weekly.values().all(|r: &Vec<String>| r.is_empty()) {
                    weekly.insert("wed".into(), vec!["09:00-17:00".into()]);
                }
                let anchor_day = NaiveDate::from_ymd_opt(1995, 1, 1).unwrap()
                    + chrono::Duration::milliseconds(anchor_ms);
                let mut holidays: Vec<String> = holiday_offsets
                    .into_iter()
                    .map(|o| {
                        (anchor_day + chrono::Duration::days(o - 3))
                            .format("%Y-%m-%d")
                            .to_string()
                    })
                    .collect();
                holidays.sort();
                holidays.dedup();
                let cfg = BusinessHoursConfig {
                    time_zone: tz.to_string(),
                    weekly,
                    holidays,
                };
                (cfg, BASE_MS + anchor_ms)
            })
    }

    fn build(cfg: &BusinessHoursConfig) -> BusinessCalendar {
        BusinessCalendar::from_config(cfg, PREFIX).unwrap()
    }

    proptest! {
        /// The fast path equals the day-by-day reference over spans up to 60 days.
        #[test]
        fn matches_day_by_day_reference((cfg, from_ms) in arb_config(), span_ms in 0..SIXTY_DAYS_MS) {
            let cal = build(&cfg);
            let tz: Tz = cfg.time_zone.parse().unwrap();
            let expected = reference_between_ms(tz, &cfg, from_ms, from_ms + span_ms) as f64 / 1_000.0;
            prop_assert_eq!(cal.business_seconds_between(from_ms, from_ms + span_ms), expected);
        }

        /// business(a, c) = business(a, b) + business(b, c).
        #[test]
        fn is_additive((cfg, a) in arb_config(), ab in 0..SIXTY_DAYS_MS * 6, bc in 0..SIXTY_DAYS_MS * 6) {
            let cal = build(&cfg);
            let (b, c) = (a + ab, a + ab + bc);
            let whole = cal.business_seconds_between(a, c);
            let parts = cal.business_seconds_between(a, b) + cal.business_seconds_between(b, c);
            prop_assert!((whole - parts).abs() <= 1e-6, "{} != {}", whole, parts);
        }

        /// Moving the end later never decreases business time, nor by more than elapsed time.
        #[test]
        fn is_monotone_in_to((cfg, from_ms) in arb_config(), span_ms in -HOUR_MS..SIXTY_DAYS_MS * 12, extra_ms in 0..SIXTY_DAYS_MS) {
            let cal = build(&cfg);
            let to_ms = from_ms + span_ms;
            let early = cal.business_seconds_between(from_ms, to_ms);
            let late = cal.business_seconds_between(from_ms, to_ms + extra_ms);
            prop_assert!(early >= 0.0);
            prop_assert!(late >= early);
            prop_assert!(late - early <= extra_ms as f64 / 1_000.0 + 1e-6);
        }

        /// add_business_seconds inverts business_seconds_between, and the due instant is open
        /// (the millisecond before it is business time).
        #[test]
        fn add_inverts_between((cfg, from_ms) in arb_config(), seconds in 0.001f64..(400.0 * 86_400.0)) {
            let cal = build(&cfg);
            let due = cal.add_business_seconds(from_ms, seconds).unwrap();
            prop_assert!(due > from_ms);
            let measured = cal.business_seconds_between(from_ms, due);
            prop_assert!((measured - seconds).abs() <= 0.001, "{} vs {}", measured, seconds);
            prop_assert_eq!(cal.business_seconds_between(due - 1, due), 0.001);
        }
    }

    /// America/Goose_Bay fell back at 00:01 local (2006-10-29 03:01 UTC, -03 -> -04): the
    /// repeated hour crosses midnight, so instants with a Saturday local date belong to Sunday.
    #[test]
    fn fall_back_across_midnight_is_exact() {
        let cfg = config(
            "America/Goose_Bay",
            &[
                ("sat", &["20:00-23:30"]),
                ("sun", &["00:00-00:30", "12:00-24:00"]),
                ("mon", &["09:00-17:00"]),
            ],
            &[],
        );
        let cal = build(&cfg);
        let tz: Tz = cfg.time_zone.parse().unwrap();
        let transition = utc("2006-10-29 03:01");
        // Sunday 00:00-00:30 runs from 03:00 UTC until the clock reads 00:30 again at 04:30 UTC:
        // 03:30 UTC reads Saturday 23:30 but is inside it.
        assert_eq!(
            cal.business_seconds_between(utc("2006-10-29 03:30"), utc("2006-10-29 03:40")),
            600.0
        );
        assert_eq!(
            cal.business_seconds_between(utc("2006-10-29 02:30"), utc("2006-10-29 06:00")),
            5_400.0
        );
        for from_step in 0..60 {
            let from = transition - 3 * HOUR_MS + from_step * 7 * 60_000 + 11;
            for to_step in [0, 1, 5, 13, 40, 200, 500, 3_000] {
                let to = from + to_step * 9 * 60_000;
                let expected = reference_between_ms(tz, &cfg, from, to) as f64 / 1_000.0;
                assert_eq!(
                    cal.business_seconds_between(from, to),
                    expected,
                    "{from} {to}"
                );
                if expected > 0.0 {
                    let due = cal.add_business_seconds(from, expected).unwrap();
                    assert_eq!(cal.business_seconds_between(from, due), expected);
                    assert_eq!(cal.business_seconds_between(due - 1, due), 0.001);
                }
            }
        }
    }

    /// Brazil's one-week DST (America/Noronha, 2000-10-08 to 2000-10-15) is seen.
    #[test]
    fn one_week_dst_is_exact() {
        let all: &[&str] = &["00:00-24:00"];
        let cfg = config(
            "America/Noronha",
            &[("sun", all), ("mon", all), ("wed", &["09:00-17:00"])],
            &[],
        );
        let cal = build(&cfg);
        let tz: Tz = cfg.time_zone.parse().unwrap();
        let from = utc("2000-09-01 00:00");
        let to = utc("2000-12-01 00:00");
        let expected = reference_between_ms(tz, &cfg, from, to) as f64 / 1_000.0;
        assert_eq!(cal.business_seconds_between(from, to), expected);
        // Sun 08 is 23 h, Sun 15 is 25 h: a two-day window holds 47 h.
        let sat = utc("2000-10-07 12:00");
        assert_eq!(
            cal.business_seconds_between(sat, sat + 3 * 86_400_000),
            47.0 * 3_600.0
        );
    }

    #[test]
    fn matches_reference_over_years() {
        let cfg = config(
            "Europe/London",
            &[
                ("sun", &["00:00-03:00", "22:00-24:00"]),
                ("mon", &["01:00-02:30"]),
                ("sat", &["01:30-01:45"]),
            ],
            &["2026-03-29", "2027-10-31", "2028-01-01"],
        );
        let cal = build(&cfg);
        let tz: Tz = cfg.time_zone.parse().unwrap();
        let from = at("Europe/London", "2025-02-03 01:17") + 123;
        for years in [1, 2, 4] {
            let to = from + years * 365 * 86_400_000 + 7_777;
            let expected = reference_between_ms(tz, &cfg, from, to) as f64 / 1_000.0;
            assert_eq!(cal.business_seconds_between(from, to), expected);
            let due = cal.add_business_seconds(from, expected).unwrap();
            assert_eq!(cal.business_seconds_between(from, due), expected);
        }
    }
}
