//! The device directory's own changes, heard from the operating system's file watcher (inotify
//! on Linux). What the engine wrote itself, and its own folder, are not news.

use crate::disk::OwnWrites;
use crate::naming::META_DIR;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the directory must stay still before a burst of changes is taken as one.
const QUIET: Duration = Duration::from_millis(80);
/// The longest a burst is gathered before a sync takes what came so far.
const GATHER_AT_MOST: Duration = Duration::from_millis(600);

/// The user's changes to a device directory, as the watcher hears them.
pub struct LocalChanges {
    heard: mpsc::UnboundedReceiver<()>,
    /// A change was heard and not yet taken by a sync: kept across a wait cut short.
    pending: bool,
    /// Dropping it stops the watching.
    watcher: Option<notify::RecommendedWatcher>,
}

impl LocalChanges {
    /// Watches everything under `root`. When the system cannot (no inotify instance or watch
    /// left), the agent says so and relies on its periodic rescans.
    pub fn watch(root: &Path, own: OwnWrites) -> Self {
        let (tell, heard) = mpsc::unbounded_channel();
        let meta = root.join(META_DIR);
        let handler = move |event: notify::Result<notify::Event>| {
            let news = match event {
                // An error or a lost event (the queue overflowed): what changed is unknown, so
                // the directory is read again.
                Err(_) => true,
                Ok(event) if event.need_rescan() => true,
                Ok(event) if matches!(event.kind, EventKind::Access(_)) => false,
                Ok(event) => event.paths.iter().any(|path| !path.starts_with(&meta) && !own.made(path)),
            };
            if news {
                let _ = tell.send(());
            }
        };
        let watcher = notify::recommended_watcher(handler)
            .and_then(|mut watcher| watcher.watch(root, RecursiveMode::Recursive).map(|()| watcher));
        match watcher {
            Ok(watcher) => Self { heard, pending: false, watcher: Some(watcher) },
            Err(error) => {
                tracing::warn!(%error, "cannot watch the device directory; local changes are found by periodic rescans");
                Self { heard, pending: false, watcher: None }
            }
        }
    }

    /// True when this watcher hears changes as they happen.
    pub fn live(&self) -> bool {
        self.watcher.is_some()
    }

    /// Waits for the next change the user makes, then for the burst it starts to settle. Cut
    /// short (another reason to sync came first), the change stays pending for the next wait.
    pub async fn next(&mut self) {
        if !self.pending {
            if self.watcher.is_none() || self.heard.recv().await.is_none() {
                return std::future::pending().await;
            }
            self.pending = true;
        }
        let started = tokio::time::Instant::now();
        while started.elapsed() < GATHER_AT_MOST {
            match tokio::time::timeout(QUIET, self.heard.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        self.taken();
    }

    /// A sync starts: what was heard so far is what it reads.
    pub fn taken(&mut self) {
        while self.heard.try_recv().is_ok() {}
        self.pending = false;
    }
}
