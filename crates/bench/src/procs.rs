//! The processes a benchmark runs beside itself: `cpm serve` and nginx, with their memory.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The release `cpm` binary beside this one, built first when missing.
pub fn cpm_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no binary directory")?;
    let cpm = dir.join("cpm");
    if !cpm.is_file() {
        let status = Command::new(env!("CARGO")).args(["build", "--release", "-p", "cpm"]).status()?;
        if !status.success() {
            bail!("cannot build cpm");
        }
    }
    Ok(cpm)
}

/// A child process, killed when dropped.
pub struct Running {
    pub child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts `cpm serve` on `listen` (port 0: a free one), with `extra` arguments; returns it and
/// its URL.
pub fn start_cpm(cpm: &Path, data: &Path, listen: &str, extra: &[&str]) -> Result<(Running, String)> {
    let mut child = Command::new(cpm)
        .args(["serve", "--listen", listen, "--data"])
        .arg(data)
        .args(extra)
        .env("CPM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cpm serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line.split_whitespace().find(|word| word.starts_with("http://")).context("no URL printed")?.to_owned();
    Ok((Running { child }, url))
}

/// Starts nginx serving `root` for GET and taking PUTs under `/up/`, on `port`.
pub fn start_nginx(prefix: &Path, root: &Path, port: u16) -> Result<Running> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|path| Path::new(path).is_file());
    let Some(nginx) = nginx else {
        bail!("nginx is not installed (apt-get install nginx-core): it is the static-file baseline");
    };
    std::fs::create_dir_all(prefix.join("logs"))?;
    std::fs::create_dir_all(prefix.join("body"))?;
    std::fs::create_dir_all(root.join("up"))?;
    let config = format!(
        "daemon off; master_process off; worker_processes 1; user root; error_log {prefix}/logs/error.log; pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {prefix}/body; client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port}; root {root};
    location /up/ {{ dav_methods PUT; create_full_put_path on; }}
  }}
}}
",
        prefix = prefix.display(),
        root = root.display()
    );
    let config_path = prefix.join("nginx.conf");
    std::fs::write(&config_path, config)?;
    let child = Command::new(nginx)
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&config_path)
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start nginx")?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(Running { child })
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
}

/// Samples a process's RSS every 10 ms until dropped; keeps the peak.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak_in, stop_in) = (Arc::clone(&peak), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stop_in.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    peak_in.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self { peak, stop, thread: Some(thread) }
    }

    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Wall time of a curl transfer, in seconds; fails when curl does.
pub fn curl(args: &[&str]) -> Result<f64> {
    let started = std::time::Instant::now();
    // `Expect:` off: both servers then get the body at once, as a real client sends it.
    let output = Command::new("curl").args(["-sS", "-f", "-H", "Expect:", "-o", "/dev/null"]).args(args).output()?;
    let elapsed = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("curl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(elapsed)
}

/// A fresh store for a benchmark: a work directory, a user, and `cpm serve` on it; all of it
/// goes when this drops.
pub struct Bench {
    pub work: PathBuf,
    pub server: Running,
    pub url: String,
    cpm: PathBuf,
    user: String,
    password: String,
}

impl Bench {
    pub fn start(cpm: &Path, tag: &str, user: &str, password: &str) -> Result<Self> {
        let work = std::env::temp_dir().join(format!("cpm-bench-{tag}-{}", std::process::id()));
        Self::on(cpm, &work, user, password, &[])
    }

    /// A bench in `work` (its store under `work/data` may already hold data), its server
    /// started with `extra` arguments.
    pub fn on(cpm: &Path, work: &Path, user: &str, password: &str, extra: &[&str]) -> Result<Self> {
        let work = work.to_owned();
        std::fs::create_dir_all(&work)?;
        let added = Command::new(cpm)
            .args(["admin", "--data"])
            .arg(work.join("data"))
            .args(["user", "add", user])
            .env("CPM_PASSWORD", password)
            .output()?;
        if !added.status.success() {
            let _ = std::fs::remove_dir_all(&work);
            bail!("cannot add the bench user: {}", String::from_utf8_lossy(&added.stderr));
        }
        let (server, url) = start_cpm(cpm, &work.join("data"), "127.0.0.1:0", extra)?;
        Ok(Self { work, server, url, cpm: cpm.to_owned(), user: user.to_owned(), password: password.to_owned() })
    }

    pub fn data(&self) -> PathBuf {
        self.work.join("data")
    }

    /// Runs `cpm ARGS…` in the work directory as the bench user; its standard output.
    pub fn cpm(&self, args: &[&str]) -> Result<String> {
        let output =
            Command::new(&self.cpm).args(args).current_dir(&self.work).env("CPM_PASSWORD", &self.password).output()?;
        if !output.status.success() {
            bail!("cpm {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        // What it logged (with CPM_LOG=debug, a sync's phase times) is passed on.
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Registers device `name` of `class`, in the work directory's folder of that name.
    pub fn register(&self, name: &str, class: &str) -> Result<()> {
        let args = [
            "device", "register", "--server", &self.url, "--user", &self.user, "--name", name, "--class", class,
            "--dir", name,
        ];
        self.cpm(&args).map(drop)
    }

    /// Times one `cpm sync --json`: seconds, and the report it printed.
    pub fn sync(&self, device: &str) -> Result<(f64, serde_json::Value)> {
        flush_file_systems()?;
        let started = std::time::Instant::now();
        let output = self.cpm(&["-C", device, "sync", "--json"])?;
        Ok((started.elapsed().as_secs_f64(), serde_json::from_str(&output)?))
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A directory removed when dropped.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates objects `object-NNNNNN.bin` for `i` in `0..total`: object `i` in folder
/// `folders[i / per_folder]` (the last one past the end) with content `hashes[i % hashes.len()]`,
/// from `concurrency` clients at once. Each is one fsynced transaction in the store.
pub async fn create_objects(
    client: &cpm_client::Client,
    folders: &[String],
    per_folder: usize,
    hashes: &[String],
    total: usize,
    concurrency: usize,
) -> Result<()> {
    let (folders, hashes) = (Arc::new(folders.to_vec()), Arc::new(hashes.to_vec()));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (client, folders, hashes) = (client.clone(), Arc::clone(&folders), Arc::clone(&hashes));
        workers.spawn(async move {
            for i in (worker..total).step_by(concurrency) {
                let request = cpm_proto::CreateObjectRequest {
                    folder_id: folders[(i / per_folder.max(1)).min(folders.len() - 1)].clone(),
                    name: format!("object-{i:06}.bin"),
                    kind: cpm_core::ObjectKind::File,
                    hash: hashes[i % hashes.len()].clone(),
                    content_type: Some("application/octet-stream".into()),
                    replace: false,
                    base_modseq: None,
                    modified: None,
                    unless_held: false,
                };
                client.create_object(&request).await?;
            }
            Ok::<_, cpm_client::ClientError>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// Writes back every dirty page first, so a timed run does not pay for the one before it (a
/// copy leaves a gibibyte for the kernel to write, and the next run would wait on it).
pub fn flush_file_systems() -> Result<()> {
    let status = Command::new("sync").status()?;
    if !status.success() {
        bail!("sync failed");
    }
    Ok(())
}
