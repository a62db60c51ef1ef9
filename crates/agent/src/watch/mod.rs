//! `cpm agent`: keeps a device in sync while it runs. It syncs once, then syncs whenever the
//! user changes the directory (heard from the file-system watcher, with a full rescan every few
//! minutes in case it missed something), whenever the store changes in a way that matters to the
//! device (R3, with automatic sync on: the server's hint channel) and whenever its schedule comes
//! round (R2). Hints are never the data: when the channel drops, the agent reconnects with
//! backoff and jitter and syncs at once, for it may have missed some.

mod local;

use crate::disk::DiskFs;
use crate::error::{SyncError, SyncResult};
use crate::sync::{Device, Report};
use cpm_client::Client;
use local::LocalChanges;
use std::time::Duration;
use tokio::time::Instant;

/// The longest wait between two attempts to reach the server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a burst of changes gathers before the next sync, once one sync did not keep up.
const BURST_PAUSE: Duration = Duration::from_millis(250);
/// How often the directory is read whole, whatever the watcher heard (or when it cannot watch).
const RESCAN_EVERY: Duration = Duration::from_secs(300);
const RESCAN_UNWATCHED: Duration = Duration::from_secs(30);

/// The hints already received, without waiting; `None` once the channel is gone.
async fn drain(hints: &mut cpm_client::Hints) -> Option<Vec<cpm_client::Hint>> {
    let mut waiting = Vec::new();
    loop {
        match tokio::time::timeout(Duration::ZERO, hints.next()).await {
            Ok(Some(hint)) => waiting.push(hint),
            Ok(None) => return None,
            Err(_) => return Some(waiting),
        }
    }
}

/// The next hint of a channel that may not be there (then: never).
async fn next_hint(hints: &mut Option<cpm_client::Hints>) -> Option<cpm_client::Hint> {
    match hints {
        Some(hints) => hints.next().await,
        None => std::future::pending().await,
    }
}

/// The wait before attempt `failures + 1`: doubling from half a second, at most
/// [`MAX_BACKOFF`], spread by ±50% so that devices cut off together do not return together.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << failures.min(6)).min(MAX_BACKOFF);
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos() % 1000);
    base.mul_f64(0.5 + f64::from(noise) / 1000.0)
}

/// Why the agent syncs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Not,
    Now,
    /// After a pause, for a burst of the store's changes to gather.
    AfterBurst,
}

/// Syncs `device` now and then whenever the user changes its directory, the server hints or a
/// rescan is due, until the future is dropped; with `once`, syncs once and returns. `synced`
/// hears of every sync. A revoked device stops it with [`SyncError::Revoked`]; every other
/// failure is retried with backoff.
pub async fn keep_in_sync(
    device: &Device<Client, DiskFs>,
    once: bool,
    mut synced: impl FnMut(&Report),
) -> SyncResult<()> {
    let mut failures = 0u32;
    // Watching starts first: what the user changes while the first sync runs is heard too.
    let mut local = (!once).then(|| LocalChanges::watch(device.fs.root(), device.fs.own_writes()));
    let mut cursor = loop {
        match device.sync().await {
            Ok(report) => {
                synced(&report);
                break report.cursor;
            }
            // Nothing will change that without the user: say so and stop.
            Err(error @ SyncError::Revoked { .. }) => return Err(error),
            Err(error) if once => return Err(error),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "sync failed; trying again");
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    };
    let Some(mut local) = local.take() else { return Ok(()) };
    let rescan_every = if local.live() { RESCAN_EVERY } else { RESCAN_UNWATCHED };
    let mut rescan_at = Instant::now() + rescan_every;
    let mut hints: Option<cpm_client::Hints> = None;
    // The channel is opened at once; after it drops, a sync follows each reconnection.
    let mut reconnect_at = Some(Instant::now());
    let mut missed = false;
    let mut retry_at: Option<Instant> = None;
    let mut hint_failures = 0u32;
    loop {
        let due = tokio::select! {
            hint = next_hint(&mut hints) => match hint {
                // A hint about what the last sync already took is old news; a schedule or time
                // passing a bound of the filter is not.
                Some(hint) if hint.cursor > cursor || hint.due => Due::Now,
                Some(_) => Due::Not,
                None => {
                    tracing::info!("hint channel closed; reconnecting");
                    hints = None;
                    missed = true;
                    reconnect_at = Some(Instant::now() + backoff(hint_failures));
                    Due::Not
                }
            },
            () = sleep_until(reconnect_at) => match device.remote.hints(cursor).await {
                Ok(channel) => {
                    hints = Some(channel);
                    reconnect_at = None;
                    hint_failures = 0;
                    if std::mem::take(&mut missed) { Due::Now } else { Due::Not }
                }
                // Refused for good (a revoked device): the agent stops, as a sync would.
                Err(error @ cpm_client::ClientError::Api { status: 401, .. }) => {
                    return Err(SyncError::remote(error.into(), crate::remote::Remote::server(&device.remote)));
                }
                Err(error) => {
                    tracing::warn!(%error, "no hint channel; trying again");
                    hint_failures += 1;
                    reconnect_at = Some(Instant::now() + backoff(hint_failures));
                    Due::Not
                }
            },
            () = local.next() => Due::Now,
            () = tokio::time::sleep_until(rescan_at) => Due::Now,
            () = sleep_until(retry_at) => Due::Now,
        };
        let due = match (due, &mut hints) {
            // Hints came while the last sync ran: the store is busy. Let the burst gather for a
            // moment, then one sync takes all of it.
            (Due::Now, Some(channel)) => match drain(channel).await {
                Some(waiting) if waiting.iter().any(|hint| hint.cursor > cursor) => Due::AfterBurst,
                Some(_) => Due::Now,
                None => {
                    hints = None;
                    missed = true;
                    reconnect_at = Some(Instant::now());
                    Due::Now
                }
            },
            (due, _) => due,
        };
        match due {
            Due::Not => continue,
            Due::AfterBurst => tokio::time::sleep(BURST_PAUSE).await,
            Due::Now => {}
        }
        local.taken();
        match device.sync().await {
            Ok(report) => {
                cursor = report.cursor;
                failures = 0;
                retry_at = None;
                synced(&report);
            }
            Err(error @ SyncError::Revoked { .. }) => return Err(error),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "sync failed; trying again");
                failures += 1;
                retry_at = Some(Instant::now() + backoff(failures));
            }
        }
        rescan_at = Instant::now() + rescan_every;
    }
}

/// Sleeps until `at`; never, without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_bound_and_is_spread() {
        for failures in 0..20 {
            let wait = backoff(failures);
            let base = Duration::from_millis(500).saturating_mul(1 << failures.min(6)).min(MAX_BACKOFF);
            assert!(wait >= base / 2 && wait <= base.mul_f64(1.5), "{failures}: {wait:?}");
        }
        assert!(backoff(20) <= MAX_BACKOFF.mul_f64(1.5));
    }
}
