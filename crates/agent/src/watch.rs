//! `cpm agent`: keeps a device in sync while it runs. It syncs once, then holds the server's
//! hint channel and syncs whenever the store changes in a way that matters to the device (R3,
//! with automatic sync on) and whenever its schedule comes round (R2). Hints are never the data: when the channel drops, the agent reconnects with backoff and
//! jitter and syncs at once, for it may have missed some.

use crate::disk::DiskFs;
use crate::error::{SyncError, SyncResult};
use crate::sync::{Device, Report};
use cpm_client::Client;
use std::time::Duration;

/// The longest wait between two attempts to reach the server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a burst of changes gathers before the next sync, once one sync did not keep up.
const BURST_PAUSE: Duration = Duration::from_millis(250);

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

/// The wait before attempt `failures + 1`: doubling from half a second, at most
/// [`MAX_BACKOFF`], spread by ±50% so that devices cut off together do not return together.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << failures.min(6)).min(MAX_BACKOFF);
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos() % 1000);
    base.mul_f64(0.5 + f64::from(noise) / 1000.0)
}

/// Syncs `device` now and then whenever the server hints, until the future is dropped; with
/// `once`, syncs once and returns. `synced` hears of every sync.
pub async fn keep_in_sync(
    device: &Device<Client, DiskFs>,
    once: bool,
    mut synced: impl FnMut(&Report),
) -> SyncResult<()> {
    let mut failures = 0u32;
    loop {
        let cursor = match device.sync().await {
            Ok(report) => {
                synced(&report);
                report.cursor
            }
            // Nothing will change that without the user: say so and stop.
            Err(error @ SyncError::Revoked { .. }) => return Err(error),
            Err(error) if once => return Err(error),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "sync failed; trying again");
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        if once {
            return Ok(());
        }
        let mut hints = match device.remote.hints(cursor).await {
            Ok(hints) => hints,
            Err(error) => {
                tracing::warn!(%error, "no hint channel; trying again");
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        failures = 0;
        let mut cursor = cursor;
        let mut burst = false;
        loop {
            if burst {
                // Hints came while the last sync ran: the store is busy. Let the burst gather for
                // a moment, then one sync takes all of it.
                tokio::time::sleep(BURST_PAUSE).await;
                if drain(&mut hints).await.is_none() {
                    break;
                }
            } else {
                let Some(hint) = hints.next().await else { break };
                // A hint about what the last sync already took is old news; a schedule is not.
                if hint.cursor <= cursor && !hint.scheduled {
                    continue;
                }
            }
            match device.sync().await {
                Ok(report) => {
                    cursor = report.cursor;
                    synced(&report);
                }
                Err(error @ SyncError::Revoked { .. }) => return Err(error),
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "sync failed");
                    break;
                }
            }
            match drain(&mut hints).await {
                Some(waiting) => burst = waiting.iter().any(|hint| hint.cursor > cursor || hint.scheduled),
                None => break,
            }
        }
        tracing::info!("hint channel closed; reconnecting");
        tokio::time::sleep(backoff(0)).await;
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
