//! How store entries are named in a device's directory.

use cpm_core::EntryKind;

/// Suffix of a stub: a placeholder holding an object's details and link instead of its content.
pub const STUB_SUFFIX: &str = ".cpmlink";
/// Suffix of a download in progress; such files are never taken for the user's own.
pub const PARTIAL_SUFFIX: &str = ".cpm-partial";
/// The device's own folder: settings, token, index.
pub const META_DIR: &str = ".cpm";

/// The file name of an object (or folder) on the device. Messages read as `.eml` files, so a
/// person recognizes them; stubs carry [`STUB_SUFFIX`].
pub fn local_name(kind: EntryKind, name: &str, stub: bool) -> String {
    let base =
        if kind == EntryKind::Message && !name.ends_with(".eml") { format!("{name}.eml") } else { name.to_owned() };
    if stub && kind != EntryKind::Folder { format!("{base}{STUB_SUFFIX}") } else { base }
}

/// `NAME (conflict DEVICE YYYY-MM-DD).EXT`: where the device's side of a conflict is kept.
pub fn conflict_name(name: &str, device: &str, date: jiff::civil::Date) -> String {
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, format!(".{extension}")),
        _ => (name, String::new()),
    };
    format!("{stem} (conflict {device} {date}){extension}")
}

/// Joins a relative folder path and a name (`""` is the device's root).
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

pub fn is_stub(path: &str) -> bool {
    path.ends_with(STUB_SUFFIX)
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
        assert_eq!(conflict_name("song.mp3", "pc", day), "song (conflict pc 2026-11-25).mp3");
        assert_eq!(conflict_name("README", "pc", day), "README (conflict pc 2026-11-25)");
        assert_eq!(conflict_name(".bashrc", "pc", day), ".bashrc (conflict pc 2026-11-25)");
        assert_eq!((join("", "a"), join("a/b", "c")), ("a".to_owned(), "a/b/c".to_owned()));
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("c"), ("", "c"));
    }
}
