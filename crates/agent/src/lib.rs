//! The device sync agent: keeps a device's directory in sync with its store, by the device's
//! profile.
//!
//! [`plan`] decides (pure); `sync` gathers the inputs (index, scan, the store's changes) and
//! executes the plans.

pub mod index;
pub mod naming;
pub mod plan;
pub mod scan;
mod sync;

pub use sync::{Device, Progress, Report, Silent};
