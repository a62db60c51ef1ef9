//! Names of folders and objects.

use std::fmt;

/// The longest name, in bytes, that a folder or object may carry: the common file-system limit,
/// so that every name in the store can become a file name on a device.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name cannot be empty")]
    Empty,
    #[error("a name cannot be \".\" or \"..\"")]
    Dots,
    #[error("a name cannot contain '/'")]
    Slash,
    #[error("a name cannot contain NUL or control characters")]
    Control,
    #[error("a name cannot be longer than {MAX_NAME_BYTES} bytes (this one has {0})")]
    TooLong(usize),
}

/// A validated name of a folder or object: one path component, in Unicode NFC.
///
/// Invariant: every name in the store satisfies [`Name::parse`]; it is checked here, where names
/// enter the system, so that each name can be used as a file name on every device. Names are
/// kept in NFC, so `café` typed with a combining accent and without is one name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
        let normalized: std::borrow::Cow<'_, str> = match is_nfc_quick(raw.chars()) {
            IsNormalized::Yes => raw.into(),
            _ => raw.nfc().collect::<String>().into(),
        };
        let raw = normalized.as_ref();
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw == "." || raw == ".." {
            return Err(NameError::Dots);
        }
        if raw.contains('/') {
            return Err(NameError::Slash);
        }
        if raw.chars().any(char::is_control) {
            return Err(NameError::Control);
        }
        if raw.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong(raw.len()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["song1.mp3", "favourite song", "été.jpg", ".hidden", "a..b", "x".repeat(255).as_str()] {
            assert_eq!(Name::parse(ok).map(Name::into_string), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn names_are_kept_in_nfc() {
        let decomposed = "cafe\u{301}.txt";
        assert_eq!(Name::parse(decomposed).map(Name::into_string), Ok("caf\u{e9}.txt".to_owned()));
        assert_eq!(Name::parse(decomposed), Name::parse("caf\u{e9}.txt"));
    }

    #[test]
    fn refuses_each_bad_shape_with_its_reason() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse("."), Err(NameError::Dots));
        assert_eq!(Name::parse(".."), Err(NameError::Dots));
        assert_eq!(Name::parse("a/b"), Err(NameError::Slash));
        assert_eq!(Name::parse("a\0b"), Err(NameError::Control));
        assert_eq!(Name::parse("a\nb"), Err(NameError::Control));
        assert_eq!(Name::parse("a\u{7f}"), Err(NameError::Control));
        assert_eq!(Name::parse(&"é".repeat(128)), Err(NameError::TooLong(256)));
    }
}
