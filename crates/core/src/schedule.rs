//! When a device's periodic sync is due (R2): a 5-field cron pattern, or a time of day, read as
//! wall-clock time in the device's IANA zone. `24:00` is the midnight that ends the day.
//!
//! Daylight-saving changes follow cron's rule for fixed times: a time skipped by a spring-forward
//! jump runs once, at the shifted instant; a time that occurs twice on a fall-back day runs once,
//! at the first. Instants missed while a device was away collapse into one sync.

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("bad schedule {pattern:?}: {reason} (five fields: minute hour day-of-month month day-of-week)")]
    Pattern { pattern: String, reason: String },
    #[error("bad time of day {0:?}: expected HH:MM from 00:00 to 24:00")]
    TimeOfDay(String),
    #[error("unknown time zone {0:?}: expected an IANA name such as Europe/Paris")]
    Zone(String),
}

/// A periodic sync schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    /// As the user gave it: a cron pattern, or `daily HH:MM`.
    spec: String,
    zone: TimeZone,
    zone_name: String,
}

impl Schedule {
    /// A 5-field cron pattern (`"0 0 * * *"`) in `zone`.
    pub fn cron(pattern: &str, zone: &str) -> Result<Self, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(pattern.trim())
            .map_err(|error| ScheduleError::Pattern { pattern: pattern.to_owned(), reason: error.to_string() })?;
        Self::new(cron, pattern.trim().to_owned(), zone)
    }

    /// Every day at `HH:MM` in `zone`; `24:00` is midnight at the end of the day.
    pub fn daily(time: &str, zone: &str) -> Result<Self, ScheduleError> {
        let bad = || ScheduleError::TimeOfDay(time.to_owned());
        let (hour, minute) = time.trim().split_once(':').ok_or_else(bad)?;
        let two_digits = |field: &str| (field.len() == 2).then(|| field.parse::<u8>().ok()).flatten();
        let (hour, minute) = (two_digits(hour).ok_or_else(bad)?, two_digits(minute).ok_or_else(bad)?);
        let (hour, minute) = match (hour, minute) {
            (24, 0) => (0, 0),
            (0..=23, 0..=59) => (hour, minute),
            _ => return Err(bad()),
        };
        let pattern = format!("{minute} {hour} * * *");
        let cron = CronParser::builder().seconds(Seconds::Disallowed).build().parse(&pattern).map_err(|_| bad())?;
        Self::new(cron, format!("daily {}", time.trim()), zone)
    }

    fn new(cron: Cron, spec: String, zone: &str) -> Result<Self, ScheduleError> {
        let zone_name = zone.trim().to_owned();
        let zone = TimeZone::get(&zone_name).map_err(|_| ScheduleError::Zone(zone_name.clone()))?;
        Ok(Self { cron, spec, zone, zone_name })
    }

    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// The first scheduled instant strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let from = after.to_zoned(self.zone.clone());
        self.cron.find_next_occurrence(&from, false).ok().map(|next: Zoned| next.timestamp())
    }

    /// The scheduled instant a sync at `now` stands for, when one fell after `since` (the last
    /// instant served, or when the schedule was set): the latest of them, once, however many
    /// were missed.
    pub fn due(&self, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let at = now.to_zoned(self.zone.clone());
        let latest = self.cron.find_previous_occurrence(&at, true).ok()?.timestamp();
        (latest > since).then_some(latest)
    }

    /// The shortest time between two consecutive instants in the year after `from`: what an
    /// operator's bound on the schedule interval is checked against.
    pub fn shortest_interval(&self, from: Timestamp) -> Option<SignedDuration> {
        let horizon = from.checked_add(SignedDuration::from_hours(24 * 366)).ok()?;
        let mut previous = self.next_after(from)?;
        let mut shortest: Option<SignedDuration> = None;
        // Enough instants to meet every gap a pattern repeats within a year, few enough to be quick.
        for _ in 0..2_000 {
            let Some(next) = self.next_after(previous).filter(|next| *next <= horizon) else { break };
            let gap = next.duration_since(previous);
            shortest = Some(shortest.map_or(gap, |known| known.min(gap)));
            previous = next;
        }
        shortest
    }
}

/// Where a device's periodic sync stands, as the server keeps it between instants and restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The schedule it counts for, as [`Schedule`] displays it: another schedule starts afresh.
    pub schedule: String,
    /// The latest instant served, or when the schedule was first seen.
    pub fired_through: Timestamp,
    /// An instant fired and the device has not synced since: it is told as soon as it connects.
    pub owed: bool,
}

/// What a device's timer does at a given moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// Nothing is due.
    Wait,
    /// A schedule seen for the first time counts from now: instants before it were never asked for.
    Arm(Timer),
    /// An instant is due: the device is told to sync once, however many instants passed.
    Fire(Timer),
}

impl Schedule {
    /// What `timer` does at `now` under this schedule.
    ///
    /// Invariant: each scheduled instant fires at most once per device. `fired_through` only
    /// moves forward to an instant that fired, and the server stores it before telling anyone.
    pub fn tick(&self, timer: Option<&Timer>, now: Timestamp) -> Tick {
        let schedule = self.to_string();
        match timer.filter(|timer| timer.schedule == schedule) {
            None => Tick::Arm(Timer { schedule, fired_through: now, owed: timer.is_some_and(|timer| timer.owed) }),
            Some(timer) => match self.due(timer.fired_through, now) {
                Some(instant) => Tick::Fire(Timer { schedule, fired_through: instant, owed: true }),
                None => Tick::Wait,
            },
        }
    }

    /// When `timer` next fires under this schedule.
    pub fn wakes_at(&self, timer: &Timer) -> Option<Timestamp> {
        self.next_after(timer.fired_through)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.spec, self.zone_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(instant: &str) -> Timestamp {
        instant.parse().expect("an instant")
    }

    #[test]
    fn twenty_four_hundred_is_the_midnight_that_ends_the_day() {
        let pc = Schedule::daily("24:00", "Europe/Paris").expect("a schedule");
        assert_eq!(pc.next_after(at("2026-11-25T23:59:50+01:00")), Some(at("2026-11-26T00:00:00+01:00")));
        assert_eq!(pc.next_after(at("2026-11-26T00:00:00+01:00")), Some(at("2026-11-27T00:00:00+01:00")));
        assert_eq!(pc.to_string(), "daily 24:00 (Europe/Paris)");
    }

    #[test]
    fn the_zone_decides_the_instant() {
        let tokyo = Schedule::cron("0 0 * * *", "Asia/Tokyo").expect("a schedule");
        assert_eq!(tokyo.next_after(at("2026-11-25T12:00:00Z")), Some(at("2026-11-25T15:00:00Z")));
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_once_at_the_shifted_instant() {
        let schedule = Schedule::daily("02:30", "Europe/Paris").expect("a schedule");
        let mut instants = Vec::new();
        let mut cursor = at("2026-03-28T12:00:00+01:00");
        for _ in 0..3 {
            cursor = schedule.next_after(cursor).expect("a next instant");
            instants.push(cursor);
        }
        assert_eq!(
            instants,
            [at("2026-03-29T03:00:00+02:00"), at("2026-03-30T02:30:00+02:00"), at("2026-03-31T02:30:00+02:00")]
        );
    }

    #[test]
    fn a_time_that_occurs_twice_on_fall_back_runs_once_at_the_first() {
        let schedule = Schedule::daily("02:30", "Europe/Paris").expect("a schedule");
        let first = schedule.next_after(at("2026-10-24T12:00:00+02:00")).expect("an instant");
        assert_eq!(first, at("2026-10-25T02:30:00+02:00"));
        assert_eq!(schedule.next_after(first), Some(at("2026-10-26T02:30:00+01:00")));
    }

    #[test]
    fn instants_missed_while_away_collapse_into_one() {
        let pc = Schedule::daily("24:00", "Europe/Paris").expect("a schedule");
        let since = at("2026-11-20T00:00:00+01:00");
        let now = at("2026-11-25T09:00:00+01:00");
        assert_eq!(pc.due(since, now), Some(at("2026-11-25T00:00:00+01:00")));
        // Served: nothing more until the next midnight.
        assert_eq!(pc.due(at("2026-11-25T00:00:00+01:00"), now), None);
        assert_eq!(
            pc.due(at("2026-11-25T00:00:00+01:00"), at("2026-11-26T00:00:00+01:00")),
            Some(at("2026-11-26T00:00:00+01:00"))
        );
    }

    #[test]
    fn a_timer_fires_each_instant_once_and_collapses_missed_ones() {
        let pc = Schedule::daily("24:00", "Europe/Paris").expect("a schedule");
        let set_at = at("2026-11-25T20:00:00+01:00");
        let Tick::Arm(armed) = pc.tick(None, set_at) else { panic!("a new schedule arms") };
        assert_eq!(armed.fired_through, set_at);
        assert_eq!(pc.wakes_at(&armed), Some(at("2026-11-26T00:00:00+01:00")));
        assert_eq!(pc.tick(Some(&armed), at("2026-11-25T23:59:59+01:00")), Tick::Wait);
        let Tick::Fire(fired) = pc.tick(Some(&armed), at("2026-11-26T00:00:00+01:00")) else { panic!("24:00 fires") };
        assert!(fired.owed);
        assert_eq!(fired.fired_through, at("2026-11-26T00:00:00+01:00"));
        // Once fired, the same instant never fires again, whenever the server looks.
        assert_eq!(pc.tick(Some(&fired), at("2026-11-26T00:00:01+01:00")), Tick::Wait);
        assert_eq!(pc.tick(Some(&fired), at("2026-11-26T23:00:00+01:00")), Tick::Wait);
        // Three midnights missed (the server was down): one firing, for the latest.
        let Tick::Fire(late) = pc.tick(Some(&fired), at("2026-11-29T08:00:00+01:00")) else { panic!("fires once") };
        assert_eq!(late.fired_through, at("2026-11-29T00:00:00+01:00"));
        assert_eq!(pc.tick(Some(&late), at("2026-11-29T08:00:01+01:00")), Tick::Wait);
    }

    #[test]
    fn a_changed_schedule_counts_from_the_change_and_keeps_what_is_owed() {
        let old = Schedule::daily("03:00", "Europe/Paris").expect("a schedule");
        let new = Schedule::daily("01:00", "Europe/Paris").expect("a schedule");
        let timer = Timer { schedule: old.to_string(), fired_through: at("2026-11-25T03:00:00+01:00"), owed: true };
        // At 02:00 the new 01:00 schedule has already passed today: it was not asked for then.
        let now = at("2026-11-26T02:00:00+01:00");
        let Tick::Arm(armed) = new.tick(Some(&timer), now) else { panic!("a changed schedule arms") };
        assert_eq!((armed.fired_through, armed.owed), (now, true));
        assert_eq!(new.wakes_at(&armed), Some(at("2026-11-27T01:00:00+01:00")));
        // Another zone is another schedule.
        let tokyo = Schedule::daily("03:00", "Asia/Tokyo").expect("a schedule");
        assert!(matches!(tokyo.tick(Some(&timer), now), Tick::Arm(_)));
    }

    #[test]
    fn the_shortest_interval_is_what_bounds_are_checked_against() {
        let every_five = Schedule::cron("*/5 * * * *", "UTC").expect("a schedule");
        assert_eq!(every_five.shortest_interval(at("2026-11-25T00:00:00Z")), Some(SignedDuration::from_mins(5)));
        let hourly_at_work = Schedule::cron("0 9-17 * * 1-5", "UTC").expect("a schedule");
        assert_eq!(hourly_at_work.shortest_interval(at("2026-11-25T00:00:00Z")), Some(SignedDuration::from_hours(1)));
        // Across a spring-forward night a daily schedule comes round in 23 hours.
        let daily = Schedule::daily("12:00", "Europe/Paris").expect("a schedule");
        assert_eq!(daily.shortest_interval(at("2026-01-01T00:00:00Z")), Some(SignedDuration::from_hours(23)));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (pattern, zone) in [("0 0 * *", "UTC"), ("61 * * * *", "UTC"), ("0 0 * * * *", "UTC"), ("", "UTC")] {
            let error = Schedule::cron(pattern, zone).expect_err(pattern);
            assert!(error.to_string().starts_with("bad schedule"), "{error}");
        }
        for time in ["24:01", "25:00", "7:00", "12:60", "noon", "12-00"] {
            assert_eq!(Schedule::daily(time, "UTC").expect_err(time), ScheduleError::TimeOfDay(time.into()));
        }
        assert_eq!(
            Schedule::daily("12:00", "Mars/Olympus").expect_err("zone"),
            ScheduleError::Zone("Mars/Olympus".into())
        );
    }
}
