//! `cpm admin`: operator commands that work on the store's data directory directly.

use crate::remote::read_password;
use crate::show;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cpm_core::SystemClock;
use cpm_store::{SqliteStore, Store, StoreSettings, secret};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct AdminArgs {
    /// The store's data directory.
    #[arg(long, default_value = "./cpm-data")]
    data: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password comes from --password-stdin or $CPM_PASSWORD.
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their object count, bytes stored and devices.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: AdminArgs) -> Result<()> {
    let store = SqliteStore::open(&args.data, Arc::new(SystemClock), StoreSettings::default())
        .with_context(|| format!("cannot open the store in {}", args.data.display()))?;
    match args.command {
        AdminCommand::User(UserCommand::Add { name, password_stdin }) => {
            let password = read_password(password_stdin)?;
            let hash = secret::hash_password(&password)?;
            store.create_user(&name, &hash)?;
            println!("added user {name}");
        }
        AdminCommand::User(UserCommand::List { json }) => show::users(&store.users()?, json)?,
    }
    Ok(())
}
