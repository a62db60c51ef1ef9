//! Commands that use the store from a device: `device register`, `put`, `ls`, `mkdir`, `mv`,
//! `get`, `rm`, `devices`.
//!
//! `-C DIR` picks the device directory; local file arguments stay relative to the directory the
//! command was typed in.

use crate::device_dir::{DeviceConfig, DeviceDir};
use crate::show;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use cpm_client::{Client, ClientError};
use cpm_core::pattern::Pattern;
use cpm_core::{DeviceClass, EntryKind, ObjectKind, StorePath};
use cpm_proto::{CreateObjectRequest, Entry, MoveRequest, RegisterDeviceRequest};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most ids sent in one move request; the server takes this many in one transaction.
const MOVE_BATCH: usize = 100_000;

#[derive(Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a device directory with a store; the password comes from --password-stdin or
    /// $CPM_PASSWORD.
    Register {
        /// The store, e.g. http://127.0.0.1:7373 [with --replace: the directory's].
        #[arg(long, required_unless_present = "replace")]
        server: Option<String>,
        #[arg(long, required_unless_present = "replace")]
        user: Option<String>,
        /// The device's name, unique among the user's devices [with --replace: the old one's].
        #[arg(long, required_unless_present = "replace")]
        name: Option<String>,
        /// pc, pda, phone, tablet or other [with --replace: the old one's].
        #[arg(long, required_unless_present = "replace")]
        class: Option<String>,
        /// The device directory (created when missing).
        #[arg(long)]
        dir: PathBuf,
        /// The device's IANA time zone [default: this machine's].
        #[arg(long)]
        tz: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        /// Register a device directory again (its device was revoked, or its token is lost): a
        /// new device takes the old one's place and preferences; its files stay and are synced
        /// as they are at the next sync.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Args)]
pub struct PutArgs {
    /// Store the files as messages (RFC 5322 MIME, or CPIM-wrapped).
    #[arg(long)]
    message: bool,
    /// Give an existing object of the same name this new content (it keeps its id).
    #[arg(long)]
    replace: bool,
    /// Content type [default: guessed from the file name].
    #[arg(long = "type", value_name = "TYPE")]
    content_type: Option<String>,
    /// Local files, then the store folder (or, for one file, the store path) to put them at.
    #[arg(required = true, num_args = 2.., value_name = "FILE... DEST")]
    paths: Vec<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Details: kind, name, type, size, modified, id, link.
    #[arg(short = 'l')]
    long: bool,
    /// Print a JSON array of entries.
    #[arg(long)]
    json: bool,
    /// The device's own storage as it is now (from its index; works offline).
    #[arg(long)]
    local: bool,
    #[arg(default_value = "/")]
    path: String,
}

#[derive(Args)]
pub struct MkdirArgs {
    /// Create missing parents; an existing folder is not an error.
    #[arg(short = 'p')]
    parents: bool,
    #[arg(required = true)]
    paths: Vec<String>,
}

#[derive(Args)]
pub struct MvArgs {
    /// Move the objects of SOURCE whose content type matches GLOB (e.g. 'audio/*').
    #[arg(long = "type", value_name = "GLOB")]
    content_type: Option<String>,
    /// Sources (names may be globs: '/content/*.mp3'), then the destination.
    #[arg(required = true, num_args = 2.., value_name = "SOURCE... DEST")]
    paths: Vec<String>,
}

#[derive(Args)]
pub struct GetArgs {
    /// The object's path in the store.
    path: String,
    /// Where to write it [default: its name, in the current directory].
    local: Option<PathBuf>,
    /// Replace an existing local file.
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct RmArgs {
    /// Delete folders with everything in them.
    #[arg(short = 'r')]
    recursive: bool,
    #[arg(required = true)]
    paths: Vec<String>,
}

#[derive(Args)]
pub struct DevicesArgs {
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<DevicesAction>,
}

#[derive(Subcommand)]
enum DevicesAction {
    /// Revoke a device: its token stops working at once. Revoking the device this directory
    /// syncs as asks first.
    Revoke {
        name: String,
        /// Do not ask, even when it is this device (for scripts).
        #[arg(long)]
        yes: bool,
    },
}

/// Asks on the terminal whether to revoke the device the user is on; no terminal, no.
fn confirmed(name: &str) -> Result<bool> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("{name} is the device this directory syncs as; once revoked it stops syncing. Revoke it? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The password for a login: one line on stdin with `--password-stdin`, else `$CPM_PASSWORD`.
pub fn read_password(from_stdin: bool) -> Result<String> {
    let password = if from_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the password from stdin")?;
        text.lines().next().unwrap_or_default().to_owned()
    } else {
        std::env::var("CPM_PASSWORD").map_err(|_| anyhow!("no password: pass --password-stdin, or set CPM_PASSWORD"))?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn connect(here: &Path) -> Result<(DeviceDir, Client)> {
    let device = DeviceDir::find(here)?;
    let client = Client::with_timeouts(&device.config.server, Some(device.token.clone()), device.timeouts()?)?;
    Ok((device, client))
}

fn store_path(raw: &str) -> Result<StorePath> {
    StorePath::parse(raw).map_err(|error| anyhow!("{error}"))
}

/// Splits an absolute store path into its parent's path and its last name.
fn split(raw: &str) -> Result<(String, String)> {
    let path = store_path(raw)?;
    let (parent, name) = path.split_last().ok_or_else(|| anyhow!("/ has no name; name a path below it"))?;
    Ok((parent.to_string(), name.to_string()))
}

async fn folder(client: &Client, raw: &str) -> Result<Entry> {
    let entry = client.resolve(raw).await?;
    if entry.kind != EntryKind::Folder {
        bail!("{raw} is not a folder");
    }
    Ok(entry)
}

/// The entries a path names: itself, or when its last name is a glob, every match in its folder.
async fn expand(client: &Client, raw: &str) -> Result<Vec<Entry>> {
    let (parent, last) = split(raw)?;
    if !Pattern::is_pattern(&last) {
        return Ok(vec![client.resolve(raw).await?]);
    }
    let pattern = Pattern::parse(&last).map_err(|error| anyhow!(error))?;
    let folder = folder(client, &parent).await?;
    let matches: Vec<Entry> =
        client.list_all(&folder.id).await?.into_iter().filter(|entry| pattern.matches(&entry.name)).collect();
    if matches.is_empty() {
        bail!("nothing matches {raw}");
    }
    Ok(matches)
}

fn is_not_found(error: &ClientError) -> bool {
    error.code() == Some("not_found")
}

pub async fn device(args: DeviceArgs) -> Result<()> {
    let DeviceCommand::Register { server, user, name, class, dir, tz, password_stdin, replace } = args.command;
    let old = match (replace, DeviceDir::is_registered(&dir)) {
        (false, true) => bail!(
            "{} is already a device directory (to register it again, as after a revoke: --replace)",
            dir.display()
        ),
        (true, false) => bail!("{} is not a device directory: register it without --replace", dir.display()),
        (true, true) => Some(DeviceDir::open(&dir)?),
        (false, false) => None,
    };
    let old_config = old.as_ref().map(|old| &old.config);
    let pick = |given: Option<String>, kept: Option<&String>, what: &str| {
        given.or_else(|| kept.cloned()).ok_or_else(|| anyhow!("--{what} is needed"))
    };
    let server = pick(server, old_config.map(|config| &config.server), "server")?;
    let user = pick(user, old_config.map(|config| &config.user), "user")?;
    let name = pick(name, old_config.map(|config| &config.device), "name")?;
    let class = pick(class, old_config.map(|config| &config.class), "class")?;
    class.parse::<DeviceClass>().map_err(|error| anyhow!(error))?;
    let password = read_password(password_stdin)?;
    let time_zone = tz.or_else(|| jiff::tz::TimeZone::system().iana_name().map(str::to_owned));
    let (connect, read) =
        old_config.map_or((None, None), |config| (config.connect_timeout.clone(), config.read_timeout.clone()));
    let client = Client::with_timeouts(&server, None, crate::device_dir::timeouts(&connect, &read)?)?;
    let replaces = old_config.map(|config| config.device_id.clone());
    let request = RegisterDeviceRequest { user: user.clone(), password, name, class, time_zone, replaces };
    let registered = client.register_device(&request).await?;
    let config = DeviceConfig {
        server: client.base().to_owned(),
        user,
        device: registered.device.name.clone(),
        device_id: registered.device.id.clone(),
        class: registered.device.class.clone(),
        // Registered again in place: the directory keeps the timeouts it was given.
        connect_timeout: connect,
        read_timeout: read,
    };
    DeviceDir::create(&dir, config, &registered.token)?;
    if old.is_some() {
        // The files stay; the next sync matches them with the store's whole view.
        cpm_agent::index::Index::open(&dir.join(cpm_agent::naming::META_DIR))?.read_again()?;
    }
    println!(
        "{} {} ({}) for {} at {}; device directory: {}",
        if old.is_some() { "registered again" } else { "registered" },
        registered.device.name,
        registered.device.class,
        request.user,
        client.base(),
        dir.display()
    );
    Ok(())
}

pub async fn put(here: &Path, args: PutArgs) -> Result<()> {
    let (_, client) = connect(here)?;
    let Some((dest, sources)) = args.paths.split_last() else { bail!("put needs files and a destination") };
    store_path(dest)?;
    let into_folder = dest.ends_with('/')
        || sources.len() > 1
        || client.resolve(dest).await.is_ok_and(|entry| entry.kind == EntryKind::Folder);
    let (folder_path, single_name) =
        if into_folder { (dest.clone(), None) } else { split(dest).map(|(p, n)| (p, Some(n)))? };
    let kind = if args.message { ObjectKind::Message } else { ObjectKind::File };
    let target = client.create_folder(&folder_path, true).await?;
    for source in sources {
        let local = Path::new(source);
        let metadata = std::fs::metadata(local).with_context(|| format!("cannot read {source}"))?;
        if !metadata.is_file() {
            bail!("{source} is not a file");
        }
        let name = match &single_name {
            Some(name) => name.clone(),
            None => local
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .ok_or_else(|| anyhow!("{source} has no file name"))?,
        };
        let uploaded = client.upload_file(local).await.with_context(|| format!("cannot put {source}"))?;
        let content_type = match kind {
            ObjectKind::Message => None,
            ObjectKind::File => args
                .content_type
                .clone()
                .or_else(|| mime_guess::from_path(local).first().map(|mime| mime.essence_str().to_owned())),
        };
        let modified = metadata.modified().ok().and_then(|time| jiff::Timestamp::try_from(time).ok());
        let request = CreateObjectRequest {
            folder_id: target.id.clone(),
            name,
            kind,
            hash: uploaded.hash.clone(),
            content_type,
            replace: args.replace,
            base_modseq: None,
            modified,
            unless_held: false,
        };
        let entry = client.create_object(&request).await.map_err(|error| match error.code() {
            Some("already_exists") => {
                anyhow!("{error}; use put --replace to store a new version")
            }
            _ => anyhow!(error).context(format!("cannot put {source}")),
        })?;
        let sent = if uploaded.sent { String::new() } else { ", content already stored: 0 bytes sent".to_owned() };
        println!("put {} ({} bytes{sent})", entry.path.as_deref().unwrap_or(&entry.name), uploaded.size);
    }
    Ok(())
}

pub async fn ls(here: &Path, args: LsArgs) -> Result<()> {
    if args.local {
        return crate::device_sync::ls_local(here, &args.path, args.long, args.json);
    }
    let (_, client) = connect(here)?;
    store_path(&args.path)?;
    let entry = client.resolve(&args.path).await?;
    let entries = if entry.kind == EntryKind::Folder { client.list_all(&entry.id).await? } else { vec![entry] };
    show::entries(&entries, args.long, args.json)
}

pub async fn mkdir(here: &Path, args: MkdirArgs) -> Result<()> {
    let (_, client) = connect(here)?;
    for raw in &args.paths {
        store_path(raw)?;
        let folder = client.create_folder(raw, args.parents).await?;
        println!("created {}", folder.path.as_deref().unwrap_or(raw));
    }
    Ok(())
}

async fn move_into(client: &Client, entries: &[Entry], destination: &Entry) -> Result<()> {
    let noun = |count: usize| if count == 1 { "entry" } else { "entries" };
    let shown = destination.path.as_deref().unwrap_or(&destination.name);
    // What is in the destination already is not moved, nor reported as moved.
    let ids: Vec<String> = entries
        .iter()
        .filter(|entry| entry.parent_id.as_deref() != Some(destination.id.as_str()))
        .map(|entry| entry.id.clone())
        .collect();
    let already = entries.len() - ids.len();
    if ids.is_empty() {
        println!("nothing to move: {already} {} already in {shown}", noun(already));
        return Ok(());
    }
    for batch in ids.chunks(MOVE_BATCH) {
        let request = MoveRequest { ids: batch.to_vec(), to: Some(destination.id.clone()), name: None, revive: false };
        client.move_entries(&request).await?;
    }
    let also = if already == 0 { String::new() } else { format!(" ({already} {} already there)", noun(already)) };
    println!("moved {} {} to {shown}{also}", ids.len(), noun(ids.len()));
    Ok(())
}

pub async fn mv(here: &Path, args: MvArgs) -> Result<()> {
    let (_, client) = connect(here)?;
    let Some((dest, sources)) = args.paths.split_last() else { bail!("mv needs sources and a destination") };
    store_path(dest)?;
    if let Some(glob) = &args.content_type {
        let [source] = sources else { bail!("with --type, give one source folder and a destination folder") };
        let pattern = Pattern::parse(glob).map_err(|error| anyhow!(error))?;
        let source_folder = folder(&client, source).await?;
        let selected: Vec<Entry> = client
            .list_all(&source_folder.id)
            .await?
            .into_iter()
            .filter(|entry| entry.content_type.as_deref().is_some_and(|ct| pattern.matches(ct)))
            .collect();
        if selected.is_empty() {
            bail!("no objects of type {glob} in {source}");
        }
        let destination = folder(&client, dest).await?;
        return move_into(&client, &selected, &destination).await;
    }
    let mut entries = Vec::new();
    for source in sources {
        entries.extend(expand(&client, source).await?);
    }
    match client.resolve(dest).await {
        Ok(destination) if destination.kind == EntryKind::Folder => move_into(&client, &entries, &destination).await,
        Err(error) if !is_not_found(&error) => Err(error.into()),
        _ if dest.ends_with('/') => bail!("no such folder: {dest}"),
        _ => {
            let [entry] = entries.as_slice() else {
                bail!("moving several entries needs an existing destination folder; {dest} is not one")
            };
            let (parent, name) = split(dest)?;
            let parent = folder(&client, &parent).await?;
            let request =
                MoveRequest { ids: vec![entry.id.clone()], to: Some(parent.id), name: Some(name), revive: false };
            let moved = client.move_entries(&request).await?;
            let new_path = moved.entries.first().and_then(|entry| entry.path.clone()).unwrap_or_else(|| dest.clone());
            println!("moved {} to {new_path}", entry.path.as_deref().unwrap_or(&entry.name));
            Ok(())
        }
    }
}

pub async fn get(here: &Path, args: GetArgs) -> Result<()> {
    let (_, client) = connect(here)?;
    store_path(&args.path)?;
    let entry = client.resolve(&args.path).await?;
    if entry.kind == EntryKind::Folder {
        bail!("{} is a folder; get downloads one object", args.path);
    }
    let mut dest = args.local.unwrap_or_else(|| PathBuf::from(&entry.name));
    if dest.is_dir() {
        dest = dest.join(&entry.name);
    }
    if dest.exists() && !args.force {
        bail!("{} exists (use -f to replace it)", dest.display());
    }
    let bytes = client.download(&entry, &dest).await.with_context(|| format!("cannot get {}", args.path))?;
    println!("got {} → {} ({bytes} bytes)", args.path, dest.display());
    Ok(())
}

pub async fn rm(here: &Path, args: RmArgs) -> Result<()> {
    let (_, client) = connect(here)?;
    for raw in &args.paths {
        for entry in expand(&client, raw).await? {
            let shown = entry.path.clone().unwrap_or_else(|| entry.name.clone());
            match entry.kind {
                EntryKind::Folder => {
                    client.delete_folder(&entry.id, args.recursive).await.map_err(|error| match error.code() {
                        Some("folder_not_empty") => {
                            anyhow!("{shown} is not empty (use rm -r to delete it with everything in it)")
                        }
                        _ => error.into(),
                    })?
                }
                EntryKind::File | EntryKind::Message => client.delete_object(&entry.id).await?,
            }
            println!("removed {shown}");
        }
    }
    Ok(())
}

pub async fn devices(here: &Path, args: DevicesArgs) -> Result<()> {
    let (device, client) = connect(here)?;
    match args.action {
        Some(DevicesAction::Revoke { name, yes }) => {
            if name == device.config.device && !yes && !confirmed(&name)? {
                bail!("{name} not revoked (this directory syncs as {name}; --yes revokes it without asking)");
            }
            let revoked = client.revoke_device(&name).await?;
            println!("revoked {}", revoked.name);
            Ok(())
        }
        None => show::devices(&client.devices().await?, &device.config.device_id, args.json),
    }
}
