//! Automatic and periodic sync: how fast a change reaches a phone with its agent running while a
//! crowd of other devices is connected, what an idle connected device costs the server, and how
//! fast a schedule shared by many devices alerts them all.
//!
//! The measured phone is a real `cpm agent` process; the crowd are light in-process WebSocket
//! clients holding the same hint channel an agent holds, as devices of other users (four each).

use crate::procs::{self, Running};
use crate::{Row, Summary, print_report, quantile};
use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use cpm_client::Client;
use cpm_store::{SqliteStore, Store, StoreSettings, secret};
use futures_util::StreamExt;
use jiff::{SignedDuration, Timestamp};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Args)]
pub struct HintsArgs {
    /// Connected devices (the measured phone included) for each latency measure.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    crowds: Vec<usize>,
    /// Moves timed at each crowd size.
    #[arg(long, default_value_t = 100)]
    moves: usize,
    /// Devices of the phone's own user connected, with automatic sync, in the last measure.
    #[arg(long, default_value_t = 100)]
    own: usize,
    /// Devices sharing one scheduled instant.
    #[arg(long, default_value_t = 10_000)]
    scheduled: usize,
}

const PASSWORD: &str = "bench-password";
const DEVICES_PER_USER: usize = 4;
const SCHEDULE: &str = r#"{"schedule":"daily 24:00","zone":"Europe/Paris"}"#;
const PICTURES: &str = r#"{"mode":"partial","filter":"type ~ \"image/*\"","auto":true}"#;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Adds `count` devices (of other users, [`DEVICES_PER_USER`] each) straight to the store before
/// its server starts; returns their tokens. With `scheduled`, each syncs daily at 24:00.
fn add_crowd(data: &Path, count: usize, scheduled: bool) -> Result<Vec<String>> {
    let store = SqliteStore::open(data, Arc::new(cpm_core::SystemClock), StoreSettings::default())?;
    let password = secret::hash_password(PASSWORD)?;
    let tag = if scheduled { "night" } else { "crowd" };
    let mut tokens = Vec::with_capacity(count);
    let mut user = 0;
    for i in 0..count {
        if i % DEVICES_PER_USER == 0 {
            user = store.create_user(&format!("{tag}-{}", i / DEVICES_PER_USER), &password)?;
        }
        let token = format!("{tag}-token-{i}");
        let name = cpm_core::Name::parse(&format!("device-{i}")).map_err(anyhow::Error::msg)?;
        let device = store.register_device(user, &name, "pc", Some("Europe/Paris"), &secret::token_hash(&token))?;
        if scheduled {
            store.set_device_profile(user, &device.id, SCHEDULE)?;
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// Adds `count` devices to `user`'s own, each holding only pictures and syncing automatically.
fn add_own_devices(data: &Path, user: &str, count: usize) -> Result<Vec<String>> {
    let store = SqliteStore::open(data, Arc::new(cpm_core::SystemClock), StoreSettings::default())?;
    let (user, _) = store.credentials(user)?;
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        let token = format!("own-token-{i}");
        let name = cpm_core::Name::parse(&format!("frame-{i}")).map_err(anyhow::Error::msg)?;
        let device = store.register_device(user, &name, "other", Some("Europe/Paris"), &secret::token_hash(&token))?;
        store.set_device_profile(user, &device.id, PICTURES)?;
        tokens.push(token);
    }
    Ok(tokens)
}

/// Opens a device's hint channel.
async fn connect(url: &str, token: &str) -> Result<Socket> {
    let mut request = format!("{}/v1/events?since=0", url.replacen("http", "ws", 1)).into_client_request()?;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// Opens many hint channels, a few at a time.
async fn connect_all(url: &str, tokens: &[String]) -> Result<Vec<Socket>> {
    let mut sockets = Vec::with_capacity(tokens.len());
    for batch in tokens.chunks(64) {
        let opened = futures_util::future::join_all(batch.iter().map(|token| connect(url, token))).await;
        for socket in opened {
            sockets.push(socket?);
        }
    }
    Ok(sockets)
}

fn millis(samples: &[f64]) -> String {
    let summary = Summary::of(samples);
    format!("{:.1} ms ({:.1}–{:.1})", summary.median * 1000.0, summary.min * 1000.0, summary.max * 1000.0)
}

pub async fn run(args: HintsArgs) -> Result<()> {
    let cpm = procs::cpm_binary()?;
    let mut rows = Vec::new();
    latency(&cpm, &args, &mut rows).await?;
    firing(&cpm, &args, &mut rows).await?;
    print_report("Automatic and periodic sync", &rows);
    Ok(())
}

/// A change on the PDA to the phone's local storage updated, with crowds connected; and the
/// server's memory per idle connection.
async fn latency(cpm: &Path, args: &HintsArgs, rows: &mut Vec<Row>) -> Result<()> {
    let largest = args.crowds.iter().copied().max().unwrap_or(1);
    let work = std::env::temp_dir().join(format!("cpm-bench-hints-{}", std::process::id()));
    let _cleanup = procs::RemoveOnDrop(work.clone());
    let data = work.join("data");
    eprintln!("cpm-bench: adding {largest} crowd devices");
    let crowd_tokens = add_crowd(&data, largest, false)?;
    let bench = procs::Bench::on(cpm, &work, "alice", PASSWORD, &[])?;
    bench.register("pda", "pda")?;
    bench.register("phone", "phone")?;
    for song in ["song1.mp3", "song2.mp3"] {
        std::fs::write(work.join(song), song.repeat(1000))?;
    }
    bench.cpm(&["-C", "pda", "put", "song1.mp3", "song2.mp3", "/content/"])?;
    bench.cpm(&["-C", "pda", "mkdir", "/content/favourite song"])?;
    bench.cpm(&[
        "-C",
        "phone",
        "prefs",
        "set",
        "--include",
        "/content/**",
        "--type",
        "audio/*",
        "--content",
        "stub",
        "--auto",
        "on",
    ])?;
    let pda = Client::new(&bench.url, Some(std::fs::read_to_string(work.join("pda/.cpm/token"))?.trim().to_owned()))?;
    let song = pda.resolve("/content/song1.mp3").await?.id;
    let (content, favourites) = (pda.resolve("/content").await?.id, pda.resolve("/content/favourite song").await?.id);

    let mut agent = Running {
        child: Command::new(cpm)
            .args(["-C", "phone", "agent", "--json"])
            .current_dir(&work)
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the phone's agent")?,
    };
    let stdout = agent.child.stdout.take().context("no agent output")?;
    let (reports, synced) = mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        for _line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = reports.send(Instant::now());
        }
    });
    synced.recv_timeout(Duration::from_secs(30)).context("the phone's agent did not sync")?;

    let server_pid = bench.server.pid();
    let mut crowd: Vec<Socket> = Vec::new();
    let mut baseline = None;
    let mut mover = Mover {
        pda,
        song,
        content,
        favourites,
        in_content: work.join("phone/content/song1.mp3.cpmlink"),
        in_favourites: work.join("phone/content/favourite song/song1.mp3.cpmlink"),
        made: 0,
    };
    for &size in &args.crowds {
        let wanted = size.saturating_sub(1);
        if crowd.len() < wanted {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let before = procs::rss_kib(server_pid).unwrap_or(0);
            baseline.get_or_insert(before);
            crowd.extend(connect_all(&bench.url, &crowd_tokens[crowd.len()..wanted]).await?);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        crowd.truncate(wanted);
        let samples = mover.time(args.moves, &synced).await?;
        rows.push(latency_row(&format!("{size} devices connected"), &samples));
    }
    if let (Some(before), false) = (baseline, crowd.is_empty()) {
        rows.push(memory_row(before, procs::rss_kib(server_pid).unwrap_or(0), crowd.len()));
    }
    drop(crowd);

    // The hardest crowd: the same user's devices, with automatic sync, each looking for news in
    // its own view (pictures only) after every change.
    if args.own > 0 {
        let tokens = add_own_devices(&data, "alice", args.own)?;
        let own = connect_all(&bench.url, &tokens).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let samples = mover.time(args.moves, &synced).await?;
        rows.push(latency_row(&format!("{} more devices of the same user connected", own.len()), &samples));
    }
    drop(agent);
    Ok(())
}

/// One instant shared by many devices: from the instant on the store's clock to each device's
/// alert.
async fn firing(cpm: &Path, args: &HintsArgs, rows: &mut Vec<Row>) -> Result<()> {
    let work = std::env::temp_dir().join(format!("cpm-bench-night-{}", std::process::id()));
    let _cleanup = procs::RemoveOnDrop(work.clone());
    let data = work.join("data");
    eprintln!("cpm-bench: adding {} devices that sync daily at 24:00", args.scheduled);
    let tokens = add_crowd(&data, args.scheduled, true)?;
    let midnight: Timestamp = "2026-11-27T00:00:00+01:00".parse()?;
    // Enough time before midnight to connect every device.
    let lead = SignedDuration::from_secs(20 + (args.scheduled / 1000) as i64 * 2);
    let start = (midnight - lead).to_string();
    let (server, url) = procs::start_cpm(cpm, &data, "127.0.0.1:0", &["--clock-start", &start])?;
    let before = procs::rss_kib(server.pid()).unwrap_or(0);
    eprintln!("cpm-bench: connecting {} devices", tokens.len());
    let sockets = connect_all(&url, &tokens).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = procs::rss_kib(server.pid()).unwrap_or(0);
    let health = Client::new(&url, None)?.health().await?;
    let asked = Instant::now();
    let now = health.time.context("the server does not tell its time")?;
    if now >= midnight {
        bail!("connecting {} devices took past 24:00 on the store's clock", tokens.len());
    }
    let until = midnight.duration_since(now);
    let midnight_here = asked + Duration::try_from(until)?;
    let mut waiting = tokio::task::JoinSet::new();
    for mut socket in sockets {
        waiting.spawn(async move {
            let message = tokio::time::timeout(Duration::from_secs(120), socket.next()).await;
            ensure!(matches!(message, Ok(Some(Ok(_)))), "a device was not alerted");
            Ok(Instant::now())
        });
    }
    let mut alerted = Vec::with_capacity(tokens.len());
    while let Some(done) = waiting.join_next().await {
        alerted.push(done??.saturating_duration_since(midnight_here).as_secs_f64());
    }
    let last = alerted.iter().copied().fold(0.0, f64::max);
    rows.push(Row {
        measure: format!("{} devices scheduled at 24:00: 24:00 → every one alerted", tokens.len()),
        target: "< 2 s".into(),
        result: format!("last after {:.0} ms (median {:.0} ms)", last * 1000.0, quantile(&alerted, 0.5) * 1000.0),
        met: Some(last < 2.0),
    });
    rows.push(memory_row(before, after, tokens.len()));
    drop(server);
    Ok(())
}

/// The server's memory per idle connected device, from its RSS before and after they connected.
fn memory_row(before: u64, after: u64, connected: usize) -> Row {
    let each = (after.saturating_sub(before) as f64) / connected as f64;
    Row {
        measure: format!("server memory per idle connected device ({connected} connected)"),
        target: "< 32 KiB".into(),
        result: format!("{each:.1} KiB (RSS {before} → {after} KiB)"),
        met: Some(each < 32.0),
    }
}

/// Moves a song back and forth on the PDA and times each move until the phone's placeholder is
/// at its new place.
struct Mover {
    pda: Client,
    song: String,
    content: String,
    favourites: String,
    in_content: std::path::PathBuf,
    in_favourites: std::path::PathBuf,
    made: usize,
}

impl Mover {
    async fn time(&mut self, moves: usize, synced: &mpsc::Receiver<Instant>) -> Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(moves);
        for _ in 0..moves {
            while synced.try_recv().is_ok() {}
            let into_favourites = self.made.is_multiple_of(2);
            self.made += 1;
            let to = if into_favourites { &self.favourites } else { &self.content };
            let request = cpm_proto::MoveRequest {
                ids: vec![self.song.clone()],
                to: Some(to.clone()),
                name: None,
                revive: false,
            };
            self.pda.move_entries(&request).await?;
            let moved = Instant::now();
            let stub = if into_favourites { &self.in_favourites } else { &self.in_content };
            while !stub.exists() {
                ensure!(moved.elapsed() < Duration::from_secs(10), "the phone did not follow a move");
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            samples.push(moved.elapsed().as_secs_f64());
            // The agent's report closes the sync; the next move starts after it.
            synced.recv_timeout(Duration::from_secs(10)).context("the phone's sync did not end")?;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        Ok(samples)
    }
}

fn latency_row(crowd: &str, samples: &[f64]) -> Row {
    let p99 = quantile(samples, 0.99);
    eprintln!("cpm-bench: {crowd}: {}", millis(samples));
    Row {
        measure: format!("change on the PDA → phone's storage updated, {crowd}: p50 / p99"),
        target: "p99 < 100 ms".into(),
        result: format!("{:.1} ms / {:.1} ms ({} moves)", quantile(samples, 0.5) * 1000.0, p99 * 1000.0, samples.len()),
        met: Some(p99 < 0.1),
    }
}
