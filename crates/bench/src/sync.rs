//! The sync agent's targets: initial sync against `cp -r` of the same tree, the sync after a
//! bulk move, a 100,000-object stub device, and syncs with nothing to do.

use crate::procs;
use crate::{Row, Summary, print_report};
use anyhow::{Context, Result, ensure};
use clap::Args;
use cpm_client::Client;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Args)]
pub struct SyncArgs {
    /// Files in the tree a download device syncs.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Total size of that tree, in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Files moved before the sync after a move.
    #[arg(long, default_value_t = 1_000)]
    moved: usize,
    /// Objects in the store a stub device syncs.
    #[arg(long, default_value_t = 100_000)]
    stubs: usize,
    /// Runs of each measure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const PASSWORD: &str = "bench-password";
const PER_FOLDER: usize = 100;

fn seconds(samples: &[f64]) -> String {
    let summary = Summary::of(samples);
    if summary.median < 1.0 {
        format!("{:.0} ms ({:.0}–{:.0})", summary.median * 1000.0, summary.min * 1000.0, summary.max * 1000.0)
    } else {
        format!("{:.2} s ({:.2}–{:.2})", summary.median, summary.min, summary.max)
    }
}

/// Writes the tree: `folders × PER_FOLDER` files of seeded bytes, `bytes_each` long.
fn write_tree(root: &Path, files: usize, bytes_each: usize) -> Result<()> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i / PER_FOLDER));
        std::fs::create_dir_all(&dir)?;
        let mut bytes = vec![0u8; bytes_each];
        for chunk in bytes.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let word = state.to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        std::fs::File::create(dir.join(format!("f{i:05}.bin")))?.write_all(&bytes)?;
    }
    Ok(())
}

pub async fn run(args: SyncArgs) -> Result<()> {
    let cpm = procs::cpm_binary()?;
    let bench = procs::Bench::start(&cpm, "sync", "bench", PASSWORD)?;
    measure(&args, &bench).await
}

async fn measure(args: &SyncArgs, bench: &procs::Bench) -> Result<()> {
    let (work, url) = (bench.work.as_path(), bench.url.clone());
    bench.register("pda", "pda")?;

    let tree: PathBuf = work.join("tree");
    let bytes_each = usize::try_from(args.mib * 1024 * 1024 / args.files as u64).unwrap_or(1);
    eprintln!("cpm-bench: writing {} files of {bytes_each} bytes", args.files);
    write_tree(&tree, args.files, bytes_each)?;
    let folders = args.files.div_ceil(PER_FOLDER);
    eprintln!("cpm-bench: putting them in the store");
    for folder in 0..folders {
        let dir = tree.join(format!("d{folder:03}"));
        let mut put: Vec<String> = vec!["-C".into(), "pda".into(), "put".into()];
        let mut names: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        put.extend(names);
        put.push(format!("/data/d{folder:03}/"));
        bench.cpm(&put.iter().map(String::as_str).collect::<Vec<_>>())?;
    }

    let mut rows = Vec::new();
    let (mut cp, mut initial) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let copy = work.join(format!("copy-{run}"));
        procs::flush_file_systems()?;
        let started = Instant::now();
        let status = Command::new("cp").arg("-r").arg(&tree).arg(&copy).status()?;
        cp.push(started.elapsed().as_secs_f64());
        ensure!(status.success(), "cp -r failed");
        let device = format!("pc{run}");
        bench.register(&device, "pc")?;
        let (time, report) = bench.sync(&device)?;
        ensure!(report["downloaded"].as_u64() == Some(args.files as u64), "initial sync: {report}");
        initial.push(time);
    }
    let ratio = Summary::of(&initial).median / Summary::of(&cp).median;
    rows.push(Row {
        measure: format!("initial sync, {} files / {} MiB, empty download device", args.files, args.mib),
        target: "≤ 1.5× cp -r".into(),
        result: format!("{}; cp -r {}; ratio {ratio:.2}", seconds(&initial), seconds(&cp)),
        met: Some(ratio <= 1.5),
    });

    let mut noop = Vec::new();
    for _ in 0..args.runs.max(5) {
        let (time, report) = bench.sync("pc0")?;
        ensure!(report["downloaded"] == 0 && report["uploaded"] == 0, "no-op sync did something: {report}");
        noop.push(time);
    }
    rows.push(Row {
        measure: format!("sync with nothing to do, {}-file download device", args.files),
        target: "< 300 ms".into(),
        result: seconds(&noop),
        met: Some(Summary::of(&noop).median < 0.3),
    });

    let moved_folders = args.moved.div_ceil(PER_FOLDER);
    let mut after_move = Vec::new();
    let mut moved_bytes = 0;
    bench.cpm(&["-C", "pda", "mkdir", "/moved"])?;
    for run in 0..args.runs {
        if run % 2 == 0 {
            let mut mv: Vec<String> = vec!["-C".into(), "pda".into(), "mv".into()];
            mv.extend((0..moved_folders).map(|folder| format!("/data/d{folder:03}/*")));
            mv.push("/moved/".into());
            bench.cpm(&mv.iter().map(String::as_str).collect::<Vec<_>>())?;
        } else {
            // Back where they came from, folder by folder (file i lives in folder i / 100).
            for folder in 0..moved_folders {
                bench.cpm(&["-C", "pda", "mv", &format!("/moved/f{folder:03}*"), &format!("/data/d{folder:03}/")])?;
            }
        }
        let (time, report) = bench.sync("pc0")?;
        moved_bytes += report["bytes_downloaded"].as_u64().context("bytes")?;
        ensure!(report["renamed"].as_u64() == Some(args.moved as u64), "after the move: {report}");
        after_move.push(time);
    }
    rows.push(Row {
        measure: format!("sync after moving {} files to another folder", args.moved),
        target: "< 1 s, 0 content bytes".into(),
        result: format!("{}; {moved_bytes} content bytes downloaded", seconds(&after_move)),
        met: Some(Summary::of(&after_move).median < 1.0 && moved_bytes == 0),
    });

    // A 100,000-object store, synced by a stub device.
    eprintln!("cpm-bench: adding {} objects for the stub device", args.stubs);
    let token = Client::new(&url, None)?.login("bench", PASSWORD).await?.token;
    let client = Client::new(&url, Some(token))?;
    let seed = work.join("seed.bin");
    std::fs::write(&seed, b"one small payload shared by the stub objects")?;
    let hash = client.upload_file(&seed).await?.hash;
    let mut folders = Vec::new();
    for part in 0..args.stubs.div_ceil(1000) {
        folders.push(client.create_folder(&format!("/many/part-{part:03}"), true).await?.id);
    }
    procs::create_objects(&client, &folders, 1000, &[hash], args.stubs, 8).await?;
    let total_objects = args.stubs + args.files;
    let mut stub_initial = Vec::new();
    let mut feed_bytes = 0usize;
    for run in 0..args.runs {
        let device = format!("phone{run}");
        bench.register(&device, "phone")?;
        bench.cpm(&[
            "-C",
            &device,
            "prefs",
            "set",
            "--content",
            "stub",
            "--fields",
            "name,size,content_type,modified",
        ])?;
        if run == 0 {
            feed_bytes = feed_size(&url, &work.join(&device)).await?;
        }
        let (time, report) = bench.sync(&device)?;
        ensure!(report["stubs_written"].as_u64() == Some(total_objects as u64), "stub sync: {report}");
        stub_initial.push(time);
    }
    let per_object = feed_bytes as f64 / total_objects as f64;
    rows.push(Row {
        measure: format!("initial sync, {total_objects}-object store, stub device"),
        target: "< 5 s, < 300 bytes per object".into(),
        result: format!("{}; {per_object:.0} bytes per object on the wire (gzip)", seconds(&stub_initial)),
        met: Some(Summary::of(&stub_initial).median < 5.0 && per_object < 300.0),
    });
    let mut stub_noop = Vec::new();
    for _ in 0..args.runs.max(5) {
        let (time, report) = bench.sync("phone0")?;
        ensure!(report["stubs_written"] == 0, "no-op stub sync did something: {report}");
        stub_noop.push(time);
    }
    rows.push(Row {
        measure: format!("sync with nothing to do, {total_objects}-object stub device"),
        target: "< 100 ms".into(),
        result: seconds(&stub_noop),
        met: Some(Summary::of(&stub_noop).median < 0.1),
    });
    // Nothing is removed before the timed runs are over: for minutes after a mass removal, ext4
    // searches past the freed inodes whenever it creates a file, which would slow the next run.
    print_report("cpm-bench sync", &rows);
    println!(
        "\nMachine: {} cores. Times are whole `cpm sync` processes (start-up included).",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    Ok(())
}

/// Bytes on the wire of the feed a device reads for its first sync: each page's body as sent
/// (compressed), counted by curl.
async fn feed_size(url: &str, device: &Path) -> Result<usize> {
    let token = std::fs::read_to_string(device.join(".cpm/token"))?.trim().to_owned();
    let client = Client::new(url, Some(token.clone()))?;
    let (mut since, mut bytes) = (0, 0);
    loop {
        let output = Command::new("curl")
            .args(["-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}", "-H", "Accept-Encoding: gzip"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("{url}/v1/sync?since={since}&limit=1000"))
            .output()?;
        ensure!(output.status.success(), "curl failed: {}", String::from_utf8_lossy(&output.stderr));
        bytes += String::from_utf8_lossy(&output.stdout).trim().parse::<usize>()?;
        let page =
            client.sync_changes(&cpm_proto::ChangesQuery { since, limit: Some(1000), ..Default::default() }).await?;
        since = page.cursor;
        if !page.has_more {
            return Ok(bytes);
        }
    }
}
