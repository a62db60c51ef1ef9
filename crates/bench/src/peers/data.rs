//! The data every tool syncs, from a seed: a content tree of many small files, a share of
//! MB-sized photos and songs and a few large videos; and MIME messages with realistic headers,
//! some with attachments.

use anyhow::Result;
use std::io::Write;
use std::path::Path;

/// A small, fast, seeded generator (xorshift64*): the same seed gives the same data.
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// Incompressible bytes, as media are.
    pub fn bytes(&mut self, length: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(length + 8);
        while bytes.len() < length {
            bytes.extend_from_slice(&self.next().to_le_bytes());
        }
        bytes.truncate(length);
        bytes
    }
}

/// Writes `files` files of about `total` bytes under `root`, in folders of about 100: 2 in 1000
/// are videos (a share of the bytes), 1 in 10 photos or songs of a few MB, the rest documents of
/// a few KB. The sizes are scaled so that the tree holds about `total` bytes.
/// Returns the bytes written.
pub fn content_tree(root: &Path, files: usize, total: u64, seed: u64) -> Result<u64> {
    let mut random = Seeded::new(seed);
    let kinds: Vec<u8> = (0..files)
        .map(|_| match random.below(1000) {
            0..=1 => 2,
            2..=101 => 1,
            _ => 0,
        })
        .collect();
    let videos = kinds.iter().filter(|kind| **kind == 2).count().max(1) as u64;
    let media = kinds.iter().filter(|kind| **kind == 1).count().max(1) as u64;
    let documents = kinds.iter().filter(|kind| **kind == 0).count().max(1) as u64;
    // About a third of the bytes in videos, half in photos and songs, the rest in documents.
    let (video_size, media_size, document_size) = (total / 3 / videos, total / 2 / media, total / 6 / documents);
    let mut written = 0u64;
    for (i, kind) in kinds.iter().enumerate() {
        let folder = root.join(format!("folder-{:03}", i / 100));
        std::fs::create_dir_all(&folder)?;
        let (name, mean) = match kind {
            2 => (format!("video-{i:05}.mp4"), video_size),
            1 if i % 2 == 0 => (format!("photo-{i:05}.jpg"), media_size),
            1 => (format!("song-{i:05}.mp3"), media_size),
            _ => (format!("note-{i:05}.txt"), document_size),
        };
        // ±50% around the mean.
        let size = mean / 2 + random.below(mean.max(1));
        let bytes = random.bytes(usize::try_from(size)?);
        std::fs::File::create(folder.join(name))?.write_all(&bytes)?;
        written += size;
    }
    Ok(written)
}

const FIRST: [&str; 8] = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi"];
const LAST: [&str; 6] = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Petit"];
const TOPICS: [&str; 8] =
    ["Concert tonight", "Holiday photos", "Meeting notes", "Re: dinner", "Your order", "Weekend", "Invoice", "Hello"];

/// One RFC 5322 message: realistic headers, a text body, and for one in five an attachment
/// (base64 of a few tens of KB).
pub fn message(random: &mut Seeded, i: usize) -> Vec<u8> {
    let person = |random: &mut Seeded| {
        let (first, last) = (FIRST[random.below(8) as usize], LAST[random.below(6) as usize]);
        (format!("{first} {last}"), format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()))
    };
    let (from_name, from) = person(random);
    let (to_name, to) = person(random);
    let topic = TOPICS[random.below(8) as usize];
    let day = 1 + random.below(28);
    let (hour, minute) = (random.below(24), random.below(60));
    let mut text = String::new();
    for _ in 0..(5 + random.below(40)) {
        text.push_str("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n");
    }
    let mut message = format!(
        "Return-Path: <{from}>\r\nReceived: from mx.example.com by imap.example.com; Mon, {day} Nov 2026 \
         {hour:02}:{minute:02}:00 +0100\r\nFrom: {from_name} <{from}>\r\nTo: {to_name} <{to}>\r\nSubject: {topic} \
         #{i}\r\nDate: Mon, {day} Nov 2026 {hour:02}:{minute:02}:00 +0100\r\nMessage-ID: <m{i}.{day}@example.com>\r\n\
         MIME-Version: 1.0\r\n"
    );
    if random.below(5) == 0 {
        let length = 20_000 + random.below(60_000) as usize;
        let attachment = random.bytes(length);
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &attachment);
        message.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\nContent-Type: text/plain; \
             charset=utf-8\r\n\r\n{text}\r\n--b{i}\r\nContent-Type: image/jpeg; name=\"photo{i}.jpg\"\r\n\
             Content-Disposition: attachment; filename=\"photo{i}.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ));
        for line in encoded.as_bytes().chunks(76) {
            message.push_str(&String::from_utf8_lossy(line));
            message.push_str("\r\n");
        }
        message.push_str(&format!("--b{i}--\r\n"));
    } else {
        message.push_str(&format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{text}"));
    }
    message.into_bytes()
}
