//! The deterministic simulation, as the test suite runs it: seeded runs of the whole engine on
//! several devices, each operation checked (see `cpm_sim`).
//!
//! `CPM_SIM_OPS=N` sets how many operations in all (200,000 by default), `CPM_SIM_SEED=N` the
//! first seed (`random` for one from the clock); a failure prints its seed, and the shortest list
//! of operations that still fails as a test to paste into `tests/regressions.rs`.
//!
//! Seeds the engine still fails are listed in `known-failures.txt`, each with what breaks. They
//! are run like every other: the test fails when a seed not listed fails (a regression), and when
//! a listed seed passes (the list must shrink with each fix, never hide one). `CPM_SIM_STRICT=1`
//! holds every seed to passing.

use std::collections::BTreeMap;
use std::time::Instant;

const PER_RUN: usize = 2_000;

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name).ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(default, |since| u64::from(since.subsec_nanos()) ^ since.as_secs()),
        Some(raw) => raw.parse().unwrap_or(default),
        None => default,
    }
}

/// The seeds known to fail, with what breaks in each (`seed: Kind: note`).
fn known_failures() -> BTreeMap<u64, String> {
    if std::env::var("CPM_SIM_STRICT").is_ok_and(|strict| strict == "1") {
        return BTreeMap::new();
    }
    include_str!("known-failures.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (seed, what) = line.split_once(':')?;
            Some((seed.trim().parse().ok()?, what.trim().to_owned()))
        })
        .collect()
}

#[test]
fn seeded_runs_lose_nothing_duplicate_nothing_and_converge() {
    let total = usize::try_from(setting("CPM_SIM_OPS", 200_000)).unwrap_or(200_000);
    let first = setting("CPM_SIM_SEED", 1);
    let runs = total.div_ceil(PER_RUN) as u64;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let known = known_failures();
    let started = Instant::now();
    // Each worker takes the next seed not yet taken: runs differ in length (a failing one stops
    // early), and a fixed share would leave one core idle at the end.
    let next = std::sync::atomic::AtomicU64::new(first);
    let mut results: Vec<(u64, Result<cpm_sim::Stats, cpm_sim::Failure>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (known, next) = (&known, &next);
                scope.spawn(move || {
                    let mut results = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seed >= first + runs {
                            break;
                        }
                        let result = cpm_sim::run(seed, PER_RUN);
                        let unexpected = result.is_err() && !known.contains_key(&seed);
                        results.push((seed, result));
                        if unexpected {
                            break;
                        }
                    }
                    results
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("a worker")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    results.sort_by_key(|(seed, _)| *seed);
    let mut total_stats = cpm_sim::Stats::default();
    for stats in results.iter().filter_map(|(_, result)| result.as_ref().ok()) {
        total_stats.operations += stats.operations;
        total_stats.syncs += stats.syncs;
        total_stats.crashes += stats.crashes;
        total_stats.conflicts += stats.conflicts;
        total_stats.skipped += stats.skipped;
    }
    let known_failed: Vec<String> =
        results
            .iter()
            .filter_map(|(seed, result)| {
                result.as_ref().err().filter(|_| known.contains_key(seed)).map(|failure| {
                    format!("  seed {seed}, after {} operations: {}", failure.ops.len(), failure.violation)
                })
            })
            .collect();
    // Runs that failed count the operations they got through.
    total_stats.operations += results
        .iter()
        .filter_map(|(_, result)| result.as_ref().err())
        .map(|failure| failure.ops.len() as u64)
        .sum::<u64>();
    eprintln!(
        "simulation: {} seeds passed, {} operations ({} syncs, {} crashes, {} conflict copies, {} entries skipped) in {elapsed:.1} s: {:.0} operations/s; CPM_SIM_SEED={first}",
        results.iter().filter(|(_, result)| result.is_ok()).count(),
        total_stats.operations,
        total_stats.syncs,
        total_stats.crashes,
        total_stats.conflicts,
        total_stats.skipped,
        total_stats.operations as f64 / elapsed
    );
    if !known_failed.is_empty() {
        eprintln!("{} seeds failed as known-failures.txt says:\n{}", known_failed.len(), known_failed.join("\n"));
    }
    let fixed: Vec<u64> = results
        .iter()
        .filter(|(seed, result)| result.is_ok() && known.contains_key(seed))
        .map(|(seed, _)| *seed)
        .collect();
    if let Some((seed, Err(failure))) =
        results.into_iter().find(|(seed, result)| result.is_err() && !known.contains_key(seed))
    {
        report(seed, &failure);
        panic!("seed {seed}: {}", failure.violation);
    }
    assert!(fixed.is_empty(), "seeds {fixed:?} pass now: take them out of tests/known-failures.txt");
}

/// Prints a failure, shrunk, as a test to paste.
fn report(seed: u64, failure: &cpm_sim::Failure) {
    eprintln!("seed {seed} failed after {} operations: {}", failure.ops.len(), failure.violation);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::write(dir.join("simulation-trace.txt"), failure.trace.join("\n"));
    let budget = std::time::Duration::from_secs(setting("CPM_SIM_SHRINK_SECONDS", 120));
    let shrunk = cpm_sim::shrink(failure, budget);
    eprintln!("shrunk to {} operations:\n{shrunk}", shrunk.ops.len());
    let test = cpm_sim::as_test(&format!("seed_{seed}"), &shrunk);
    eprintln!("{test}");
    let kept = dir.join("simulation-failure.rs");
    if std::fs::write(&kept, format!("{test}\n/*\n{shrunk}\n*/\n")).is_ok() {
        eprintln!("(also in {})", kept.display());
    }
}
