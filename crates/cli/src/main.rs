//! `cpm`: run the network store, administer it, and use it from a device.

mod admin;
mod device_dir;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
