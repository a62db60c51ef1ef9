//! What the scenario tests share: a `cpm serve` process and a temp world to run `cpm` in.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const CPM: &str = env!("CARGO_BIN_EXE_cpm");
pub const PASSWORD: &str = "correct horse";
/// The phone of use case 7.1: the music under /content, as stubs with four details.
pub const PHONE_PROFILE: [&str; 8] = [
    "--include",
    "/content/**",
    "--type",
    "audio/*",
    "--fields",
    "name,size,content_type,modified",
    "--content",
    "stub",
];

/// A `cpm serve` process, stopped when dropped.
pub struct ServeProcess {
    pub child: Child,
    pub url: String,
    data: std::path::PathBuf,
    config: Option<std::path::PathBuf>,
    extra: Vec<String>,
}

impl ServeProcess {
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, None)
    }

    /// Starts `cpm serve`, with operator settings when given.
    pub fn start_with(data: &Path, config: Option<&Path>) -> Self {
        Self::start_command(data, config, "127.0.0.1:0", &[])
    }

    /// Kills the server (SIGKILL, as a crash would) and starts it again on the same address.
    pub fn crash_and_restart(&mut self) {
        let extra = self.extra.clone();
        self.crash_and_restart_with(&extra.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// [`Self::crash_and_restart`], with other extra arguments (a clock set back, say).
    pub fn crash_and_restart_with(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let address = self.url.trim_start_matches("http://").to_owned();
        let (data, config) = (self.data.clone(), self.config.clone());
        *self = Self::start_command(&data, config.as_deref(), &address, extra);
    }

    /// Starts `cpm serve` with extra arguments (a simulated clock, say).
    pub fn start_with_args(data: &Path, extra: &[&str]) -> Self {
        Self::start_command(data, None, "127.0.0.1:0", extra)
    }

    fn start_command(data: &Path, config: Option<&Path>, listen: &str, extra: &[&str]) -> Self {
        let mut command = Command::new(CPM);
        command.args(["serve", "--listen", listen, "--data"]).arg(data).args(extra);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("CPM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cpm serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reads the serving line");
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        let extra = extra.iter().map(|arg| (*arg).to_owned()).collect();
        Self { child, url, data: data.to_owned(), config: config.map(Path::to_owned), extra }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub server: ServeProcess,
}

impl World {
    pub fn new() -> Self {
        Self::with_operator_settings(None)
    }

    /// A world whose server runs with these operator settings (TOML).
    pub fn with_operator_settings(settings: Option<&str>) -> Self {
        Self::with_server(settings, &[])
    }

    /// A world whose server runs with these operator settings and extra `cpm serve` arguments.
    pub fn with_server(settings: Option<&str>, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("cpm-data");
        let config = settings.map(|text| {
            let path = dir.path().join("operator.toml");
            std::fs::write(&path, text).expect("writes the settings");
            path
        });
        let server = ServeProcess::start_command(&data, config.as_deref(), "127.0.0.1:0", extra);
        let world = Self { dir, server };
        world.ok(&["admin", "--data", data.to_str().expect("utf-8"), "user", "add", "alice"]);
        world
    }

    /// `GET PATH` on the server, over a plain TCP connection: the JSON body.
    pub fn get_json(&self, path: &str) -> Value {
        use std::io::{Read, Write};
        let address = self.server.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connects");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("sends");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("reads");
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {response}"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cpm ARGS…` in the world's directory, as its user.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(CPM);
        command.args(args).current_dir(self.dir.path()).env("CPM_PASSWORD", PASSWORD);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("cpm runs")
    }

    /// Syncs a device that is killed (as by kill -9) right after its `actions`-th applied action.
    pub fn sync_killed_after(&self, device: &str, actions: usize) {
        let output = self
            .command(&["-C", device, "sync", "--quiet"])
            .env("CPM_FAULT_AFTER_ACTIONS", actions.to_string())
            .output()
            .expect("cpm runs");
        assert!(!output.status.success(), "the sync of {device} should have been killed");
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "cpm {args:?} failed: {}{stdout}", String::from_utf8_lossy(&output.stderr));
        stdout
    }

    /// Runs a command that must fail with one clear line on stderr; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(!output.status.success(), "cpm {args:?} should have failed");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "cpm {args:?} printed {stderr:?}");
        assert!(lines[0].starts_with("cpm: "), "{stderr:?}");
        lines[0].to_owned()
    }

    /// The arguments registering device `name` of `class` in directory `dir`.
    pub fn registration(&self, name: &str, class: &str, dir: &str) -> Vec<String> {
        [
            "device",
            "register",
            "--server",
            &self.server.url,
            "--user",
            "alice",
            "--name",
            name,
            "--class",
            class,
            "--dir",
            dir,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Registers a PDA named `name` in the directory of that name.
    pub fn register(&self, name: &str, extra: &[&str]) -> String {
        self.register_as(name, "pda", extra)
    }

    pub fn register_as(&self, name: &str, class: &str, extra: &[&str]) -> String {
        let mut args = self.registration(name, class, name);
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Runs `cpm -C DEVICE ARGS…`.
    pub fn on(&self, device: &str, args: &[&str]) -> String {
        self.ok(&[&["-C", device], args].concat())
    }

    /// `cpm -C DEVICE sync --json`, parsed.
    pub fn sync(&self, device: &str) -> Value {
        serde_json::from_str(&self.on(device, &["sync", "--json"])).expect("sync --json prints JSON")
    }

    pub fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.path(path)).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
    }

    pub fn pda(&self, args: &[&str]) -> String {
        self.ok(&[&["-C", "pda"], args].concat())
    }

    pub fn pda_fails(&self, args: &[&str]) -> String {
        self.fails(&[&["-C", "pda"], args].concat())
    }

    pub fn listing(&self, folder: &str) -> Vec<Value> {
        let json = self.pda(&["ls", "--json", folder]);
        match serde_json::from_str(&json).expect("ls --json prints JSON") {
            Value::Array(entries) => entries,
            other => panic!("expected an array, got {other}"),
        }
    }

    pub fn names(&self, folder: &str) -> Vec<String> {
        self.listing(folder).iter().map(|entry| entry["name"].as_str().unwrap_or_default().to_owned()).collect()
    }

    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).expect("writes");
    }

    /// Starts `cpm -C DEVICE agent --json`; its sync reports arrive on the receiver, parsed.
    pub fn agent(&self, device: &str) -> (Running, std::sync::mpsc::Receiver<Value>) {
        let mut agent = Running(
            self.command(&["-C", device, "agent", "--json"]).stdout(Stdio::piped()).spawn().expect("the agent starts"),
        );
        let stdout = agent.0.stdout.take().expect("stdout");
        let (reports, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(report) = serde_json::from_str(&line) {
                    let _ = reports.send(report);
                }
            }
        });
        (agent, heard)
    }
}

pub fn entry<'a>(entries: &'a [Value], name: &str) -> &'a Value {
    entries.iter().find(|entry| entry["name"] == name).unwrap_or_else(|| panic!("no {name} in {entries:?}"))
}

/// A child process that is killed when the test ends, passing or not.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The files under a device directory, relative and sorted, leaving out `.cpm`. A running agent
/// may remove a folder while it is read: what vanishes is left out.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut queue = vec![root.to_owned()];
    while let Some(dir) = queue.pop() {
        let Ok(items) = std::fs::read_dir(&dir) else { continue };
        for item in items {
            let Ok(item) = item else { continue };
            let path = item.path();
            let relative = path.strip_prefix(root).expect("inside").to_string_lossy().into_owned();
            if relative.starts_with(".cpm") {
                continue;
            }
            if path.is_dir() {
                queue.push(path);
            } else {
                found.push(relative);
            }
        }
    }
    found.sort();
    found
}

/// Waits up to 10 s for `done`.
pub fn eventually(done: impl Fn() -> bool) -> bool {
    (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        done()
    })
}
