//! `cpm-bench peers`: cpm against the tools people use today, side by side in one run, on the
//! same seeded data: `cp -r`, rclone, unison, and mbsync from Dovecot. Writes
//! `bench/results/REPORT.md` and `bench/results/chart.png`.

mod chart;
mod data;
mod files;
mod mail;
mod proxy;

use crate::Summary;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Args)]
pub struct PeersArgs {
    /// Files in the content tree.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Size of the content tree, in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Messages in the mailbox.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Runs of each measure (at least 5 for the report's medians).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Runs of rclone over WebDAV, which takes minutes for each copy.
    #[arg(long, default_value_t = 1)]
    webdav_runs: usize,
    /// The seed of the data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where the report and chart go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

pub const PASSWORD: &str = "bench-password";

/// cpm's server behind a counting proxy, with the user alice. Object links name the proxy, so
/// that payloads are counted too.
pub struct ProxiedCpm {
    work: PathBuf,
    _server: crate::procs::Running,
    pub proxy: proxy::Proxy,
    /// The store as measured devices reach it: through the proxy.
    pub url: String,
    /// The store reached directly, by devices whose traffic is not measured.
    pub direct_url: String,
    devices: std::cell::Cell<usize>,
}

impl ProxiedCpm {
    /// Starts it with its data under `work`.
    pub async fn start(cpm: &Path, work: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let proxy = proxy::Proxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let settings = work.join("operator.toml");
        std::fs::write(&settings, format!("[server]\npublic_url = \"http://{}\"\n", proxy.address))?;
        let data = work.join("cpm-data");
        let added = Command::new(cpm)
            .args(["admin", "--data"])
            .arg(&data)
            .args(["user", "add", "alice"])
            .env("CPM_PASSWORD", PASSWORD)
            .output()?;
        if !added.status.success() {
            bail!("cannot add the user: {}", String::from_utf8_lossy(&added.stderr));
        }
        let listen = format!("127.0.0.1:{port}");
        let config = settings.to_str().context("utf-8 path")?;
        let (server, direct_url) = crate::procs::start_cpm(cpm, &data, &listen, &["--config", config])?;
        let url = format!("http://{}", proxy.address);
        Ok(Self { work: work.to_owned(), _server: server, proxy, url, direct_url, devices: Default::default() })
    }

    /// Runs `cpm ARGS` in the work directory as alice; what it printed.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(crate::procs::cpm_binary()?)
            .args(args)
            .current_dir(&self.work)
            .env("CPM_PASSWORD", PASSWORD)
            .output()?;
        if !output.status.success() {
            bail!("cpm {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Registers device `name` of `class` (in the work directory's folder of that name) with the
    /// store at `server`.
    pub fn register(&self, name: &str, class: &str, server: &str) -> Result<PathBuf> {
        let args = [
            "device", "register", "--server", server, "--user", "alice", "--name", name, "--class", class, "--dir",
            name,
        ];
        self.run(&args)?;
        Ok(self.work.join(name))
    }

    /// A new measured device of `class`, named after it, with `profile` set; not synced yet.
    pub fn new_device(&self, class: &str, profile: &[&str]) -> Result<PathBuf> {
        let number = self.devices.get();
        self.devices.set(number + 1);
        let name = format!("{class}-{number}");
        let dir = self.register(&name, class, &self.url)?;
        if !profile.is_empty() {
            self.run(&[&["-C", name.as_str(), "prefs", "set"], profile].concat())?;
        }
        Ok(dir)
    }

    /// Times `cpm -C DEVICE sync --quiet`, with the bytes it moved through the proxy.
    pub fn sync(&self, device: &Path) -> Result<Sample> {
        self.proxy.take();
        let mut command = Command::new(crate::procs::cpm_binary()?);
        command.arg("-C").arg(device).args(["sync", "--quiet"]);
        let seconds = timed(&mut command)?;
        Ok(Sample { seconds, bytes: self.proxy.take() })
    }
}

/// One timed run: wall time and bytes on the wire (both ways, at the tool's proxy).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub seconds: f64,
    pub bytes: u64,
}

/// The runs of one tool in one case.
pub struct Measure {
    pub case: u8,
    pub tool: &'static str,
    pub samples: Vec<Sample>,
}

impl Measure {
    pub fn time(&self) -> Summary {
        Summary::of(&self.samples.iter().map(|sample| sample.seconds).collect::<Vec<_>>())
    }

    pub fn bytes(&self) -> f64 {
        Summary::of(&self.samples.iter().map(|sample| sample.bytes as f64).collect::<Vec<_>>()).median
    }
}

/// Runs a command to its end; its wall time in seconds. Fails when it does.
pub fn timed(command: &mut Command) -> Result<f64> {
    let started = Instant::now();
    let output = command.output().context("cannot run a benchmarked tool")?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(seconds)
}

const PEERS: [(&str, &str); 5] = [
    ("rclone", "rclone"),
    ("unison", "unison"),
    ("dovecot", "dovecot-imapd"),
    ("mbsync", "isync"),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core"),
];

/// Installs the peers that are missing, from Debian's packages.
fn install_peers() -> Result<()> {
    let missing: Vec<&str> = PEERS
        .iter()
        .filter(|(program, _)| {
            if program.starts_with('/') {
                !Path::new(program).exists()
            } else {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {program}")])
                    .output()
                    .is_ok_and(|out| out.status.success())
            }
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("cpm-bench: installing {}", missing.join(" "));
    let updated = Command::new("apt-get").args(["update", "-qq"]).status()?;
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !(updated.success() && installed.success()) {
        bail!("cannot install {} (run as root, or install them by hand)", missing.join(" "));
    }
    Ok(())
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|out| {
            let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_owned()
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|line| line.starts_with("model name")).map(|line| line.to_owned()))
        .and_then(|line| line.split_once(':').map(|(_, model)| model.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| info.lines().next().map(|line| line.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or_else(|| "unknown".into(), |kib| format!("{} GiB", kib / 1024 / 1024));
    format!("{cores} cores ({cpu}), {memory} of memory, {}", first_line("uname", &["-sr"]))
}

pub async fn run(args: PeersArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    install_peers()?;
    let cpm = crate::procs::cpm_binary()?;
    let work = std::env::temp_dir().join(format!("cpm-bench-peers-{}", std::process::id()));
    let _cleanup = crate::procs::RemoveOnDrop(work.clone());
    std::fs::create_dir_all(&work)?;
    let started = Instant::now();

    eprintln!("cpm-bench: writing {} files, about {} MiB", args.files, args.mib);
    let tree_bytes = data::content_tree(&work.join("tree"), args.files, args.mib << 20, args.seed)?;
    let stores = files::Stores::start(&cpm, &work, &work.join("tree")).await?;
    let mut measures = files::run(&stores, args.runs, args.webdav_runs).await?;
    drop(stores);

    let mailbox = mail::Mailbox::start(&cpm, &work.join("mail"), args.messages, args.seed).await?;
    measures.extend(mailbox.run(args.runs).await?);
    let messages_bytes = mailbox.bytes;
    drop(mailbox);

    std::fs::create_dir_all(&args.out)?;
    let report = report(&measures, &args, tree_bytes, messages_bytes, started.elapsed().as_secs_f64());
    std::fs::write(args.out.join("REPORT.md"), &report)?;
    chart::draw(&measures, &args.out.join("chart.png"))?;
    println!("{report}");
    eprintln!("cpm-bench: wrote {} and chart.png", args.out.join("REPORT.md").display());
    Ok(())
}

fn find<'a>(measures: &'a [Measure], case: u8, tool: &str) -> Option<&'a Measure> {
    measures.iter().find(|measure| measure.case == case && measure.tool == tool)
}

/// The fastest peer's median time in a case (not cpm, not `cp -r`).
fn fastest_peer(measures: &[Measure], case: u8) -> Option<&Measure> {
    measures
        .iter()
        .filter(|measure| {
            measure.case == case
                && measure.tool != "cpm"
                && !measure.tool.starts_with("cpm ")
                && measure.tool != "cp -r"
        })
        .min_by(|a, b| a.time().median.total_cmp(&b.time().median))
}

fn mib(bytes: f64) -> String {
    if bytes < 1024.0 * 1024.0 {
        format!("{:.0} KiB", bytes / 1024.0)
    } else {
        format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
    }
}

fn seconds(summary: Summary) -> String {
    if summary.median < 1.0 {
        format!("{:.0} ms ({:.0}–{:.0})", summary.median * 1000.0, summary.min * 1000.0, summary.max * 1000.0)
    } else {
        format!("{:.2} s ({:.2}–{:.2})", summary.median, summary.min, summary.max)
    }
}

const CASES: [(u8, &str); 5] = [
    (1, "Initial full copy of the content tree to an empty device"),
    (2, "Move 1,000 files into a new folder on the store side, then sync"),
    (3, "Nothing changed, sync again"),
    (4, "Messages to a fresh device"),
    (5, "One new message, then sync"),
];

fn report(measures: &[Measure], args: &PeersArgs, tree_bytes: u64, message_bytes: u64, took: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# cpm against the tools people use today\n");
    let _ = writeln!(
        out,
        "Measured by `cargo run --release -p cpm-bench -- peers` ({} files / {} MiB, {} messages, {} runs, seed \
         {}; the defaults are 10000 / 1024 / 10000 / 5 / 7), in one run of {:.0} s. Times are medians of {} runs \
         (rclone over WebDAV: {}) with min–max, each a whole process of the tool; bytes are what crossed the \
         tool's counting proxy, both ways.\n",
        args.files, args.mib, args.messages, args.runs, args.seed, took, args.runs, args.webdav_runs
    );
    let _ = writeln!(out, "Machine: {}.\n", machine());
    let _ = writeln!(
        out,
        "Data: {} files holding {} (seeded: documents of a few KB, photos and songs of a few MB, a few large videos); {} messages holding {} (a fifth with an attachment).\n",
        args.files,
        mib(tree_bytes as f64),
        args.messages,
        mib(message_bytes as f64)
    );
    let _ = writeln!(out, "![chart](chart.png)\n");
    for (case, title) in CASES {
        let rows: Vec<&Measure> = measures.iter().filter(|measure| measure.case == case).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## Case {case}. {title}\n");
        let cpm = rows.iter().find(|measure| measure.tool.starts_with("cpm")).map(|measure| measure.time().median);
        let _ = writeln!(out, "| tool | time, median (min–max) | bytes on the wire | time ÷ cpm's |");
        let _ = writeln!(out, "|---|---|---|---|");
        for measure in &rows {
            let ratio = cpm.map_or_else(|| "—".to_owned(), |cpm| format!("{:.2}", measure.time().median / cpm));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {ratio} |",
                measure.tool,
                seconds(measure.time()),
                mib(measure.bytes())
            );
        }
        let _ = writeln!(out);
        for line in goals(measures, case) {
            let _ = writeln!(out, "- {line}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Reading these numbers\n");
    let _ = writeln!(out, "{READING}");
    if let Some(cp) = find(measures, 1, "cp -r") {
        let _ = writeln!(out, "In this run `cp -r` took {}.\n", seconds(cp.time()));
    }
    let faster: Vec<String> = measures
        .iter()
        .filter(|measure| !measure.tool.starts_with("cpm"))
        .filter_map(|peer| {
            let cpm = measures.iter().find(|cpm| cpm.case == peer.case && cpm.tool.starts_with("cpm"))?;
            (peer.time().median < cpm.time().median).then(|| {
                format!(
                    "case {}: {} {} against {} {}",
                    peer.case,
                    peer.tool,
                    seconds(peer.time()),
                    cpm.tool,
                    seconds(cpm.time())
                )
            })
        })
        .collect();
    if !faster.is_empty() {
        let _ = writeln!(out, "Where a tool was faster than cpm in this run:\n");
        for line in faster {
            let _ = writeln!(out, "- {line}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Versions and exact commands\n");
    for (program, args) in [
        ("cpm", &["--version"][..]),
        ("rclone", &["version"][..]),
        ("unison", &["-version"][..]),
        ("mbsync", &["-v"][..]),
        ("dovecot", &["--version"][..]),
    ] {
        let path = if program == "cpm" {
            crate::procs::cpm_binary().map(|p| p.display().to_string()).unwrap_or_default()
        } else {
            program.to_owned()
        };
        let _ = writeln!(out, "- {program}: {}", first_line(&path, args));
    }
    let _ = writeln!(out, "\n{}", COMMANDS);
    out
}

/// The goals of a case, each said met or not met.
fn goals(measures: &[Measure], case: u8) -> Vec<String> {
    let verdict = |met: bool| if met { "**met**" } else { "**not met**" };
    let mut lines = Vec::new();
    let peer = fastest_peer(measures, case);
    match case {
        1..=3 => {
            let Some(cpm) = find(measures, case, "cpm") else { return lines };
            let cpm_time = cpm.time().median;
            if let Some(peer) = peer {
                let (bound, goal) = match case {
                    1 => (0.7, "≤ 0.7× the fastest peer"),
                    2 => (0.3, "≤ 0.3× the fastest peer's time"),
                    _ => (0.5, "≤ 0.5× the fastest peer"),
                };
                let ratio = cpm_time / peer.time().median;
                lines.push(format!("goal {goal}: cpm {ratio:.2}× {} — {}", peer.tool, verdict(ratio <= bound)));
            }
            if case == 1
                && let Some(cp) = find(measures, 1, "cp -r")
            {
                let ratio = cpm_time / cp.time().median;
                lines.push(format!("goal ≤ 1.5× `cp -r`: cpm {ratio:.2}× — {}", verdict(ratio <= 1.5)));
            }
            if case == 2 {
                lines.push(format!(
                    "goal zero content bytes: cpm moved {} — {}",
                    mib(cpm.bytes()),
                    verdict(cpm.bytes() < 1024.0 * 1024.0)
                ));
            }
        }
        4 => {
            let (Some(stub), Some(download), Some(mbsync)) =
                (find(measures, 4, "cpm stub"), find(measures, 4, "cpm download"), find(measures, 4, "mbsync"))
            else {
                return lines;
            };
            let time = stub.time().median / mbsync.time().median;
            let bytes = stub.bytes() / mbsync.bytes().max(1.0);
            lines.push(format!(
                "goal stub ≤ 0.2× mbsync's time and bytes: {time:.2}× time, {bytes:.2}× bytes — {}",
                verdict(time <= 0.2 && bytes <= 0.2)
            ));
            let ratio = download.time().median / mbsync.time().median;
            lines.push(format!("goal download ≤ 0.7× mbsync's time: {ratio:.2}× — {}", verdict(ratio <= 0.7)));
        }
        _ => {
            if let Some(cpm) = find(measures, 5, "cpm agent") {
                let median = cpm.time().median;
                lines.push(format!("goal below 100 ms: {:.0} ms — {}", median * 1000.0, verdict(median < 0.1)));
            }
        }
    }
    lines
}

const READING: &str = "Every tool ran on the same data, in the same run, one after the other in each round, \
each from a flushed file system. This machine is shared and its file system slows down after mass \
deletions (a `perf` profile of a copy shows ext4's inode allocator checking recently freed inodes, \
`recently_deleted` under `ext4_create`), so that even `cp -r` varies widely from one round to the \
next: compare medians within a run, not across runs. `cp -r` copies on the local disk with no \
network and no durability; cpm flushes what it downloads before recording it. In case 5 `mbsync` \
and `cpm stub sync` are whole processes started by hand; `cpm agent` is the time from the end of the \
upload to the file in the device's directory, with the agent running.\n";

const COMMANDS: &str = "Commands (each server behind its own counting proxy on loopback):

- cpm: `cpm serve --config operator.toml` (public_url = the proxy), devices registered with
  `cpm device register`, then `cpm -C DEVICE sync --quiet`; messages `cpm put --message`, the stub
  device `cpm prefs set --kind message --content stub --fields name,size,from,subject,date`.
  Case 5: `cpm -C DEVICE agent` with `--auto on`, time from the new message's upload to its file
  in the device's directory.
- rclone: `rclone serve http --read-only DIR` and `rclone serve webdav --read-only DIR`, restarted
  after the store-side move (they keep listings for five minutes, and a sync right after a change
  would see nothing; with `--dir-cache-time 0s` instead, a sync with nothing to do takes 14 s); tuned:
  `rclone sync :http: DEST --http-url URL --transfers 16 --checkers 16 --track-renames
  --track-renames-strategy modtime,leaf`; defaults: `rclone sync :http: DEST --http-url URL` and
  `rclone sync :webdav: DEST --webdav-url URL`.
- unison: `unison -socket PORT -listen 127.0.0.1` in the store's parent; client `unison DEST
  socket://PROXY/served -batch -auto -ui text -force socket://PROXY/served -fastcheck true
  -confirmbigdel=false -times -perms 0` (fastcheck is also its default on Unix).
- `cp -r SRC DEST`, the floor on this machine (no network).
- Dovecot 2.3 (imap on loopback, maildir, no TLS) and `mbsync -a` (isync, `Sync Pull`, maildir),
  the messages delivered into Dovecot's maildir beforehand.
";
