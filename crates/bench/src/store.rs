//! The network store's targets: list 10,000 objects, changes since 0 over 100,000, bulk move of
//! 1,000, journal throughput, and 1 GiB streams against curl on nginx, with the server's RSS.

use crate::procs::{self, RssSampler};
use crate::{Row, Summary, print_report};
use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use cpm_client::Client;
use cpm_core::ObjectKind;
use cpm_proto::{CreateObjectRequest, MoveRequest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Args)]
pub struct StoreArgs {
    /// Objects in the store.
    #[arg(long, default_value_t = 100_000)]
    objects: usize,
    /// Objects in the folder that is listed.
    #[arg(long, default_value_t = 10_000)]
    listed: usize,
    /// Objects in each bulk move.
    #[arg(long, default_value_t = 1_000)]
    moved: usize,
    /// Size of each streamed payload, in MiB.
    #[arg(long, default_value_t = 1024)]
    stream_mib: u64,
    /// Runs of each metadata measure.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Runs of each stream measure (each uses a fresh payload, so nothing is deduplicated).
    #[arg(long, default_value_t = 3)]
    stream_runs: usize,
    /// Clients creating objects at once while the store is filled.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

const PASSWORD: &str = "bench-password";

fn millis(samples: &[f64]) -> String {
    let summary = Summary::of(samples);
    format!("{:.1} ms ({:.1}–{:.1})", summary.median, summary.min, summary.max)
}

/// Files under the blob directory: a move must not add or remove any.
fn blob_files(data: &Path) -> Result<usize> {
    let mut count = 0;
    for shard in std::fs::read_dir(data.join("blobs"))? {
        count += std::fs::read_dir(shard?.path())?.count();
    }
    Ok(count)
}

async fn metric(url: &str, name: &str) -> Result<f64> {
    let text = Command::new("curl").args(["-sS", &format!("{url}/metrics")]).output()?.stdout;
    let text = String::from_utf8_lossy(&text);
    Ok(text
        .lines()
        .find(|line| line.starts_with(&format!("{name} ")))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0))
}

/// Writes `mib` MiB of seeded pseudo-random bytes; returns its BLAKE3.
fn write_payload(path: &Path, mib: u64, seed: u64) -> Result<String> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut hasher = blake3::Hasher::new();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        hasher.update(&block);
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn run(args: StoreArgs) -> Result<()> {
    ensure!(args.listed <= args.objects && args.moved <= args.listed, "need moved <= listed <= objects");
    let cpm = procs::cpm_binary()?;
    let bench = procs::Bench::start(&cpm, "store", "bench", PASSWORD)?;
    measure(&args, &bench).await
}

async fn measure(args: &StoreArgs, bench: &procs::Bench) -> Result<()> {
    let (work, data, url, server) = (bench.work.as_path(), bench.data(), bench.url.clone(), &bench.server);
    let token = Client::new(&url, None)?.login("bench", PASSWORD).await?.token;
    let client = Client::new(&url, Some(token.clone()))?;
    let idle_rss = procs::rss_kib(server.pid()).unwrap_or(0);
    eprintln!("cpm-bench: filling a store with {} objects at {url}", args.objects);

    // Content: a few small payloads, shared by many objects (listing and the journal never read them).
    let seed_dir = work.join("seed");
    std::fs::create_dir_all(&seed_dir)?;
    let mut hashes = Vec::new();
    for i in 0..64 {
        let path = seed_dir.join(format!("seed-{i}.bin"));
        std::fs::write(&path, format!("seed payload {i}").repeat(40))?;
        hashes.push(client.upload_file(&path).await?.hash);
    }
    let listed = client.create_folder("/listed", true).await?;
    let mut folders = vec![listed.id.clone()];
    for shard in 1..args.objects.div_ceil(args.listed.max(1)) {
        folders.push(client.create_folder(&format!("/rest/part-{shard:03}"), true).await?.id);
    }
    let started = Instant::now();
    procs::create_objects(&client, &folders, args.listed.max(1), &hashes, args.objects, args.concurrency).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let single_rate = args.objects as f64 / fill_secs;
    eprintln!("cpm-bench: filled in {fill_secs:.1} s");

    let mut rows = Vec::new();
    let mut list_ms = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let entries = client.list_all(&listed.id).await?;
        list_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        ensure!(entries.len() == args.listed, "listed {} entries, expected {}", entries.len(), args.listed);
    }
    rows.push(Row {
        measure: format!("list a folder of {} objects (HTTP, pages of 1,000)", args.listed),
        target: "< 50 ms".into(),
        result: millis(&list_ms),
        met: Some(Summary::of(&list_ms).median < 50.0),
    });

    let mut changes_ms = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let (mut since, mut rows_seen) = (0, 0);
        loop {
            let page = client.changes(since, 1000).await?;
            rows_seen += page.changes.len();
            since = page.cursor;
            if !page.has_more {
                break;
            }
        }
        changes_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        ensure!(rows_seen >= args.objects, "the change feed gave {rows_seen} rows for {} objects", args.objects);
    }
    rows.push(Row {
        measure: format!("changes since 0, {} objects, pages of 1,000", args.objects),
        target: "< 1 s".into(),
        result: millis(&changes_ms),
        met: Some(Summary::of(&changes_ms).median < 1000.0),
    });

    let ids: Vec<String> = client
        .list_page(&listed.id, None, args.moved as u32)
        .await?
        .entries
        .into_iter()
        .map(|entry| entry.id)
        .collect();
    let aside = client.create_folder("/moved", true).await?;
    let (files_before, up_before, down_before) = (
        blob_files(&data)?,
        metric(&url, "cpm_upload_bytes_total").await?,
        metric(&url, "cpm_download_bytes_total").await?,
    );
    let mut move_ms = Vec::new();
    for run in 0..args.runs {
        let to = if run % 2 == 0 { &aside.id } else { &listed.id };
        let request = MoveRequest { ids: ids.clone(), to: Some(to.clone()), name: None, revive: false };
        let started = Instant::now();
        let moved = client.move_entries(&request).await?;
        move_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        ensure!(moved.entries.len() == ids.len(), "moved {} of {}", moved.entries.len(), ids.len());
    }
    let untouched = blob_files(&data)? == files_before
        && metric(&url, "cpm_upload_bytes_total").await? == up_before
        && metric(&url, "cpm_download_bytes_total").await? == down_before;
    rows.push(Row {
        measure: format!("bulk move of {} objects, one transaction (HTTP round trip)", args.moved),
        target: "< 100 ms, no blob read or written".into(),
        result: format!("{}; blobs untouched: {untouched}", millis(&move_ms)),
        met: Some(Summary::of(&move_ms).median < 100.0 && untouched),
    });
    let batched: Vec<f64> = move_ms.iter().map(|ms| args.moved as f64 / (ms / 1000.0)).collect();
    let batched_summary = Summary::of(&batched);
    rows.push(Row {
        measure: "journaled changes per second, batched (the bulk moves above)".into(),
        target: "≥ 20,000/s".into(),
        result: format!("{:.0}/s ({:.0}–{:.0})", batched_summary.median, batched_summary.min, batched_summary.max),
        met: Some(batched_summary.median >= 20_000.0),
    });
    rows.push(Row {
        measure: format!(
            "journaled changes per second, one fsynced transaction each ({} object creations over HTTP, {} clients)",
            args.objects, args.concurrency
        ),
        target: "(reported)".into(),
        result: format!("{single_rate:.0}/s (one run of {fill_secs:.1} s)"),
        met: None,
    });

    rows.extend(streams(args, &client, server, &url, &token, work).await?);
    rows.push(Row {
        measure: "server RSS when idle, at start".into(),
        target: "(reported)".into(),
        result: format!("{:.1} MiB", idle_rss as f64 / 1024.0),
        met: None,
    });
    print_report("cpm-bench store", &rows);
    println!(
        "\nMachine: {} cores; store: {} objects; cpm {} (release build).",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        args.objects,
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}

/// 1 GiB up and down: curl against cpm and curl against nginx on a static file, run after run.
async fn streams(
    args: &StoreArgs,
    client: &Client,
    server: &procs::Running,
    url: &str,
    token: &str,
    work: &Path,
) -> Result<Vec<Row>> {
    let files = work.join("static");
    std::fs::create_dir_all(&files)?;
    let port = free_port()?;
    let _nginx = procs::start_nginx(&work.join("nginx"), &files, port)?;
    let folder = client.create_folder("/streams", true).await?;
    let auth = format!("Authorization: Bearer {token}");
    let mib = args.stream_mib as f64;
    let (mut cpm_up, mut cpm_down, mut nginx_up, mut nginx_down) = (vec![], vec![], vec![], vec![]);
    let mut peak_rss = 0u64;
    for run in 0..args.stream_runs {
        let name = format!("payload-{run}.bin");
        let path: PathBuf = files.join(&name);
        eprintln!("cpm-bench: stream run {} of {}", run + 1, args.stream_runs);
        let hash = write_payload(&path, args.stream_mib, run as u64 + 1)?;
        let path_text = path.to_str().context("non-UTF-8 temp path")?;

        nginx_down.push(mib / procs::curl(&[&format!("http://127.0.0.1:{port}/{name}")])?);
        nginx_up.push(mib / procs::curl(&["-T", path_text, &format!("http://127.0.0.1:{port}/up/{name}")])?);
        std::fs::remove_file(files.join("up").join(&name))?;

        let sampler = RssSampler::start(server.pid());
        let up = procs::curl(&["-T", path_text, "-H", &auth, &format!("{url}/v1/blobs/{hash}")]);
        let entry = client
            .create_object(&CreateObjectRequest {
                folder_id: folder.id.clone(),
                name: name.clone(),
                kind: ObjectKind::File,
                hash,
                content_type: None,
                replace: false,
                base_modseq: None,
                modified: None,
                unless_held: false,
            })
            .await?;
        let link = entry.link.context("no link")?;
        let down = procs::curl(&["-H", &auth, &link]);
        peak_rss = peak_rss.max(sampler.finish());
        cpm_up.push(mib / up?);
        cpm_down.push(mib / down?);
        std::fs::remove_file(&path)?;
    }
    let rate = |samples: &[f64]| {
        let summary = Summary::of(samples);
        format!("{:.0} MiB/s ({:.0}–{:.0})", summary.median, summary.min, summary.max)
    };
    let ratio = |ours: &[f64], theirs: &[f64]| Summary::of(ours).median / Summary::of(theirs).median;
    if cpm_up.is_empty() {
        bail!("no stream runs");
    }
    let (up_ratio, down_ratio) = (ratio(&cpm_up, &nginx_up), ratio(&cpm_down, &nginx_down));
    Ok(vec![
        Row {
            measure: format!("{} MiB upload: curl → cpm (hash verified, fsynced)", args.stream_mib),
            target: "≥ 80% of curl → nginx PUT".into(),
            result: format!("{}; nginx {}; ratio {:.2}", rate(&cpm_up), rate(&nginx_up), up_ratio),
            met: Some(up_ratio >= 0.8),
        },
        Row {
            measure: format!("{} MiB download: curl ← cpm link", args.stream_mib),
            target: "≥ 80% of curl ← nginx static file".into(),
            result: format!("{}; nginx {}; ratio {:.2}", rate(&cpm_down), rate(&nginx_down), down_ratio),
            met: Some(down_ratio >= 0.8),
        },
        Row {
            measure: "server peak RSS during the streams".into(),
            target: "< 64 MiB".into(),
            result: format!("{:.1} MiB", peak_rss as f64 / 1024.0),
            met: Some(peak_rss < 64 * 1024),
        },
    ])
}
