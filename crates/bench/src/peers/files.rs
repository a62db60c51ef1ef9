//! Cases 1–3, the content tree: an initial full copy to an empty device, the sync after 1,000
//! files moved on the store side, and a sync with nothing to do; for cpm, rclone (over HTTP and
//! WebDAV), unison and `cp -r`.

use super::proxy::Proxy;
use super::{Measure, ProxiedCpm, Sample, timed};
use crate::procs::{self, Running};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One way of keeping a device's copy of the content tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Cp,
    Cpm,
    /// rclone over `rclone serve http`, as its experts run it (more transfers, renames tracked).
    RcloneHttp,
    /// The same with rclone's defaults.
    RcloneHttpDefaults,
    /// rclone over `rclone serve webdav`, defaults.
    RcloneWebdav,
    Unison,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Cp => "cp -r",
            Tool::Cpm => "cpm",
            Tool::RcloneHttp => "rclone http (tuned)",
            Tool::RcloneHttpDefaults => "rclone http (defaults)",
            Tool::RcloneWebdav => "rclone webdav (defaults)",
            Tool::Unison => "unison",
        }
    }
}

/// Expert flags for rclone: parallel transfers and checks, and renames found by name and size
/// (the http backend has no hashes).
const RCLONE_TUNED: [&str; 7] =
    ["--transfers", "16", "--checkers", "16", "--track-renames", "--track-renames-strategy", "modtime,leaf"];

/// Starts `rclone serve KIND` (http, webdav) over `served`, read-only, on `port`.
fn serve_rclone(kind: &str, served: &Path, port: u16) -> Result<Running> {
    spawn(
        Command::new("rclone").args(["serve", kind, "--read-only", "--addr", &format!("127.0.0.1:{port}")]).arg(served),
        "rclone serve",
    )
}

/// The servers of every tool, each behind its counting proxy, over the same data.
pub struct Stores {
    pub work: PathBuf,
    /// The tree as the rclone and unison servers serve it; moves on the store side happen here.
    pub served: PathBuf,
    cpm: ProxiedCpm,
    /// rclone's servers, restarted after a change behind their backs (they keep directory
    /// listings for five minutes, and would not see it), with their ports.
    rclone: std::cell::RefCell<Vec<(Running, &'static str, u16)>>,
    pub http_proxy: Proxy,
    pub webdav_proxy: Proxy,
    _unison: Running,
    pub unison_proxy: Proxy,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(command: &mut Command, what: &str) -> Result<Running> {
    let child =
        command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().with_context(|| format!("cannot start {what}"))?;
    Ok(Running { child })
}

/// Waits until something listens on `port`.
pub async fn listening(port: u16, what: &str) -> Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("{what} did not start listening on port {port}")
}

impl Stores {
    /// Starts every server over a copy of `tree`, and fills cpm's store with it.
    pub async fn start(cpm: &Path, work: &Path, tree: &Path) -> Result<Self> {
        let served = work.join("served");
        copy_tree(tree, &served)?;

        let cpm = ProxiedCpm::start(cpm, work).await?;

        let (http_port, webdav_port) = (free_port()?, free_port()?);
        let rclone_http = serve_rclone("http", &served, http_port)?;
        let rclone_webdav = serve_rclone("webdav", &served, webdav_port)?;
        let unison_port = free_port()?;
        let unison_home = work.join("unison-server");
        std::fs::create_dir_all(&unison_home)?;
        let unison = spawn(
            Command::new("unison")
                .args(["-socket", &unison_port.to_string(), "-listen", "127.0.0.1"])
                .current_dir(work)
                .env("HOME", &unison_home)
                .env("UNISON", &unison_home),
            "unison -socket",
        )?;
        for (port, what) in
            [(http_port, "rclone serve http"), (webdav_port, "rclone serve webdav"), (unison_port, "unison")]
        {
            listening(port, what).await?;
        }
        let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let stores = Self {
            work: work.to_owned(),
            served,
            cpm,
            rclone: std::cell::RefCell::new(vec![
                (rclone_http, "http", http_port),
                (rclone_webdav, "webdav", webdav_port),
            ]),
            http_proxy: Proxy::start(local(http_port)).await?,
            webdav_proxy: Proxy::start(local(webdav_port)).await?,
            _unison: unison,
            unison_proxy: Proxy::start(local(unison_port)).await?,
        };
        stores.register("pda", "pda")?;
        eprintln!("cpm-bench: putting the tree in cpm's store");
        for folder in sorted_dirs(tree)? {
            let name = folder.file_name().and_then(|name| name.to_str()).context("folder name")?.to_owned();
            let mut args = vec!["-C".to_owned(), "pda".to_owned(), "put".to_owned()];
            for file in std::fs::read_dir(&folder)? {
                args.push(file?.path().to_str().context("utf-8 path")?.to_owned());
            }
            args.push(format!("/tree/{name}/"));
            stores.cpm(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(stores)
    }

    pub fn cpm(&self, args: &[&str]) -> Result<String> {
        self.cpm.run(args)
    }

    pub fn register(&self, name: &str, class: &str) -> Result<PathBuf> {
        self.cpm.register(name, class, &self.cpm.url)
    }

    pub fn new_device(&self, class: &str, profile: &[&str]) -> Result<PathBuf> {
        self.cpm.new_device(class, profile)
    }

    /// Syncs `tool`'s replica in `dest` (created empty when missing) with its store: time and
    /// bytes on the wire.
    pub async fn sync(&self, tool: Tool, dest: &Path) -> Result<Sample> {
        std::fs::create_dir_all(dest)?;
        let dest_text = dest.to_str().context("utf-8 path")?;
        let (mut command, proxy) = match tool {
            Tool::Cp => {
                std::fs::remove_dir(dest)?;
                let mut command = Command::new("cp");
                command.arg("-r").arg(&self.served).arg(dest);
                (command, None)
            }
            Tool::Cpm => {
                let mut command = Command::new(procs::cpm_binary()?);
                command.args(["-C", dest_text, "sync", "--quiet"]);
                (command, Some(&self.cpm.proxy))
            }
            Tool::RcloneHttp | Tool::RcloneHttpDefaults => {
                let mut command = Command::new("rclone");
                command.args([
                    "sync",
                    ":http:",
                    dest_text,
                    "--http-url",
                    &format!("http://{}/", self.http_proxy.address),
                ]);
                if tool == Tool::RcloneHttp {
                    command.args(RCLONE_TUNED);
                }
                (command, Some(&self.http_proxy))
            }
            Tool::RcloneWebdav => {
                let mut command = Command::new("rclone");
                command.args([
                    "sync",
                    ":webdav:",
                    dest_text,
                    "--webdav-url",
                    &format!("http://{}/", self.webdav_proxy.address),
                ]);
                (command, Some(&self.webdav_proxy))
            }
            Tool::Unison => {
                let home = self.work.join("unison-client");
                std::fs::create_dir_all(&home)?;
                let root = format!("socket://{}/served", self.unison_proxy.address);
                let mut command = Command::new("unison");
                command
                    .args([dest_text, &root, "-batch", "-auto", "-ui", "text", "-force", &root, "-fastcheck", "true"])
                    .args(["-confirmbigdel=false", "-times", "-perms", "0"])
                    .env("HOME", &home)
                    .env("UNISON", &home);
                (command, Some(&self.unison_proxy))
            }
        };
        if let Some(proxy) = proxy {
            proxy.take();
        }
        let seconds = timed(&mut command)?;
        let bytes = proxy.map_or(0, Proxy::take);
        Ok(Sample { seconds, bytes })
    }

    /// Restarts rclone's servers on their ports, so that they list the store afresh.
    async fn restart_rclone(&self) -> Result<()> {
        let ports: Vec<u16> = {
            let mut servers = self.rclone.borrow_mut();
            for (server, kind, port) in servers.iter_mut() {
                let _ = server.child.kill();
                let _ = server.child.wait();
                *server = serve_rclone(kind, &self.served, *port)?;
            }
            servers.iter().map(|(_, _, port)| *port).collect()
        };
        for port in ports {
            listening(port, "rclone serve").await?;
        }
        Ok(())
    }

    /// Moves the files of `folders` into a new folder `to`, in every store: one transaction in
    /// cpm's, renames in the served tree.
    pub async fn move_on_store_side(&self, folders: &[String], to: &str) -> Result<usize> {
        let target = self.served.join(to);
        std::fs::create_dir_all(&target)?;
        let mut moved = 0;
        for folder in folders {
            for file in std::fs::read_dir(self.served.join(folder))? {
                let file = file?;
                std::fs::rename(file.path(), target.join(file.file_name()))?;
                moved += 1;
            }
        }
        self.restart_rclone().await?;
        self.cpm(&["-C", "pda", "mkdir", &format!("/tree/{to}")])?;
        for folder in folders {
            self.cpm(&["-C", "pda", "mv", &format!("/tree/{folder}/*"), &format!("/tree/{to}/")])?;
        }
        Ok(moved)
    }
}

fn sorted_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(root)?.map(|item| item.map(|item| item.path())).collect::<Result<_, _>>()?;
    dirs.retain(|dir| dir.is_dir());
    dirs.sort();
    Ok(dirs)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp").arg("-r").arg(from).arg(to).status()?;
    if !status.success() {
        bail!("cannot copy {} to {}", from.display(), to.display());
    }
    Ok(())
}

/// The names of the tree's first `count` folders after `skip`.
pub fn folders(stores: &Stores, skip: usize, count: usize) -> Result<Vec<String>> {
    Ok(sorted_dirs(&stores.served)?
        .into_iter()
        .filter_map(|dir| dir.file_name().and_then(|name| name.to_str()).map(str::to_owned))
        .filter(|name| name.starts_with("folder-"))
        .skip(skip)
        .take(count)
        .collect())
}

/// Runs cases 1–3 for every tool; returns their measures.
pub async fn run(stores: &Stores, runs: usize, webdav_runs: usize) -> Result<Vec<Measure>> {
    let tools = [Tool::Cp, Tool::Cpm, Tool::RcloneHttp, Tool::RcloneHttpDefaults, Tool::Unison];
    let mut measures = Vec::new();
    let replicas = stores.work.join("replicas");
    let mut initial: Vec<(Tool, Vec<Sample>)> = tools.iter().map(|tool| (*tool, Vec::new())).collect();
    initial.push((Tool::RcloneWebdav, Vec::new()));
    // Case 1: each round, every tool copies the whole tree to an empty device; the last
    // round's copies are kept for cases 2 and 3.
    let mut kept: Vec<(Tool, PathBuf)> = Vec::new();
    for round in 0..runs {
        eprintln!("cpm-bench: case 1, round {}", round + 1);
        kept.clear();
        for (tool, samples) in &mut initial {
            if *tool == Tool::RcloneWebdav && round >= webdav_runs {
                continue;
            }
            let dest = match tool {
                Tool::Cpm => stores.new_device("pc", &[])?,
                _ => replicas.join(format!("{}-{round}", tool.name().replace([' ', '(', ')'], ""))),
            };
            procs::flush_file_systems()?;
            samples.push(stores.sync(*tool, &dest).await?);
            if round + 1 == runs || (*tool == Tool::RcloneWebdav && round + 1 == webdav_runs) {
                kept.push((*tool, dest));
            } else {
                let _ = std::fs::remove_dir_all(&dest);
            }
        }
    }
    for (tool, samples) in initial.into_iter().filter(|(_, samples)| !samples.is_empty()) {
        measures.push(Measure { case: 1, tool: tool.name(), samples });
    }
    kept.retain(|(tool, _)| *tool != Tool::RcloneWebdav && *tool != Tool::Cp);

    // Case 2: 1,000 files move into a new folder in the store; each device syncs.
    let mut after_move: Vec<(Tool, Vec<Sample>)> = kept.iter().map(|(tool, _)| (*tool, Vec::new())).collect();
    for round in 0..runs {
        eprintln!("cpm-bench: case 2, round {}", round + 1);
        let moved = stores.move_on_store_side(&folders(stores, round * 10, 10)?, &format!("moved-{round}")).await?;
        if moved == 0 {
            bail!("the tree has too few folders to move 1,000 files {runs} times");
        }
        for ((tool, dest), (_, samples)) in kept.iter().zip(&mut after_move) {
            procs::flush_file_systems()?;
            samples.push(stores.sync(*tool, dest).await?);
            // Each tool must have done the work: the moved files are in their new folder.
            let folder = match tool {
                Tool::Cpm => dest.join("tree").join(format!("moved-{round}")),
                _ => dest.join(format!("moved-{round}")),
            };
            let found = std::fs::read_dir(&folder).map_or(0, Iterator::count);
            if found != moved {
                bail!("{} has {found} of the {moved} moved files in {}", tool.name(), folder.display());
            }
        }
    }
    for (tool, samples) in after_move {
        measures.push(Measure { case: 2, tool: tool.name(), samples });
    }

    // Case 3: nothing changed.
    let mut idle: Vec<(Tool, Vec<Sample>)> = kept.iter().map(|(tool, _)| (*tool, Vec::new())).collect();
    for _ in 0..runs {
        for ((tool, dest), (_, samples)) in kept.iter().zip(&mut idle) {
            samples.push(stores.sync(*tool, dest).await?);
        }
    }
    for (tool, samples) in idle {
        measures.push(Measure { case: 3, tool: tool.name(), samples });
    }
    Ok(measures)
}
