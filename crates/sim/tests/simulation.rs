//! The deterministic simulation, as the test suite runs it: seeded runs of the whole engine on
//! several devices, each operation checked (see `cpm_sim`).
//!
//! `CPM_SIM_OPS=N` sets how many operations in all (200,000 by default), `CPM_SIM_SEED=N` the
//! first seed (`random` for one from the clock); a failure prints its seed, and the shortest list
//! of operations that still fails as a test to paste into `tests/regressions.rs`.

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

#[test]
fn seeded_runs_lose_nothing_duplicate_nothing_and_converge() {
    let total = usize::try_from(setting("CPM_SIM_OPS", 200_000)).unwrap_or(200_000);
    let first = setting("CPM_SIM_SEED", 1);
    let runs = total.div_ceil(PER_RUN) as u64;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let started = Instant::now();
    let results: Vec<Result<cpm_sim::Stats, (u64, cpm_sim::Failure)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    let mut results = Vec::new();
                    let mut seed = first + worker;
                    while seed < first + runs {
                        match cpm_sim::run(seed, PER_RUN) {
                            Ok(stats) => results.push(Ok(stats)),
                            Err(failure) => {
                                results.push(Err((seed, failure)));
                                break;
                            }
                        }
                        seed += threads;
                    }
                    results
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("a worker")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total_stats = cpm_sim::Stats::default();
    for stats in results.iter().filter_map(|result| result.as_ref().ok()) {
        total_stats.operations += stats.operations;
        total_stats.syncs += stats.syncs;
        total_stats.crashes += stats.crashes;
        total_stats.conflicts += stats.conflicts;
        total_stats.skipped += stats.skipped;
    }
    eprintln!(
        "simulation: {} operations ({} syncs, {} crashes, {} conflict copies, {} entries skipped) in {elapsed:.1} s: {:.0} operations/s; CPM_SIM_SEED={first}",
        total_stats.operations,
        total_stats.syncs,
        total_stats.crashes,
        total_stats.conflicts,
        total_stats.skipped,
        total_stats.operations as f64 / elapsed
    );
    if let Some(Err((seed, failure))) = results.into_iter().find(Result::is_err) {
        eprintln!("seed {seed} failed after {} operations: {}", failure.ops.len(), failure.violation);
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let _ = std::fs::write(dir.join("simulation-trace.txt"), failure.trace.join("\n"));
        let budget = std::time::Duration::from_secs(setting("CPM_SIM_SHRINK_SECONDS", 120));
        let shrunk = cpm_sim::shrink(&failure, budget);
        eprintln!("shrunk to {} operations:\n{shrunk}", shrunk.ops.len());
        let test = cpm_sim::as_test(&format!("seed_{seed}"), &shrunk);
        eprintln!("{test}");
        let kept = dir.join("simulation-failure.rs");
        if std::fs::write(&kept, format!("{test}\n/*\n{shrunk}\n*/\n")).is_ok() {
            eprintln!("(also in {})", kept.display());
        }
        panic!("seed {seed}: {}", failure.violation);
    }
}
