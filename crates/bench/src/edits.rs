//! Local edits while the agent runs: how long from a file written on the PC to its object in the
//! store (the agent sees the change, uploads it and records it), for new files and for new
//! versions of files the store has.
//!
//! The PC is a real `cpm agent` process against a real `cpm serve`; the store is watched through
//! the API, as another device would see it.

use crate::procs::{self, Running};
use crate::{Row, print_report, quantile};
use anyhow::{Context, Result, bail};
use clap::Args;
use cpm_client::Client;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct EditsArgs {
    /// Edits timed of each kind (new files, new versions).
    #[arg(long, default_value_t = 100)]
    edits: usize,
    /// Pause between edits, so that each is seen on its own (milliseconds).
    #[arg(long, default_value_t = 150)]
    pause_ms: u64,
}

const PASSWORD: &str = "bench-password";
/// Longest an edit may take before the bench gives up on the agent.
const GIVE_UP: Duration = Duration::from_secs(30);

pub async fn run(args: EditsArgs) -> Result<()> {
    let cpm = procs::cpm_binary()?;
    let bench = procs::Bench::start(&cpm, "edits", "alice", PASSWORD)?;
    bench.register("pc", "pc")?;
    let pc = bench.work.join("pc");
    let token = std::fs::read_to_string(pc.join(".cpm/token"))?;
    let store = Client::new(&bench.url, Some(token.trim().to_owned()))?;

    let mut agent = Running {
        child: Command::new(&cpm)
            .args(["-C", "pc", "agent", "--json"])
            .current_dir(&bench.work)
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the PC's agent")?,
    };
    let stdout = agent.child.stdout.take().context("no agent output")?;
    let (reports, synced) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for _line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = reports.send(());
        }
    });
    synced.recv_timeout(GIVE_UP).context("the PC's agent did not sync")?;

    let pause = Duration::from_millis(args.pause_ms);
    let mut created = Vec::with_capacity(args.edits);
    for i in 0..args.edits {
        tokio::time::sleep(pause).await;
        let name = format!("note-{i}.txt");
        std::fs::write(pc.join(&name), format!("note {i}\n"))?;
        let started = Instant::now();
        until(&store, &name, |_| true, started).await?;
        created.push(started.elapsed().as_secs_f64());
    }
    let mut edited = Vec::with_capacity(args.edits);
    for i in 0..args.edits {
        tokio::time::sleep(pause).await;
        let name = format!("note-{i}.txt");
        let text = format!("note {i}, edited\n");
        let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
        std::fs::write(pc.join(&name), &text)?;
        let started = Instant::now();
        until(&store, &name, |entry| entry.hash.as_deref() == Some(hash.as_str()), started).await?;
        edited.push(started.elapsed().as_secs_f64());
    }
    drop(agent);
    let rows = [
        row("new file on the PC → object in the store", &created),
        row("edit on the PC → new version in the store", &edited),
    ];
    print_report("Local edits while the agent runs", &rows);
    Ok(())
}

/// Waits until `/name` in the store satisfies `done`.
async fn until(store: &Client, name: &str, done: impl Fn(&cpm_proto::Entry) -> bool, started: Instant) -> Result<()> {
    loop {
        if let Ok(entry) = store.resolve(&format!("/{name}")).await
            && done(&entry)
        {
            return Ok(());
        }
        if started.elapsed() > GIVE_UP {
            bail!("{name} did not reach the store within {GIVE_UP:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn row(measure: &str, samples: &[f64]) -> Row {
    let (p50, p99) = (quantile(samples, 0.5), quantile(samples, 0.99));
    eprintln!("cpm-bench: {measure}: p50 {:.1} ms, p99 {:.1} ms", p50 * 1000.0, p99 * 1000.0);
    Row {
        measure: format!("{measure}: p50 / p99"),
        target: "p50 < 300 ms, p99 < 2 s".into(),
        result: format!("{:.1} ms / {:.1} ms ({} edits)", p50 * 1000.0, p99 * 1000.0, samples.len()),
        met: Some(p50 < 0.3 && p99 < 2.0),
    }
}
