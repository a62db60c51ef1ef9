//! Periodic sync (R2), the server's side: at each scheduled instant of each device, read in the
//! device's zone, the device's connected agent is told to sync. A device away at that instant is
//! owed one sync, told as soon as it connects, and settled by any sync it makes.
//!
//! Timers live in the store, so an instant fires at most once per device across restarts, and
//! instants missed while the server was down collapse into one firing when it comes back.

use crate::state::SharedState;
use cpm_core::schedule::{Schedule, Tick, Timer};
use cpm_service::profiles::profile_of;
use jiff::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// The longest the scheduler sleeps between looks at the clock, whatever the next instant: a
/// clock can be moved (tests, demos) and settings change.
const LONGEST_NAP: Duration = Duration::from_secs(1);

/// A device with a schedule, as the scheduler follows it.
struct Planned {
    schedule: Schedule,
    timer: Timer,
    wakes: Option<Timestamp>,
}

/// Runs the schedules until the server stops.
pub async fn run(state: SharedState) {
    let mut planned: HashMap<String, Planned> = HashMap::new();
    let mut stale = true;
    loop {
        if stale {
            match load(&state).await {
                Ok(fresh) => {
                    planned = fresh;
                    stale = false;
                }
                Err(error) => tracing::error!(%error, "cannot read the device schedules"),
            }
        }
        if let Err(error) = fire_due(&state, &mut planned).await {
            tracing::error!(%error, "cannot store fired schedules");
            stale = true;
        }
        let now = state.service.clock.now();
        let nap = planned
            .values()
            .filter_map(|device| device.wakes)
            .min()
            .map_or(LONGEST_NAP, |next| state.service.clock.real_wait(next.duration_since(now)).min(LONGEST_NAP));
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            () = state.timers_changed.notified() => stale = true,
        }
    }
}

/// Reads every device's schedule. Timers seen for the first time (or for a changed schedule) are
/// armed from now and stored; the owed list is rebuilt from the store.
async fn load(state: &SharedState) -> Result<HashMap<String, Planned>, String> {
    let (planned, owed) = state
        .call(move |service| {
            let (store, classes, now) = (&service.store, service.classes(), service.clock.now());
            let mut planned = HashMap::new();
            let mut armed = Vec::new();
            let mut owed = Vec::new();
            for device in store.device_timers()? {
                let profile = match profile_of(device.profile, &classes, now) {
                    Ok(view) => view.effective.profile,
                    Err(error) => {
                        tracing::warn!(device = device.device_id, %error, "device profile unreadable; no schedule");
                        continue;
                    }
                };
                let Ok(Some(schedule)) = profile.periodic() else { continue };
                let timer = match (schedule.tick(device.timer.as_ref(), now), device.timer) {
                    (Tick::Arm(timer), _) => {
                        armed.push((device.device_id.clone(), timer.clone()));
                        timer
                    }
                    // Due instants fire in `fire_due`, which stores them before telling anyone.
                    (Tick::Wait | Tick::Fire(_), Some(timer)) => timer,
                    // A timer never seen is always armed.
                    (_, None) => continue,
                };
                if timer.owed {
                    owed.push(device.device_id.clone());
                }
                let wakes = schedule.wakes_at(&timer);
                planned.insert(device.device_id, Planned { schedule, timer, wakes });
            }
            store.save_timers(&armed)?;
            Ok((planned, owed))
        })
        .await
        .map_err(|error| error.message)?;
    state.set_owed(owed);
    Ok(planned)
}

/// Fires every instant that has come: stores the timers, then tells the connected devices.
async fn fire_due(state: &SharedState, planned: &mut HashMap<String, Planned>) -> Result<(), String> {
    let now = state.service.clock.now();
    let fired: Vec<(String, Timer)> = planned
        .iter()
        .filter(|(_, device)| device.wakes.is_some_and(|wakes| wakes <= now))
        .filter_map(|(id, device)| match device.schedule.tick(Some(&device.timer), now) {
            Tick::Fire(timer) => Some((id.clone(), timer)),
            Tick::Wait | Tick::Arm(_) => None,
        })
        .collect();
    if fired.is_empty() {
        return Ok(());
    }
    let stored = fired.clone();
    // Invariant (each instant fires at most once): the timers are stored before anyone is told;
    // a crash in between leaves the devices owed, and they sync on their next connection.
    state.call(move |service| Ok(service.store.save_timers(&stored)?)).await.map_err(|error| error.message)?;
    state.owe(fired.iter().map(|(id, _)| id.clone()));
    let told = state.nudge(fired.iter().map(|(id, _)| id.as_str()));
    tracing::info!(fired = fired.len(), told, "scheduled syncs");
    for (id, timer) in fired {
        if let Some(device) = planned.get_mut(&id) {
            device.wakes = device.schedule.wakes_at(&timer);
            device.timer = timer;
        }
    }
    Ok(())
}
