//! Cases 4 and 5, messages: a fresh device takes the whole mailbox, then one new message
//! arrives; cpm (a stub device, a download device, and its agent) against mbsync from Dovecot.

use super::proxy::Proxy;
use super::{Measure, PASSWORD, ProxiedCpm, Sample, data, timed};
use crate::procs::{self, Running};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the stub device keeps of each message.
const STUB_PROFILE: [&str; 6] = ["--kind", "message", "--content", "stub", "--fields", "size,from,subject,date"];

pub struct Mailbox {
    work: PathBuf,
    pub bytes: u64,
    next_id: std::cell::Cell<usize>,
    _dovecot: Running,
    dovecot_proxy: Proxy,
    cpm: ProxiedCpm,
    seed: u64,
}

fn maildir_name(i: usize, size: usize) -> String {
    format!("1764000000.M{i}P1.bench,S={size}:2,S")
}

impl Mailbox {
    /// Writes the messages, delivers them into Dovecot's maildir and cpm's store, and starts
    /// both servers behind their proxies.
    pub async fn start(cpm: &Path, work: &Path, messages: usize, seed: u64) -> Result<Self> {
        let eml = work.join("eml");
        let maildir = work.join("maildir/alice");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        std::fs::create_dir_all(&eml)?;
        std::fs::create_dir_all(work.join("home/alice"))?;
        eprintln!("cpm-bench: writing {messages} messages");
        let mut random = data::Seeded::new(seed ^ 0xA5A5);
        let mut bytes = 0u64;
        for i in 0..messages {
            let message = data::message(&mut random, i);
            bytes += message.len() as u64;
            std::fs::write(eml.join(format!("m{i:05}.eml")), &message)?;
            std::fs::write(maildir.join("cur").join(maildir_name(i, message.len())), &message)?;
        }

        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = work.join("dovecot.conf");
        std::fs::write(&config, dovecot_config(work, port))?;
        std::fs::write(work.join("passwd"), format!("alice:{{PLAIN}}{PASSWORD}\n"))?;
        let owned = Command::new("chown")
            .args(["-R", "mail:mail"])
            .arg(work.join("maildir"))
            .arg(work.join("home"))
            .status()?;
        if !owned.success() {
            bail!("cannot hand the maildir to the mail user");
        }
        let dovecot = Running {
            child: Command::new("dovecot")
                .args(["-F", "-c"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start dovecot")?,
        };
        super::files::listening(port, "dovecot").await?;
        let dovecot_proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await?;

        let cpm_store = ProxiedCpm::start(cpm, work).await?;
        let mailbox = Self {
            work: work.to_owned(),
            bytes,
            next_id: std::cell::Cell::new(messages),
            _dovecot: dovecot,
            dovecot_proxy,
            cpm: cpm_store,
            seed,
        };
        // The sending device talks to the server directly: only the receiving devices are counted.
        mailbox.cpm.register("sender", "pda", &mailbox.cpm.direct_url)?;
        eprintln!("cpm-bench: putting the messages in cpm's store");
        let mut names: Vec<PathBuf> =
            std::fs::read_dir(&eml)?.map(|item| item.map(|item| item.path())).collect::<Result<_, _>>()?;
        names.sort();
        for batch in names.chunks(500) {
            let mut args = vec!["-C".to_owned(), "sender".to_owned(), "put".to_owned(), "--message".to_owned()];
            args.extend(batch.iter().filter_map(|path| path.to_str().map(str::to_owned)));
            args.push("/inbox/".to_owned());
            mailbox.cpm(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(mailbox)
    }

    fn cpm(&self, args: &[&str]) -> Result<String> {
        self.cpm.run(args)
    }

    /// `mbsync -a` into the local maildir `local` (created when missing).
    fn mbsync(&self, local: &Path) -> Result<Sample> {
        std::fs::create_dir_all(local)?;
        let rc = local.with_extension("mbsyncrc");
        std::fs::write(&rc, mbsync_config(self.dovecot_proxy.address, local))?;
        self.dovecot_proxy.take();
        let mut command = Command::new("mbsync");
        command.arg("-c").arg(&rc).args(["-q", "-a"]);
        let seconds = timed(&mut command)?;
        Ok(Sample { seconds, bytes: self.dovecot_proxy.take() })
    }

    /// A new message, delivered to both stores (not timed).
    fn deliver(&self) -> Result<PathBuf> {
        let i = self.next_id.get();
        self.next_id.set(i + 1);
        let message = data::message(&mut data::Seeded::new(self.seed ^ i as u64), i);
        let path = self.work.join(format!("new-{i}.eml"));
        std::fs::write(&path, &message)?;
        let delivered = self.work.join("maildir/alice/new").join(maildir_name(i, message.len()).replace(":2,S", ""));
        std::fs::write(&delivered, &message)?;
        Command::new("chown").args(["mail:mail"]).arg(&delivered).status()?;
        Ok(path)
    }

    pub async fn run(&self, runs: usize) -> Result<Vec<Measure>> {
        let (mut mbsync, mut stub, mut download) = (Vec::new(), Vec::new(), Vec::new());
        let (mut mbsync_dir, mut stub_dir, mut download_dir) = (PathBuf::new(), PathBuf::new(), PathBuf::new());
        for round in 0..runs {
            eprintln!("cpm-bench: case 4, round {}", round + 1);
            mbsync_dir = self.work.join(format!("mbsync-{round}"));
            procs::flush_file_systems()?;
            mbsync.push(self.mbsync(&mbsync_dir)?);
            stub_dir = self.cpm.new_device("phone", &STUB_PROFILE)?;
            procs::flush_file_systems()?;
            stub.push(self.cpm.sync(&stub_dir)?);
            download_dir = self.cpm.new_device("tablet", &["--kind", "message"])?;
            procs::flush_file_systems()?;
            download.push(self.cpm.sync(&download_dir)?);
        }
        let mut measures = vec![
            Measure { case: 4, tool: "mbsync", samples: mbsync },
            Measure { case: 4, tool: "cpm stub", samples: stub },
            Measure { case: 4, tool: "cpm download", samples: download },
        ];

        // Case 5: one new message at a time.
        let (mut mbsync, mut synced, mut pushed) = (Vec::new(), Vec::new(), Vec::new());
        self.cpm(&["-C", download_dir.to_str().context("utf-8")?, "prefs", "set", "--auto", "on"])?;
        self.cpm.sync(&download_dir)?;
        let mut agent = Running {
            child: Command::new(procs::cpm_binary()?)
                .arg("-C")
                .arg(&download_dir)
                .args(["agent", "--json"])
                .stdout(Stdio::null())
                .spawn()
                .context("cannot start the agent")?,
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        for round in 0..runs {
            eprintln!("cpm-bench: case 5, round {}", round + 1);
            let message = self.deliver()?;
            mbsync.push(self.mbsync(&mbsync_dir)?);
            // The download device's agent brings the message by itself: from the end of its
            // upload to its file in the device's inbox.
            let name = message.file_name().and_then(|name| name.to_str()).context("name")?.to_owned();
            let landing = download_dir.join("inbox").join(&name);
            self.cpm.proxy.take();
            self.cpm(&["-C", "sender", "put", "--message", message.to_str().context("utf-8")?, "/inbox/"])?;
            let uploaded = Instant::now();
            while !landing.exists() {
                if uploaded.elapsed() > Duration::from_secs(10) {
                    bail!("the agent did not bring {}", landing.display());
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            let seconds = uploaded.elapsed().as_secs_f64();
            // Let the agent's sync finish before its bytes are counted.
            tokio::time::sleep(Duration::from_millis(300)).await;
            pushed.push(Sample { seconds, bytes: self.cpm.proxy.take() });
            // The stub device syncs by hand, as mbsync does.
            synced.push(self.cpm.sync(&stub_dir)?);
        }
        let _ = agent.child.kill();
        measures.push(Measure { case: 5, tool: "mbsync", samples: mbsync });
        measures.push(Measure { case: 5, tool: "cpm stub sync", samples: synced });
        measures.push(Measure { case: 5, tool: "cpm agent", samples: pushed });
        Ok(measures)
    }
}

fn dovecot_config(work: &Path, port: u16) -> String {
    let work = work.display();
    format!(
        "base_dir = {work}/run\nstate_dir = {work}/state\nlog_path = {work}/dovecot.log\nprotocols = imap\n\
         listen = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\n\
         mail_location = maildir:{work}/maildir/%u\nfirst_valid_uid = 8\nmail_uid = mail\nmail_gid = mail\n\
         default_internal_user = dovecot\ndefault_login_user = dovenull\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {work}/passwd\n}}\n\
         userdb {{\n  driver = static\n  args = uid=mail gid=mail home={work}/home/%u\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  \
         inet_listener imaps {{\n    port = 0\n  }}\n}}\n"
    )
}

fn mbsync_config(server: SocketAddr, local: &Path) -> String {
    let local = local.display();
    format!(
        "IMAPAccount bench\nHost {}\nPort {}\nUser alice\nPass {PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\n\
         IMAPStore remote\nAccount bench\n\nMaildirStore local\nPath {local}/\nInbox {local}/INBOX\n\n\
         Channel inbox\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync Pull\nSyncState *\n",
        server.ip(),
        server.port()
    )
}
