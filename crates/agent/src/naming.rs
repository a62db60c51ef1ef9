//! How store entries are named in a device's directory.

use cpm_core::EntryKind;
use cpm_core::name::MAX_NAME_BYTES;

/// Suffix of a stub: a placeholder holding an object's details and link instead of its content.
pub const STUB_SUFFIX: &str = ".cpmlink";
/// The device's own folder: settings, token, index, temporary files.
pub const META_DIR: &str = ".cpm";

/// The file name of an object (or folder) on the device. Messages read as `.eml` files, so a
/// person recognizes them; stubs carry [`STUB_SUFFIX`].
pub fn local_name(kind: EntryKind, name: &str, stub: bool) -> String {
    let base =
        if kind == EntryKind::Message && !name.ends_with(".eml") { format!("{name}.eml") } else { name.to_owned() };
    if stub && kind != EntryKind::Folder { format!("{base}{STUB_SUFFIX}") } else { base }
}

/// The name's stem and its extension (with its dot); a leading dot is no extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(at) if at > 0 => name.split_at(at),
        _ => (name, ""),
    }
}

/// The longest prefix of `text` that fits in `bytes` bytes, cut between characters.
fn truncated(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `STEM` + `tag` + `.EXT` in at most `limit` bytes: the stem is shortened to make room, and an
/// extension too long to be one is cut.
fn tagged(name: &str, tag: &str, limit: usize) -> String {
    let (stem, extension) = split_extension(name);
    let extension = truncated(extension, 32.min(limit.saturating_sub(tag.len() + 1)));
    let tag = truncated(tag, limit.saturating_sub(extension.len()));
    let room = limit.saturating_sub(tag.len() + extension.len());
    format!("{}{tag}{extension}", truncated(stem, room))
}

/// `NAME (conflict DEVICE YYYY-MM-DD).EXT`, then `… YYYY-MM-DD 2).EXT` and on for `attempt`
/// 2, 3…: where the device's side of a conflict is kept. Always a valid name: a long stem is
/// shortened to make room.
pub fn conflict_name(name: &str, device: &str, date: jiff::civil::Date, attempt: u32) -> String {
    let number = if attempt > 1 { format!(" {attempt}") } else { String::new() };
    tagged(name, &format!(" (conflict {device} {date}{number})"), MAX_NAME_BYTES)
}

/// A name for a record that cannot have its own here (too long with its suffix, or taken by
/// another under this file system's rules): shortened to fit with `suffix`, and marked from its
/// id (and the `attempt`, when an earlier mark is taken) so that two such names never meet.
pub fn mapped_name(name: &str, id: &str, suffix: &str, attempt: u32) -> String {
    let mark = &blake3::hash(format!("{id}/{attempt}").as_bytes()).to_hex()[..8];
    let limit = MAX_NAME_BYTES - suffix.len();
    format!("{}{suffix}", tagged(name, &format!(" ~{mark}"), limit))
}

/// The name a mapped name was made from, when it has a mark and was not shortened: a device
/// that lost its index knows its own mapped names again by it (see [`maps`]).
pub fn unmapped(name: &str) -> Option<String> {
    let at = name.rfind(" ~")?;
    let mark = name.get(at + 2..at + 10)?;
    mark.bytes()
        .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
        .then(|| format!("{}{}", &name[..at], &name[at + 10..]))
}

/// True when `here` is the name this device maps `name` of the record `id` to.
pub fn maps(here: &str, name: &str, id: &str, suffix: &str) -> bool {
    (0..8).any(|attempt| mapped_name(name, id, suffix, attempt) == here)
}

/// Joins a relative folder path and a name (`""` is the device's root).
/// Whether the store takes every name on a relative path.
pub fn storable(path: &str) -> bool {
    path.split('/').all(|name| cpm_core::Name::parse(name).is_ok())
}

pub fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() { name.to_owned() } else { format!("{folder}/{name}") }
}

/// The folder part and the name of a relative path.
pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// The store path of a relative local path.
pub fn store_path(relative: &str) -> String {
    format!("/{relative}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_messages_stubs_and_conflicts() {
        assert_eq!(local_name(EntryKind::Message, "hello", false), "hello.eml");
        assert_eq!(local_name(EntryKind::Message, "hello.eml", true), "hello.eml.cpmlink");
        assert_eq!(local_name(EntryKind::File, "song.mp3", true), "song.mp3.cpmlink");
        assert_eq!(local_name(EntryKind::Folder, "music", true), "music");
        let day = jiff::civil::date(2026, 11, 25);
        assert_eq!(conflict_name("song.mp3", "pc", day, 1), "song (conflict pc 2026-11-25).mp3");
        assert_eq!(conflict_name("song.mp3", "pc", day, 2), "song (conflict pc 2026-11-25 2).mp3");
        assert_eq!(conflict_name("README", "pc", day, 1), "README (conflict pc 2026-11-25)");
        assert_eq!(conflict_name(".bashrc", "pc", day, 1), ".bashrc (conflict pc 2026-11-25)");
        assert_eq!((join("", "a"), join("a/b", "c")), ("a".to_owned(), "a/b/c".to_owned()));
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("c"), ("", "c"));
    }

    #[test]
    fn conflict_and_mapped_names_always_fit() {
        let day = jiff::civil::date(2026, 11, 25);
        for name in ["x".repeat(255), format!("{}.mp3", "é".repeat(125)), format!("a.{}", "e".repeat(250))] {
            for attempt in [1, 2, 100] {
                let conflict = conflict_name(&name, &"d".repeat(255), day, attempt);
                assert!(conflict.len() <= MAX_NAME_BYTES, "{} bytes", conflict.len());
                assert!(cpm_core::Name::parse(&conflict).is_ok());
            }
            let mapped = mapped_name(&name, "o0123456789ab", STUB_SUFFIX, 0);
            assert!(mapped.len() <= MAX_NAME_BYTES && mapped.ends_with(STUB_SUFFIX), "{mapped}");
        }
        assert_ne!(conflict_name(&"x".repeat(255), "pc", day, 2), conflict_name(&"x".repeat(255), "pc", day, 3));
        assert_ne!(
            mapped_name(&"x".repeat(255), "oaaaaaaaa1", "", 0),
            mapped_name(&"x".repeat(255), "oaaaaaaaa2", "", 0)
        );
        assert_ne!(mapped_name("a", "o1", "", 0), mapped_name("a", "o1", "", 1));
        let twin = mapped_name("Photo.jpg", "o42", "", 1);
        assert_eq!(unmapped(&twin).as_deref(), Some("Photo.jpg"));
        assert!(maps(&twin, "Photo.jpg", "o42", "") && !maps(&twin, "Photo.jpg", "o43", ""));
        assert_eq!(unmapped("notes ~ab.txt"), None);
    }
}
