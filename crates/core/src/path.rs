//! Absolute paths in a user's store, as people type them: `/content/favourite song`.

use crate::name::{Name, NameError};
use std::fmt;

/// An absolute path in the store: a list of validated names below the root folder.
///
/// `/` is the root; a trailing slash is accepted and carries no meaning of its own (callers that
/// treat `dir/` as "into this folder" look at the raw text themselves).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StorePath {
    components: Vec<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a store path must start with '/' (got {0:?})")]
    NotAbsolute(String),
    #[error("bad name {component:?} in path: {reason}")]
    BadName { component: String, reason: NameError },
}

impl StorePath {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(PathError::NotAbsolute(raw.to_owned()));
        };
        let components = rest
            .split('/')
            .filter(|part| !part.is_empty())
            .map(|part| Name::parse(part).map_err(|reason| PathError::BadName { component: part.to_owned(), reason }))
            .collect::<Result<_, _>>()?;
        Ok(Self { components })
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    pub fn components(&self) -> &[Name] {
        &self.components
    }

    /// The parent folder and the last name; `None` for the root.
    pub fn split_last(&self) -> Option<(StorePath, &Name)> {
        let (last, parents) = self.components.split_last()?;
        Some((StorePath { components: parents.to_vec() }, last))
    }

    pub fn join(&self, name: &Name) -> StorePath {
        let mut components = self.components.clone();
        components.push(name.clone());
        StorePath { components }
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &StorePath) -> bool {
        self.components.starts_with(&other.components)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.components.is_empty() {
            return f.write_str("/");
        }
        for name in &self.components {
            write!(f, "/{name}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_repeated_and_trailing_slashes() {
        let path = StorePath::parse("/content//favourite song/").expect("valid path");
        assert_eq!(path.to_string(), "/content/favourite song");
        assert_eq!(StorePath::parse("/").expect("root"), StorePath::root());
        assert_eq!(StorePath::root().to_string(), "/");
    }

    #[test]
    fn refuses_relative_paths_and_bad_components() {
        assert!(matches!(StorePath::parse("content"), Err(PathError::NotAbsolute(_))));
        assert!(matches!(StorePath::parse("/a/../b"), Err(PathError::BadName { reason: NameError::Dots, .. })));
        assert!(matches!(StorePath::parse("/a/\u{1}"), Err(PathError::BadName { reason: NameError::Control, .. })));
    }

    #[test]
    fn splits_joins_and_compares_prefixes() {
        let path = StorePath::parse("/content/song.mp3").expect("valid");
        let (parent, name) = path.split_last().expect("not root");
        assert_eq!(parent.to_string(), "/content");
        assert_eq!(name.as_str(), "song.mp3");
        assert_eq!(parent.join(name), path);
        assert!(path.starts_with(&parent));
        assert!(!parent.starts_with(&path));
        assert!(StorePath::root().split_last().is_none());
    }
}
