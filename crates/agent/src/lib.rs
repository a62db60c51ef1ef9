//! The device sync agent: keeps a device's directory in sync with its store, by the device's
//! profile.
//!
//! [`plan`] decides (pure); `sync` gathers the inputs (index, scan, the store's changes) and
//! executes the plans; `watch` keeps a device in sync while it runs, on the server's hints and
//! the directory's own changes. The engine reaches the directory only through [`LocalFs`]
//! ([`DiskFs`] on a real disk) and the store only through [`Remote`] ([`cpm_client::Client`]
//! over HTTP), so it can run whole against simulated ones.

mod disk;
pub mod error;
pub mod fs;
pub mod index;
pub mod naming;
pub mod plan;
pub mod remote;
pub mod scan;
mod sync;
mod watch;

pub use disk::DiskFs;
pub use error::{SyncError, SyncResult};
pub use fs::LocalFs;
pub use remote::{Remote, RemoteError};
pub use sync::{Device, Progress, Report, SKIPPED, Silent};
pub use watch::keep_in_sync;
