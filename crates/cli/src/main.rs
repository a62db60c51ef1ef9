//! `cpm`: run the network store, administer it, and use it from a device.

mod admin;
mod demo;
mod device_dir;
mod device_sync;
mod remote;
mod serve;
mod show;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cpm", version, about = "Network message and content store for CPM users, and its device commands")]
struct Cli {
    /// Run as if cpm was started in DIR (as with git -C).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the network store (embedded SQLite + blob files under --data).
    Serve(serve::ServeArgs),
    /// Administer a store directly on its data directory (users).
    Admin(admin::AdminArgs),
    /// Register this device with a store.
    Device(remote::DeviceArgs),
    /// Upload files (or messages with --message) into a store folder.
    Put(remote::PutArgs),
    /// List a folder of the store, with details under -l.
    Ls(remote::LsArgs),
    /// Create folders in the store.
    Mkdir(remote::MkdirArgs),
    /// Move or rename files and folders in the store (one transaction).
    Mv(remote::MvArgs),
    /// Download an object's content.
    Get(remote::GetArgs),
    /// Delete files, messages or folders from the store.
    Rm(remote::RmArgs),
    /// List the user's devices, or revoke one.
    Devices(remote::DevicesArgs),
    /// Sync this device with the store, by its profile.
    Sync(device_sync::SyncArgs),
    /// Keep this device in sync while running: now, and whenever the store changes in a way
    /// that matters to it (Ctrl-C stops).
    Agent(device_sync::AgentArgs),
    /// This device: cursor, last sync, pending local changes, conflicts, profile.
    Status(device_sync::StatusArgs),
    /// Show or change this device's sync profile.
    Prefs(device_sync::PrefsArgs),
    /// Fetch a stub's content through its link.
    Fetch(device_sync::EntryArgs),
    /// Drop a fetched file's content, keeping its stub.
    Evict(device_sync::EntryArgs),
    /// Play use case 7.1 end to end with real processes: a store on a simulated clock that
    /// reaches 24:00, a PC, a PDA and a phone (leaves nothing running).
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server reports what it serves; a device command speaks only when something is wrong.
    init_logging(if matches!(cli.command, Command::Serve(_)) { tracing::Level::INFO } else { tracing::Level::WARN });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cpm: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let here = cli.dir.unwrap_or_else(|| PathBuf::from("."));
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Admin(args) => admin::run(args),
            Command::Device(args) => remote::device(args).await,
            Command::Put(args) => remote::put(&here, args).await,
            Command::Ls(args) => remote::ls(&here, args).await,
            Command::Mkdir(args) => remote::mkdir(&here, args).await,
            Command::Mv(args) => remote::mv(&here, args).await,
            Command::Get(args) => remote::get(&here, args).await,
            Command::Rm(args) => remote::rm(&here, args).await,
            Command::Devices(args) => remote::devices(&here, args).await,
            Command::Sync(args) => device_sync::sync(&here, args).await,
            Command::Agent(args) => device_sync::agent(&here, args).await,
            Command::Status(args) => device_sync::status(&here, args),
            Command::Prefs(args) => device_sync::prefs(&here, args).await,
            Command::Fetch(args) => device_sync::fetch(&here, args).await,
            Command::Evict(args) => device_sync::evict(&here, args).await,
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One clear line: the outermost context and the root cause.
            let root = error.root_cause().to_string();
            let top = error.to_string();
            if top == root {
                eprintln!("cpm: {top}")
            } else {
                eprintln!("cpm: {top}: {root}")
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `CPM_LOG` sets the level (error, warn, info, debug, trace).
fn init_logging(default: tracing::Level) {
    let level = std::env::var("CPM_LOG").ok().and_then(|raw| raw.parse::<tracing::Level>().ok()).unwrap_or(default);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
