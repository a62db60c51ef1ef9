//! The device sync agent: keeps a device's directory in sync with its store, by the device's
//! profile.
//!
//! [`plan`] decides (pure); `sync` gathers the inputs (index, scan, the store's changes) and
//! executes the plans; `watch` keeps a device in sync while it runs, on the server's hints.

pub mod index;
pub mod naming;
pub mod plan;
pub mod scan;
mod sync;
mod watch;

pub use sync::{Device, Progress, Report, Silent};
pub use watch::keep_in_sync;
