//! A deterministic simulation of the whole sync engine, in the manner of Dropbox's Nucleus
//! testing: the real planner and executor of several devices, each on a simulated file system
//! that loses unflushed writes when the power goes, against the real store on a temporary SQLite
//! and the real service layer, called in-process, on a manual clock. A seeded generator
//! interleaves changes in the store and on the devices, syncs (parked between their calls to
//! the store, two at once, killed, crashed at any file operation), faults and clock jumps, and
//! [`check`] says after every step and once all is quiet whether anything was lost, duplicated
//! or left apart. A failing run is shrunk to a short list of operations and printed as a test.

mod check;
pub mod generate;
pub mod ledger;
pub mod ops;
mod remote;
pub mod simfs;
mod world;

pub use ops::{FaultOn, Op};
pub use world::{Broken, Stats, Violation, World};

/// How often a run stops changing things, lets every device settle, and checks it converged.
const SETTLE_EVERY: usize = 200;

/// A run that broke an invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    pub violation: Violation,
    /// The operations up to and including the one that broke it.
    pub ops: Vec<Op>,
    /// What happened, for a person reading the failure.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} (after {} operations)", self.violation, self.ops.len())?;
        for line in self.trace.iter().rev().take(150).collect::<Vec<_>>().into_iter().rev() {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Silences the panics the simulation makes on purpose (its crashes); any other still prints.
fn quiet_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&simfs::CRASH) {
                previous(info);
            }
        }));
    });
}

/// Runs `ops` on a fresh world, checking after every one and settling every so often.
fn play(ops: impl IntoIterator<Item = Op>, next: impl FnMut(&World) -> Option<Op>) -> Result<Stats, Failure> {
    play_traced(ops, next, &mut Vec::new())
}

/// With `CPM_SIM_DEBUG` set, the engine's debug log (its plans, what it could not place) goes
/// into the trace of the run, beside the operations.
fn engine_log() -> Option<(tracing::subscriber::DefaultGuard, std::sync::Arc<std::sync::Mutex<Vec<u8>>>)> {
    std::env::var_os("CPM_SIM_DEBUG")?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&log);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(if std::env::var_os("CPM_SIM_TRACE").is_some() {
            tracing::Level::TRACE
        } else {
            tracing::Level::DEBUG
        })
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .with_writer(move || Log(std::sync::Arc::clone(&sink)))
        .finish();
    Some((tracing::subscriber::set_default(subscriber), log))
}

struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn play_traced(
    ops: impl IntoIterator<Item = Op>,
    mut next: impl FnMut(&World) -> Option<Op>,
    kept: &mut Vec<String>,
) -> Result<Stats, Failure> {
    quiet_crashes();
    let logging = engine_log();
    let mut world = World::new().map_err(|violation| Failure { violation, ops: Vec::new(), trace: Vec::new() })?;
    let mut done: Vec<Op> = Vec::new();
    let mut given = ops.into_iter();
    let fail = |world: &World, done: &[Op], violation: Violation| Failure {
        violation,
        ops: done.to_vec(),
        trace: world.trace.clone(),
    };
    let drain = |world: &mut World| {
        if let Some((_, log)) = &logging {
            let text = std::mem::take(&mut *log.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            world.trace.extend(
                String::from_utf8_lossy(&text)
                    .lines()
                    .filter(|line| line.contains("DEBUG") || line.contains("TRACE"))
                    .map(|line| format!("      {line}")),
            );
        }
    };
    let mut generated = 0;
    loop {
        let op = match given.next() {
            Some(op) => op,
            None if generated > 0 && generated % SETTLE_EVERY == 0 && done.last() != Some(&Op::Settle) => Op::Settle,
            None => match next(&world) {
                Some(op) => {
                    generated += 1;
                    op
                }
                None => break,
            },
        };
        done.push(op.clone());
        let checked = world.apply(&op).and_then(|()| world.check_nothing_lost());
        drain(&mut world);
        if logging.is_some() {
            let snapshot = world.snapshot();
            world.trace.extend(snapshot.into_iter().map(|line| format!("      = {line}")));
        }
        if let Err(violation) = checked {
            return Err(fail(&world, &done, violation));
        }
    }
    let settled = world.settle().and_then(|()| world.check_quiet());
    drain(&mut world);
    kept.clone_from(&world.trace);
    if let Err(violation) = settled {
        return Err(fail(&world, &done, violation));
    }
    Ok(world.stats)
}

/// A seeded run of `count` generated operations, with what happened in it.
pub fn run_traced(seed: u64, count: usize) -> (Result<Stats, Failure>, Vec<String>) {
    let mut generator = generate::Generator::new(seed);
    let mut left = count;
    let mut trace = Vec::new();
    let result = play_traced(
        [],
        |world| {
            left = left.checked_sub(1)?;
            Some(generator.next(world))
        },
        &mut trace,
    );
    (result, trace)
}

/// A seeded run of `count` generated operations.
pub fn run(seed: u64, count: usize) -> Result<Stats, Failure> {
    let mut generator = generate::Generator::new(seed);
    let mut left = count;
    play([], |world| {
        left = left.checked_sub(1)?;
        Some(generator.next(world))
    })
}

/// Replays a list of operations (a shrunk failure, say).
pub fn replay(ops: &[Op]) -> Result<Stats, Failure> {
    play(ops.to_vec(), |_| None)
}

/// A class of operations the shrinker tries to drop at once.
type OpClass = Box<dyn Fn(&Op) -> bool>;

/// The shortest list found that still fails the same way: chunks are cut away while the failure
/// stays, for at most `budget`.
pub fn shrink(failure: &Failure, budget: std::time::Duration) -> Failure {
    let started = std::time::Instant::now();
    let mut best = failure.clone();
    let still_fails = |candidate: &[Op]| match replay(candidate) {
        Err(smaller) if smaller.violation.broken == failure.violation.broken => Some(smaller),
        _ => None,
    };
    // Whole classes first, a device's operations or every operation of one kind: in a long run
    // most of them have nothing to do with the failure, and one replay drops them all.
    let kind = |op: &Op| std::mem::discriminant(op);
    let mut classes: Vec<OpClass> = Vec::new();
    for device in 0..world::DEVICES.len() {
        classes.push(Box::new(move |op: &Op| op.device() == Some(device)));
    }
    let mut kinds: Vec<std::mem::Discriminant<Op>> = Vec::new();
    for op in &failure.ops {
        if !kinds.contains(&kind(op)) {
            kinds.push(kind(op));
        }
    }
    for each in kinds {
        classes.push(Box::new(move |op: &Op| kind(op) == each));
    }
    for class in &classes {
        if started.elapsed() > budget {
            return best;
        }
        let candidate: Vec<Op> = best.ops.iter().filter(|op| !class(op)).cloned().collect();
        if candidate.len() < best.ops.len()
            && let Some(smaller) = still_fails(&candidate)
        {
            best = smaller;
        }
    }
    let mut chunk = (best.ops.len() / 2).max(1);
    while chunk >= 1 {
        let mut start = 0;
        while start < best.ops.len() {
            if started.elapsed() > budget {
                return best;
            }
            let mut candidate = best.ops.clone();
            let end = (start + chunk).min(candidate.len());
            candidate.drain(start..end);
            match still_fails(&candidate) {
                Some(smaller) => best = smaller,
                None => start += chunk,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk /= 2;
    }
    best
}

/// A failure as a test to paste into `tests/regressions.rs`.
pub fn as_test(name: &str, failure: &Failure) -> String {
    let ops: Vec<String> = failure.ops.iter().map(|op| format!("        {},", op.rust())).collect();
    format!("/// {}\n#[test]\nfn {name}() {{\n    holds(&[\n{}\n    ]);\n}}\n", failure.violation, ops.join("\n"))
}
