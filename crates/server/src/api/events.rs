//! `GET /v1/events?since=N`: a WebSocket on which the server hints a device to sync when the
//! store changes in a way that matters to its profile. A hint is never the data: the device
//! syncs as usual, so a lost hint costs latency, not correctness.

use crate::error::{ApiError, ApiQuery};
use crate::state::{AppState, Auth, SharedState};
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use cpm_service::ServiceError;
use cpm_store::UserId;
use jiff::Timestamp;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Changes that land this close together make one hint. Kept short: a burst that lasts longer
/// is gathered by the agent, which waits while hints keep coming during its syncs.
const COALESCE: Duration = Duration::from_millis(5);
/// The largest message a device may send, and the socket's read buffer.
const SOCKET_BUFFER: usize = 4096;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// The device's cursor: changes after it that matter to the device are hinted at once.
    #[serde(default)]
    since: i64,
}

pub async fn events(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiQuery(query): ApiQuery<EventsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let device = AppState::device_of(&principal)?;
    // A device only ever says close or ping: small buffers keep an idle connection cheap.
    let upgrade = upgrade
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        .max_message_size(SOCKET_BUFFER)
        .max_frame_size(SOCKET_BUFFER);
    Ok(upgrade.on_upgrade(move |socket| hint(state, principal.user_id, device, query.since, socket)))
}

/// What the journal holds for a device after its cursor.
struct News {
    relevant: bool,
    /// Where the journal ends.
    cursor: i64,
    /// When time alone next carries an object into or out of the device's view.
    crossing: Option<Timestamp>,
}

/// Whether the journal after `since` holds anything for the device, where it ends, and when its
/// view next changes with time. What was created after `unseen_after` outside the device's view
/// never reached it: no news. A device without automatic sync hears of no changes.
async fn news(
    state: &SharedState,
    user: UserId,
    device: &str,
    since: i64,
    unseen_after: Option<Timestamp>,
) -> Result<News, ApiError> {
    let device = device.to_owned();
    state
        .call(move |service| {
            let view = service.device_profile(user, &device)?;
            if !view.effective.profile.auto {
                return Ok(News { relevant: false, cursor: since, crossing: None });
            }
            let profile = view.effective.profile.compile().map_err(ServiceError::internal)?;
            let now = service.clock.now();
            let crossing = service.next_time_crossing(user, &profile, now)?;
            let mut cursor = since;
            loop {
                let page = service.view_page(user, &profile, cursor, 1000, now, unseen_after)?;
                cursor = page.cursor;
                if !page.changes.is_empty() || !page.has_more {
                    return Ok(News { relevant: !page.changes.is_empty(), cursor, crossing });
                }
            }
        })
        .await
}

/// The longest a socket sleeps before it looks at the clock again while a time crossing is
/// ahead: the clock may be moved (tests, demos), and objects change.
const LONGEST_NAP: Duration = Duration::from_secs(1);

/// Why the socket woke.
enum Wake {
    /// The user's store changed.
    Journal,
    /// The device's schedule says: sync now.
    Schedule,
    /// Time carried objects into or out of the device's view.
    Time,
    Closed,
}

async fn hint(state: SharedState, user: UserId, device: String, mut since: i64, mut socket: WebSocket) {
    let mut journal = state.journal.subscribe();
    let mut attached = state.attach(&device);
    // At first nothing is known of what the device holds: every change since its cursor counts.
    let mut unseen_after = None;
    let mut wake = if state.is_owed(&device) { Wake::Schedule } else { Wake::Journal };
    let mut crossing: Option<Timestamp> = None;
    loop {
        let sent = match wake {
            Wake::Journal | Wake::Time => {
                let checking = state.service.clock.now();
                let checked = news(&state, user, &device, since, unseen_after).await;
                unseen_after = Some(checking);
                match checked {
                    Ok(news) => {
                        since = news.cursor;
                        crossing = news.crossing;
                        if matches!(wake, Wake::Time) {
                            send(&mut socket, since, "time").await
                        } else {
                            !news.relevant || send(&mut socket, since, "changes").await
                        }
                    }
                    Err(_) => false,
                }
            }
            Wake::Schedule => send(&mut socket, since, "schedule").await,
            Wake::Closed => false,
        };
        if !sent {
            break;
        }
        wake = loop {
            tokio::select! {
                moved = journal.recv() => match moved {
                    Ok(changed) if changed != user => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        tokio::time::sleep(COALESCE).await;
                        while journal.try_recv().is_ok() {}
                        break Wake::Journal;
                    }
                    Err(RecvError::Closed) => break Wake::Closed,
                },
                rung = attached.nudges.changed() => break if rung.is_ok() { Wake::Schedule } else { Wake::Closed },
                // Invariant: a device with automatic sync hears when time alone changes its view.
                () = tokio::time::sleep(nap_until(&state, crossing)), if crossing.is_some() => {
                    if crossing.is_some_and(|at| state.service.clock.now() >= at) {
                        break Wake::Time;
                    }
                }
                // The device speaks only to close; anything else is ignored.
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_) | Message::Binary(_))) => continue,
                    _ => break Wake::Closed,
                },
            }
        };
    }
}

/// How long to sleep towards `crossing` before looking at the clock again.
fn nap_until(state: &SharedState, crossing: Option<Timestamp>) -> Duration {
    let now = state.service.clock.now();
    match crossing {
        Some(at) if at <= now => Duration::ZERO,
        Some(at) => state.service.clock.real_wait(at.duration_since(now)).min(LONGEST_NAP),
        None => LONGEST_NAP,
    }
}

/// Sends a hint; false when the socket is gone.
async fn send(socket: &mut WebSocket, cursor: i64, reason: &str) -> bool {
    let text = format!("{{\"sync\":{cursor},\"reason\":\"{reason}\"}}");
    socket.send(Message::Text(text.into())).await.is_ok()
}
