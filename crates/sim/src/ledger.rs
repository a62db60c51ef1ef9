//! Every content a user wrote, and whether a user's own action has since let it go: what
//! "nothing lost" is checked against.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The hash of no bytes at all.
static EMPTY: LazyLock<String> = LazyLock::new(|| hash(b""));

/// The bytes of the `n`-th content a user writes: unique to `n`, between 6 and 80 bytes long (so
/// that size filters select some and not others).
pub fn content(n: u32) -> Vec<u8> {
    let mut bytes = format!("#{n}#").into_bytes();
    let size = 6 + (n.wrapping_mul(2_654_435_761) >> 24) as usize % 75;
    while bytes.len() < size {
        bytes.push(b'.');
    }
    bytes
}

pub fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// By hash: whether a user's action removed or overwrote a copy of it since it was written.
    contents: BTreeMap<String, bool>,
    /// By hash: how the content shows in a trace (`#n#`).
    labels: BTreeMap<String, String>,
    /// Empty files became the user's: they may be in the store, even several times over.
    empty_adopted: bool,
}

impl Ledger {
    pub fn wrote(&mut self, bytes: &[u8]) {
        let hash = hash(bytes);
        let label = String::from_utf8_lossy(bytes).trim_end_matches('.').to_owned();
        self.labels.entry(hash.clone()).or_insert(label);
        self.contents.entry(hash).or_insert(false);
    }

    /// How a content shows in a trace, for a failure's message.
    pub fn label(&self, hash: &str) -> &str {
        self.labels.get(hash).map_or("?", String::as_str)
    }

    pub fn released(&mut self, bytes: &[u8]) {
        self.released_hash(&hash(bytes));
    }

    /// A user deleted or replaced a copy of this content: it may go.
    pub fn released_hash(&mut self, hash: &str) {
        if let Some(released) = self.contents.get_mut(hash) {
            *released = true;
        }
    }

    /// Contents that must still be somewhere.
    pub fn kept(&self) -> impl Iterator<Item = &String> {
        self.contents.iter().filter(|(_, released)| !**released).map(|(hash, _)| hash)
    }

    /// True for a content some user wrote.
    pub fn is_users(&self, hash: &str) -> bool {
        self.contents.contains_key(hash) || (self.empty_adopted && hash == EMPTY.as_str())
    }

    /// Empty files on a device are taken for the user's from now on (see `Op::LoseIndex`).
    pub fn adopt_empty(&mut self) {
        self.empty_adopted = true;
    }

    /// True for a content that may be in the store more than once: an empty file carries no
    /// data, and a user may have many.
    pub fn may_repeat(&self, hash: &str) -> bool {
        self.empty_adopted && hash == EMPTY.as_str()
    }
}
