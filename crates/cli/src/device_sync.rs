//! Commands that sync a device: `sync`, `status`, `prefs`, `fetch`, `evict`, and `ls --local`.

use crate::device_dir::DeviceDir;
use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use cpm_agent::index::Index;
use cpm_agent::naming::META_DIR;
use cpm_agent::plan::{Here, Listing, LocalState, Skipped, plan_push};
use cpm_agent::{Device, DiskFs, Progress, SKIPPED, Silent, keep_in_sync, scan};
use cpm_client::Client;
use cpm_core::policy::Source;
use cpm_core::profile::{ContentPolicy, Mode, SyncProfile};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Args)]
pub struct SyncArgs {
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
    /// Print a JSON summary of what was done.
    #[arg(long)]
    json: bool,
    /// When another sync of this device runs, refuse at once instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Args)]
pub struct EntryArgs {
    /// The entry's path in the store (as this device holds it).
    path: String,
    /// When a sync of this device runs, refuse at once instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct PrefsArgs {
    #[command(subcommand)]
    command: PrefsCommand,
}

#[derive(Subcommand)]
enum PrefsCommand {
    /// Change this device's sync profile. Record filter options (--kind, --type, sizes, ages,
    /// dates, --flag, --filter) together replace the profile's filter expression.
    Set(Box<PrefsSet>),
    /// Show this device's sync profile.
    Show {
        #[arg(long)]
        json: bool,
        /// Each field of the profile in force, and what decided it: the user's preference, the
        /// operator's default, an operator bound, or cpm's own default.
        #[arg(long)]
        effective: bool,
    },
}

#[derive(Args)]
struct PrefsSet {
    /// full (every object) or partial (only those the record filter selects).
    #[arg(long, value_parser = ["full", "partial"])]
    mode: Option<String>,
    /// Folder subtree to hold (a store path glob, e.g. '/content/**'); repeatable.
    #[arg(long)]
    include: Vec<String>,
    /// Folder subtree never to hold; repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Only objects of this kind: file or message.
    #[arg(long)]
    kind: Option<String>,
    /// Only these content types (globs such as 'audio/*'); repeatable.
    #[arg(long = "type")]
    types: Vec<String>,
    /// Only objects at least this large (e.g. 10KB).
    #[arg(long)]
    min_size: Option<String>,
    /// Only objects at most this large (e.g. 20MB).
    #[arg(long)]
    max_size: Option<String>,
    /// Only objects modified within this age (e.g. 30d: the last 30 days).
    #[arg(long)]
    newer_than: Option<String>,
    /// Only objects last modified longer ago than this.
    #[arg(long)]
    older_than: Option<String>,
    /// Only objects dated on or after this day (messages by their Date), e.g. 2026-01-01.
    #[arg(long)]
    since: Option<String>,
    /// Only objects dated before this day.
    #[arg(long)]
    until: Option<String>,
    /// Only objects with this flag (e.g. flagged); repeatable.
    #[arg(long)]
    flag: Vec<String>,
    /// A filter expression, e.g. 'kind = file and type ~ "audio/*" and size < 20MB'.
    #[arg(long)]
    filter: Option<String>,
    /// Remove the record filter (subtrees and expression).
    #[arg(long, conflicts_with_all = ["include", "exclude", "filter"])]
    no_filter: bool,
    /// The details to keep, e.g. name,size,content_type,modified ('all' for every one).
    #[arg(long, value_delimiter = ',')]
    fields: Option<Vec<String>>,
    /// download (keep the content) or stub (keep the details and a link).
    #[arg(long, value_parser = ["download", "stub"])]
    content: Option<String>,
    /// Sync whenever the store changes in a way that matters to this device.
    #[arg(long, value_parser = ["on", "off"])]
    auto: Option<String>,
    /// Sync periodically: a 5-field cron pattern, e.g. '0 0 * * *'.
    #[arg(long, conflicts_with_all = ["daily", "no_schedule"])]
    schedule: Option<String>,
    /// Sync every day at HH:MM (24:00 is midnight at the end of the day).
    #[arg(long, conflicts_with = "no_schedule")]
    daily: Option<String>,
    /// The time zone schedules are read in (IANA, e.g. Europe/Paris); by default this machine's.
    #[arg(long)]
    tz: Option<String>,
    /// No periodic sync.
    #[arg(long)]
    no_schedule: bool,
    /// Download no payload larger than this (e.g. 20MB): larger objects stay stubs; 'none' for
    /// no limit of your own (the operator's, if any, still holds).
    #[arg(long, value_name = "SIZE")]
    max_download: Option<String>,
}

type LocalDevice = Device<Client, DiskFs>;

fn device(here: &Path, wait: bool) -> Result<LocalDevice> {
    device_with(here, Box::new(Waiting), wait)
}

fn device_with(here: &Path, progress: Box<dyn Progress>, wait_for_lock: bool) -> Result<LocalDevice> {
    let dir = DeviceDir::find(here)?;
    let client = Client::with_timeouts(&dir.config.server, Some(dir.token.clone()), dir.timeouts()?)?;
    let clock = std::sync::Arc::new(cpm_core::SystemClock);
    let fs = DiskFs::open(&dir.root).map_err(|error| anyhow!("cannot use {}: {error}", dir.root.display()))?;
    let zone = jiff::tz::TimeZone::system();
    Ok(Device { name: dir.config.device, remote: client, fs, progress, clock, zone, wait_for_lock })
}

/// Says, once, that the sync waits for another process holding the device.
fn say_waiting(pid: Option<u32>) {
    match pid {
        Some(pid) => eprintln!("cpm: waiting for the sync of pid {pid}"),
        None => eprintln!("cpm: waiting for another sync of this device"),
    }
}

/// Progress nobody watches, but a wait for the lock is told.
struct Waiting;

impl Progress for Waiting {
    fn planned(&self, actions: u64, bytes: u64) {
        Silent.planned(actions, bytes);
    }

    fn done(&self, bytes: u64) {
        Silent.done(bytes);
    }

    fn waiting(&self, pid: Option<u32>) {
        say_waiting(pid);
    }
}

/// A progress bar on stderr for syncs that last: it appears only after a second, so quick syncs
/// print nothing but their summary.
struct Bar {
    bar: ProgressBar,
    started: std::time::Instant,
    bytes: AtomicU64,
}

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} objects, {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Self { bar, started: std::time::Instant::now(), bytes: AtomicU64::new(0) }
    }
}

impl Progress for Bar {
    fn planned(&self, actions: u64, _bytes: u64) {
        self.bar.inc_length(actions);
    }

    fn waiting(&self, pid: Option<u32>) {
        self.bar.suspend(|| say_waiting(pid));
    }

    fn done(&self, bytes: u64) {
        if self.bar.is_hidden() && self.started.elapsed() > std::time::Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        let moved = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.bar.set_message(format!("{} transferred", HumanBytes(moved)));
        self.bar.inc(1);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

pub async fn sync(here: &Path, args: SyncArgs) -> Result<()> {
    let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let wait = !args.no_wait;
    let device = if show_bar { device_with(here, Box::new(Bar::new()), wait)? } else { device(here, wait)? };
    let report = device.sync().await?;
    // The bar leaves the screen before the summary takes its place.
    drop(device);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !args.quiet {
        println!("synced: {}", report.summary());
    }
    Ok(())
}

#[derive(Args)]
pub struct AgentArgs {
    /// Sync once and exit.
    #[arg(long)]
    once: bool,
    /// A JSON line for every sync, also those with nothing to do.
    #[arg(long)]
    json: bool,
    /// When another sync of this device runs, refuse at once instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
}

/// Runs the agent in the foreground, a line per sync that did something; Ctrl-C (or SIGTERM)
/// stops it. A sync cut short converges on the next run, like any interrupted sync.
pub async fn agent(here: &Path, args: AgentArgs) -> Result<()> {
    let device = device(here, !args.no_wait)?;
    let report_line = |report: &cpm_agent::Report| {
        if args.json {
            println!("{}", serde_json::to_string(report).unwrap_or_default());
        } else if !report.is_quiet() {
            println!("{} synced: {}", jiff::Zoned::now().strftime("%H:%M:%S"), report.summary());
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
    };
    tokio::select! {
        kept = keep_in_sync(&device, args.once, report_line) => Ok(kept?),
        () = stop_signal() => Ok(()),
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The filter expression the record filter options stand for.
fn filter_expression(set: &PrefsSet) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(kind) = &set.kind {
        parts.push(format!("kind = {kind}"));
    }
    if !set.types.is_empty() {
        let types: Vec<String> = set.types.iter().map(|glob| format!("type ~ {}", quoted(glob))).collect();
        parts.push(if types.len() == 1 { types.join("") } else { format!("({})", types.join(" or ")) });
    }
    for (option, op) in [(&set.min_size, ">="), (&set.max_size, "<=")] {
        if let Some(size) = option {
            parts.push(format!("size {op} {size}"));
        }
    }
    for (option, op) in [(&set.newer_than, "<="), (&set.older_than, ">")] {
        if let Some(age) = option {
            parts.push(format!("age {op} {age}"));
        }
    }
    for (option, op) in [(&set.since, ">="), (&set.until, "<")] {
        if let Some(day) = option {
            parts.push(format!("date {op} {day}"));
        }
    }
    parts.extend(set.flag.iter().map(|flag| format!("flag = {flag}")));
    if let Some(filter) = &set.filter {
        parts.push(if parts.is_empty() { filter.clone() } else { format!("({filter})") });
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

pub async fn prefs(here: &Path, args: PrefsArgs) -> Result<()> {
    let device = device(here, true)?;
    match args.command {
        PrefsCommand::Show { json, effective } => {
            let state = device.remote.profile().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else if effective {
                let values = serde_json::to_value(&state.profile)?;
                for (key, source) in &state.sources {
                    let value = match values.get(key) {
                        Some(serde_json::Value::String(text)) if text.is_empty() => "none".to_owned(),
                        Some(serde_json::Value::String(text)) => text.clone(),
                        Some(value) => value.to_string(),
                        None => "none".to_owned(),
                    };
                    let source = match source {
                        Source::User => "your preference",
                        Source::OperatorDefault => "operator default",
                        Source::OperatorBound => "operator bound",
                        Source::BuiltIn => "built-in default",
                    };
                    println!("{key:<9} {value}  ({source})");
                }
            } else {
                println!("{} (revision {})", state.summary, state.revision);
            }
        }
        PrefsCommand::Set(set) => {
            let mut profile: SyncProfile = device.remote.profile().await?.profile;
            let expression = filter_expression(&set);
            let filtering = expression.is_some() || !set.include.is_empty() || !set.exclude.is_empty();
            if set.no_filter {
                (profile.include, profile.exclude, profile.filter) = (Vec::new(), Vec::new(), None);
            }
            if !set.include.is_empty() {
                profile.include = set.include.clone();
            }
            if !set.exclude.is_empty() {
                profile.exclude = set.exclude.clone();
            }
            if expression.is_some() {
                profile.filter = expression;
            }
            profile.mode = match set.mode.as_deref() {
                Some("full") => Mode::Full,
                Some(_) => Mode::Partial,
                // Filtering records is what a partial profile is.
                None if filtering => Mode::Partial,
                None => profile.mode,
            };
            if let Some(fields) = &set.fields {
                profile.fields = if fields.iter().any(|field| field == "all") { None } else { Some(fields.clone()) };
            }
            if let Some(content) = &set.content {
                profile.content = if content == "stub" { ContentPolicy::Stub } else { ContentPolicy::Download };
            }
            if let Some(auto) = &set.auto {
                profile.auto = auto == "on";
            }
            if let Some(pattern) = &set.schedule {
                profile.schedule = Some(pattern.clone());
            }
            if let Some(time) = &set.daily {
                profile.set_daily(time);
            }
            if set.no_schedule {
                profile.schedule = Some(String::new());
            }
            if let Some(size) = &set.max_download {
                profile.max_download = (size != "none").then(|| size.clone());
            }
            if let Some(zone) = &set.tz {
                profile.zone = Some(zone.clone());
            } else if profile.schedule.is_some() && profile.zone.is_none() {
                profile.zone = jiff::tz::TimeZone::system().iana_name().map(str::to_owned);
            }
            profile.compile().map_err(|error| anyhow!(error))?;
            // Only what was asked for becomes the user's preference; the rest stays with the
            // operator's defaults.
            let scheduling = set.schedule.is_some() || set.daily.is_some() || set.no_schedule;
            let touched = [
                ("mode", set.mode.is_some() || filtering || set.no_filter),
                ("include", !set.include.is_empty() || set.no_filter),
                ("exclude", !set.exclude.is_empty() || set.no_filter),
                ("filter", filtering || set.no_filter),
                ("fields", set.fields.is_some()),
                ("content", set.content.is_some()),
                ("auto", set.auto.is_some()),
                ("schedule", scheduling),
                ("zone", set.tz.is_some() || scheduling),
                ("max_download", set.max_download.is_some()),
            ];
            let chosen = serde_json::to_value(&profile)?;
            let patch: serde_json::Map<String, serde_json::Value> = touched
                .into_iter()
                .filter(|(_, touched)| *touched)
                .map(|(key, _)| (key.to_owned(), chosen.get(key).cloned().unwrap_or(serde_json::Value::Null)))
                .collect();
            let state = device.remote.set_profile(&patch).await?;
            println!("profile: {} (revision {}); the next sync applies it", state.summary, state.revision);
        }
    }
    Ok(())
}

pub fn status(here: &Path, args: StatusArgs) -> Result<()> {
    let dir = DeviceDir::find(here)?;
    let index = Index::open(&dir.root.join(META_DIR))?;
    let tree = index.load()?;
    let content =
        if index.meta("content")?.as_deref() == Some("stub") { ContentPolicy::Stub } else { ContentPolicy::Download };
    let fs = DiskFs::open(&dir.root).map_err(|error| anyhow!("cannot use {}: {error}", dir.root.display()))?;
    let local = scan::scan(&fs, &tree)?;
    let today = jiff::Zoned::now().date();
    let here = Here { device: &dir.config.device, today, case_insensitive: cpm_agent::LocalFs::case_insensitive(&fs) };
    let pending = plan_push(&tree, &local, &[], content, here, Listing::Delta);
    let mut skipped: Vec<Skipped> =
        index.meta(SKIPPED)?.and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_default();
    for found in local.skipped {
        if !skipped.iter().any(|known| known.shown_path() == found.shown_path()) {
            skipped.push(found);
        }
    }
    let conflicts: Vec<&String> = local.files.keys().filter(|path| path.contains(" (conflict ")).collect();
    let stubs = tree.records.values().filter(|record| record.state == LocalState::Stub).count();
    let files = tree.records.values().filter(|record| record.state == LocalState::File).count();
    let cursor = index.cursor()?;
    let last_sync = index.meta("last_sync")?;
    let profile = index.meta("profile_summary")?;
    if args.json {
        let value = serde_json::json!({
            "device": dir.config.device, "server": dir.config.server, "cursor": cursor, "last_sync": last_sync,
            "profile": profile, "files": files, "stubs": stubs,
            "pending": pending.iter().map(|action| format!("{action:?}")).collect::<Vec<_>>(),
            "conflicts": conflicts, "skipped": skipped,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("device:    {} at {}", dir.config.device, dir.config.server);
    println!("cursor:    {}", cursor.map_or_else(|| "never synced".to_owned(), |cursor| cursor.to_string()));
    println!("last sync: {}", last_sync.as_deref().unwrap_or("never"));
    println!("profile:   {}", profile.as_deref().unwrap_or("(not yet synced)"));
    println!("holds:     {files} files, {stubs} stubs");
    println!("pending:   {} local changes", pending.len());
    for action in &pending {
        println!("  {}", describe(action));
    }
    println!("conflicts: {}", conflicts.len());
    for path in conflicts {
        println!("  /{path}");
    }
    if !skipped.is_empty() {
        println!("skipped:   {} (retried at every sync)", skipped.len());
        for entry in &skipped {
            println!("  {}: {}; {}", entry.shown_path(), entry.reason, entry.fix);
        }
    }
    Ok(())
}

fn describe(action: &cpm_agent::plan::Push) -> String {
    use cpm_agent::plan::Push;
    match action {
        Push::CreateFolder { path } => format!("new folder /{path}"),
        Push::Upload { path, replace: Some(_), .. } => format!("changed /{path}"),
        Push::Upload { path, .. } => format!("new /{path}"),
        Push::Move { path, .. } => format!("moved to /{path}"),
        Push::MoveStub { path, .. } => {
            format!("moved to /{}", path.strip_suffix(cpm_agent::naming::STUB_SUFFIX).unwrap_or(path))
        }
        Push::Delete { id, .. } => format!("deleted {id}"),
        Push::DeleteFolder { id } => format!("deleted folder {id}"),
        Push::Forget { id } => format!("the stub of {id} written over here (placed again beside it)"),
    }
}

pub async fn fetch(here: &Path, args: EntryArgs) -> Result<()> {
    let bytes = device(here, !args.no_wait)?.fetch(&args.path).await?;
    println!("fetched {} ({bytes} bytes)", args.path);
    Ok(())
}

pub async fn evict(here: &Path, args: EntryArgs) -> Result<()> {
    device(here, !args.no_wait)?.evict(&args.path).await?;
    println!("evicted {}: only its stub is kept here", args.path);
    Ok(())
}

/// `ls --local`: the device's own storage, from its index; works offline.
pub fn ls_local(here: &Path, path: &str, long: bool, json: bool) -> Result<()> {
    let dir = DeviceDir::find(here)?;
    let index = Index::open(&dir.root.join(META_DIR))?;
    let tree = index.load()?;
    if tree.root_id.is_empty() {
        bail!("this device has never synced (run cpm sync)");
    }
    let wanted = path.trim_matches('/');
    let paths = tree.paths();
    let folder_id = if wanted.is_empty() {
        tree.root_id.clone()
    } else {
        paths
            .iter()
            .find(|(id, local)| {
                local.as_str() == wanted && tree.records.get(*id).is_some_and(|r| r.state == LocalState::Folder)
            })
            .map(|(id, _)| id.clone())
            .ok_or_else(|| anyhow!("no folder {path} on this device"))?
    };
    let mut children: Vec<_> =
        tree.records.values().filter(|record| record.parent_id.as_deref() == Some(folder_id.as_str())).collect();
    children.sort_by(|a, b| (a.state != LocalState::Folder, &a.name).cmp(&(b.state != LocalState::Folder, &b.name)));
    if json {
        let entries: Vec<serde_json::Value> = children
            .iter()
            .map(|record| {
                let mut value = serde_json::to_value(&record.entry).unwrap_or_default();
                value["local"] = serde_json::json!(match record.state {
                    LocalState::Folder => "folder",
                    LocalState::File => "file",
                    LocalState::Stub => "stub",
                });
                value["local_path"] = serde_json::json!(paths.get(&record.id));
                value
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    for record in children {
        let local = paths.get(&record.id).map(String::as_str).unwrap_or_default();
        let shown = local.rsplit('/').next().unwrap_or(local);
        if !long {
            let slash = if record.state == LocalState::Folder { "/" } else { "" };
            println!("{shown}{slash}");
            continue;
        }
        let state = match record.state {
            LocalState::Folder => "folder",
            LocalState::File => "file",
            LocalState::Stub => "stub",
        };
        let size = record.entry.size.map_or_else(|| "-".to_owned(), |size| size.to_string());
        let kind = record.entry.content_type.clone().unwrap_or_else(|| "-".to_owned());
        let link = record.entry.link.clone().unwrap_or_else(|| "-".to_owned());
        println!("{state:<6}  {shown:<40}  {kind:<24}  {size:>10}  {link}");
    }
    Ok(())
}
