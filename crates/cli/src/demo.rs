//! `cpm demo`: use case 7.1 played end to end with real processes, for a newcomer to watch.
//!
//! A store on a simulated clock that reaches 24:00 during the demo, and three devices of one
//! user: a PC (full, download, daily at 24:00, automatic sync off), a PDA used online, and a
//! phone (partial: audio files under /content, as stubs with a few details, automatic sync on).
//! Every command it narrates is the `cpm` command a user would type, run as its own process.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use jiff::{SignedDuration, Timestamp, Zoned};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const ZONE: &str = "Europe/Paris";
const PASSWORD: &str = "demo password";
/// How long before midnight the store's clock starts, in simulated seconds.
const LEAD: i64 = 40;
/// The longest any device is waited for.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct DemoArgs {
    /// Play in this directory and keep it afterwards [default: a temporary one, removed].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How many times as fast as real time the store's clock runs.
    #[arg(long, default_value_t = 4.0)]
    speed: f64,
}

/// A running `cpm agent`, and the sync reports it prints.
struct Agent {
    _child: Child,
    reports: mpsc::UnboundedReceiver<(Instant, Value)>,
}

impl Agent {
    /// The next sync report, with when it came.
    async fn next(&mut self, device: &str) -> Result<(Instant, Value)> {
        tokio::time::timeout(PATIENCE, self.reports.recv())
            .await
            .map_err(|_| anyhow!("the {device} agent did not sync within {PATIENCE:?}"))?
            .ok_or_else(|| anyhow!("the {device} agent stopped"))
    }

    /// Forgets reports already printed.
    fn drain(&mut self) {
        while self.reports.try_recv().is_ok() {}
    }
}

struct Demo {
    cpm: PathBuf,
    dir: PathBuf,
    url: String,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let (dir, temporary) = match args.dir {
        Some(dir) => (dir, false),
        None => (std::env::temp_dir().join(format!("cpm-demo-{}", std::process::id())), true),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} is not empty: the demo needs a directory of its own", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let played = play(&dir, args.speed).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("\nThe devices' directories stay in {} (try cpm -C {}/phone status).", dir.display(), dir.display());
    }
    played
}

async fn play(dir: &Path, speed: f64) -> Result<()> {
    let cpm = std::env::current_exe().context("cannot find the cpm program")?;
    let today = Zoned::now().with_time_zone(jiff::tz::TimeZone::get(ZONE)?).date();
    let midnight = today.tomorrow()?.to_zoned(jiff::tz::TimeZone::get(ZONE)?)?.timestamp();
    let start = midnight - SignedDuration::from_secs(LEAD);

    println!("cpm demo: use case 7.1 of OMA CPM, with real processes in {}\n", dir.display());
    println!("Alice keeps her messages and content files in her network store. She owns a PC that backs");
    println!("everything up every night at 24:00, a PDA she uses online, and a phone that holds only her");
    println!("music, as placeholders that link to the store. She lives in {ZONE}.\n");
    println!("Setting up");
    let mut demo = Demo { cpm, dir: dir.to_owned(), url: String::new() };
    demo.quiet(&["admin", "--data", "store", "user", "add", "alice"]).await?;
    println!("  $ cpm admin --data store user add alice");
    // Kept until the end, so that the store stops with the demo.
    let server = demo.serve(start, speed).await?;
    println!(
        "  $ cpm serve --data store --clock-start {} --clock-speed {speed}\n    the store listens on {}; its clock \
         starts {LEAD} s before midnight and runs {speed}× real time",
        start.to_zoned(jiff::tz::TimeZone::get(ZONE)?).strftime("%Y-%m-%dT%H:%M:%S%:z"),
        demo.url
    );
    for (name, class) in [("pc", "pc"), ("pda", "pda"), ("phone", "phone")] {
        demo.quiet(&[
            "device", "register", "--server", &demo.url, "--user", "alice", "--name", name, "--class", class, "--dir",
            name, "--tz", ZONE,
        ])
        .await?;
    }
    println!("  $ cpm device register --name pc|pda|phone --class pc|pda|phone --tz {ZONE} ...");
    demo.step(&[
        "-C",
        "pc",
        "prefs",
        "set",
        "--mode",
        "full",
        "--content",
        "download",
        "--daily",
        "24:00",
        "--auto",
        "off",
    ])
    .await?;
    demo.step(&[
        "-C",
        "phone",
        "prefs",
        "set",
        "--mode",
        "partial",
        "--include",
        "/content/**",
        "--type",
        "audio/*",
        "--fields",
        "name,size,content_type,modified",
        "--content",
        "stub",
        "--auto",
        "on",
    ])
    .await?;

    let files = [("song1.mp3", 3 << 20), ("song2.mp3", 4 << 20), ("photo1.jpg", 2 << 20), ("holiday.mp4", 12 << 20)];
    for (name, size) in files {
        std::fs::write(dir.join(name), pseudo_random(name, size))?;
    }
    std::fs::write(dir.join("hello.eml"), HELLO)?;
    demo.step(&["-C", "pda", "put", "song1.mp3", "song2.mp3", "photo1.jpg", "holiday.mp4", "/content/"]).await?;
    demo.step(&["-C", "pda", "put", "--message", "hello.eml", "/inbox/"]).await?;
    let mut pc = demo.agent("pc").await?;
    let mut phone = demo.agent("phone").await?;
    println!("  $ cpm -C pc agent &      # syncs now, then when its schedule comes round");
    println!("  $ cpm -C phone agent &   # syncs now, then whenever the store changes in its view");
    let (_, first) = pc.next("pc").await?;
    println!("    the PC backed up the store: {} files, {} bytes", first["downloaded"], first["bytes_downloaded"]);
    let (_, first) = phone.next("phone").await?;
    println!("    the phone wrote {} placeholders", first["stubs_written"]);

    println!("\nSteps 1-3. On her PDA, Alice browses the store and lists her content files, with their details");
    demo.step(&["-C", "pda", "ls", "-l", "/content"]).await?;

    println!("\nStep 4. She makes a new folder, \"favourite song\"");
    demo.step(&["-C", "pda", "mkdir", "/content/favourite song"]).await?;

    println!("\nStep 5. She moves her songs into it; the list is refreshed");
    phone.drain();
    let moved_at = Instant::now();
    demo.step(&["-C", "pda", "mv", "/content/*.mp3", "/content/favourite song/"]).await?;
    demo.step(&["-C", "pda", "ls", "-l", "/content"]).await?;
    demo.step(&["-C", "pda", "ls", "-l", "/content/favourite song"]).await?;

    println!("\nStep 6. Her phone follows at once: the store hints its agent, which syncs");
    // It may sync for the new folder first; the move is the sync that moves something.
    let (synced_at, report) = loop {
        let (at, report) = phone.next("phone").await?;
        if report["renamed"] != 0 {
            break (at, report);
        }
    };
    println!(
        "    the phone synced {} ms after the move: {} moved here, {} bytes downloaded",
        synced_at.duration_since(moved_at).as_millis(),
        report["renamed"],
        report["bytes_downloaded"]
    );
    demo.step(&["-C", "phone", "ls", "--local", "-l", "/content/favourite song"]).await?;
    let stub = std::fs::read_to_string(dir.join("phone/content/favourite song/song1.mp3.cpmlink"))?;
    println!("    phone/content/favourite song/song1.mp3.cpmlink, a placeholder with the details the phone keeps:");
    for line in stub.lines() {
        println!("      {line}");
    }
    println!("    The PC has not synced yet: it waits for 24:00");
    demo.step(&["-C", "pc", "ls", "--local", "/content"]).await?;

    let now = demo.server_time().await?;
    if now >= midnight {
        bail!("the store's clock passed 24:00 before step 6 ended: this machine is slow; try cpm demo --speed 1");
    }
    println!("\nStep 7. At 24:00 in {ZONE} the store tells the PC to sync");
    let mut shown = now;
    let (_, report) = loop {
        tokio::select! {
            report = pc.next("pc") => break report?,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                let now = demo.server_time().await?;
                if now.duration_since(shown) >= SignedDuration::from_secs(5) || now >= midnight {
                    println!("    the store's clock: {}", clock_face(now)?);
                    shown = now;
                }
            }
        }
    };
    let now = demo.server_time().await?;
    println!(
        "    at {} the PC synced: {} moved here, {} bytes downloaded",
        clock_face(now)?,
        report["renamed"],
        report["bytes_downloaded"]
    );
    demo.step(&["-C", "pc", "ls", "--local", "-l", "/content/favourite song"]).await?;

    println!("\nAfterwards");
    let pda = demo.quiet(&["-C", "pda", "ls", "/content/favourite song"]).await?;
    let pc_files = demo.quiet(&["-C", "pc", "ls", "--local", "/content/favourite song"]).await?;
    let phone_files = demo.quiet(&["-C", "phone", "ls", "--local", "/content/favourite song"]).await?;
    let songs = |listing: &str| listing.contains("song1.mp3") && listing.contains("song2.mp3");
    check(songs(&pda), "the store holds the songs in /content/favourite song")?;
    check(songs(&pc_files), "the PC's backup has them there too, moved locally without downloading them again")?;
    check(songs(&phone_files), "the phone's placeholders are there, with their links")?;
    check(report["bytes_downloaded"] == 0, "no content crossed the network for the move")?;
    demo.step(&["-C", "phone", "fetch", "/content/favourite song/song1.mp3"]).await?;
    let fetched = std::fs::read(dir.join("phone/content/favourite song/song1.mp3"))?;
    check(fetched == pseudo_random("song1.mp3", 3 << 20), "the phone fetches a song on demand through its link")?;
    println!("\nStopping the agents and the store.");
    drop((pc, phone, server));
    Ok(())
}

fn check(holds: bool, what: &str) -> Result<()> {
    if holds {
        println!("  ✓ {what}");
        Ok(())
    } else {
        Err(anyhow!("the demo went wrong: it is not so that {what}"))
    }
}

fn clock_face(at: Timestamp) -> Result<String> {
    Ok(at.to_zoned(jiff::tz::TimeZone::get(ZONE)?).strftime("%H:%M:%S").to_string())
}

impl Demo {
    /// Starts `cpm serve` on a free loopback port and a simulated clock, and learns its URL.
    async fn serve(&mut self, start: Timestamp, speed: f64) -> Result<Child> {
        let start = start.to_string();
        let speed = speed.to_string();
        let args =
            ["serve", "--data", "store", "--listen", "127.0.0.1:0", "--clock-start", &start, "--clock-speed", &speed];
        let mut server = self
            .command(&args)
            .env("CPM_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start cpm serve")?;
        let stdout = server.stdout.take().ok_or_else(|| anyhow!("cpm serve has no output"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await?;
        line.split_whitespace()
            .find(|word| word.starts_with("http://"))
            .ok_or_else(|| anyhow!("cpm serve did not start: {line:?}"))?
            .clone_into(&mut self.url);
        Ok(server)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.cpm);
        command.args(args).current_dir(&self.dir).env("CPM_PASSWORD", PASSWORD).kill_on_drop(true);
        command
    }

    /// Runs `cpm ARGS` and returns what it printed.
    async fn quiet(&self, args: &[&str]) -> Result<String> {
        run_output(self.command(args), args).await
    }

    /// Runs `cpm ARGS`, showing the command and what it printed.
    async fn step(&self, args: &[&str]) -> Result<()> {
        let output = self.quiet(args).await?;
        let shown: Vec<String> = args
            .iter()
            .map(|arg| if arg.contains([' ', '*']) { format!("\"{arg}\"") } else { (*arg).to_owned() })
            .collect();
        println!("  $ cpm {}", shown.join(" "));
        for line in output.lines() {
            println!("    {line}");
        }
        Ok(())
    }

    async fn agent(&self, device: &str) -> Result<Agent> {
        let mut child = self
            .command(&["-C", device, "agent", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the {device} agent"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("the {device} agent has no output"))?;
        let (sender, reports) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(report) = serde_json::from_str::<Value>(&line) {
                    let _ = sender.send((Instant::now(), report));
                }
            }
        });
        Ok(Agent { _child: child, reports })
    }

    async fn server_time(&self) -> Result<Timestamp> {
        let health = cpm_client::Client::new(&self.url, None)?.health().await?;
        health.time.ok_or_else(|| anyhow!("the store does not tell its time"))
    }
}

async fn run_output(mut command: Command, args: &[&str]) -> Result<String> {
    let output = command.stdin(Stdio::null()).output().await.context("cannot run cpm")?;
    if !output.status.success() {
        bail!("cpm {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Bytes that stand in for a file's content: the same for the same name, and incompressible.
fn pseudo_random(name: &str, size: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size + 32);
    let mut block = *blake3::hash(name.as_bytes()).as_bytes();
    while bytes.len() < size {
        bytes.extend_from_slice(&block);
        block = *blake3::hash(&block).as_bytes();
    }
    bytes.truncate(size);
    bytes
}

const HELLO: &str = "From: Bob <bob@example.com>\r\nTo: Alice <alice@example.com>\r\nSubject: Concert tonight\r\n\
Date: Wed, 25 Nov 2026 18:00:00 +0100\r\nMessage-ID: <concert@example.com>\r\n\r\nSee you at eight.\r\n";
