//! `cpm-bench`: cpm measured against its targets on this machine.
//!
//! Every figure is the median of repeated runs with its min–max, and every comparison is made
//! side by side in the same run (the machine is shared and noisy). Nothing here is a pass/fail
//! test: the output says which targets were met.

mod edits;
mod hints;
mod peers;
mod procs;
mod store;
mod sync;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cpm-bench", about = "Benchmarks of cpm, with baselines measured in the same run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The network store: listing, change feed, bulk move, journal throughput, 1 GiB streams.
    Store(store::StoreArgs),
    /// The sync agent: initial sync vs cp -r, sync after a move, stub devices, no-op syncs.
    Sync(sync::SyncArgs),
    /// Automatic and periodic sync: hint latency with crowds connected, memory per connected
    /// device, one schedule firing for many devices.
    Hints(hints::HintsArgs),
    /// Local edits while the agent runs: a file written on the PC to its object in the store.
    Edits(edits::EditsArgs),
    /// cpm against cp -r, rclone, unison and mbsync from Dovecot, side by side on the same data;
    /// writes bench/results/REPORT.md and chart.png.
    Peers(peers::PeersArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Store(args) => store::run(args).await,
            Command::Sync(args) => sync::run(args).await,
            Command::Hints(args) => hints::run(args).await,
            Command::Edits(args) => edits::run(args).await,
            Command::Peers(args) => peers::run(args).await,
        }
    })
}

/// Median and range of a set of measurements.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.is_empty() {
            f64::NAN
        } else if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The `q`-quantile of samples (nearest rank).
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(f64::NAN)
}

/// One line of the report: a measure, its target, what was measured and whether it met it.
pub struct Row {
    pub measure: String,
    pub target: String,
    pub result: String,
    pub met: Option<bool>,
}

pub fn print_report(title: &str, rows: &[Row]) {
    println!("\n## {title}\n");
    println!("| measure | target | median (min–max) | met |");
    println!("|---|---|---|---|");
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        println!("| {} | {} | {} | {met} |", row.measure, row.target, row.result);
    }
}
