//! Shell-style patterns over names and content types (`*.mp3`, `audio/*`).

/// A compiled glob; `*`, `?` and `[...]` as in a shell, matched against a whole name.
#[derive(Debug, Clone)]
pub struct Pattern(glob::Pattern);

impl Pattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        glob::Pattern::new(raw).map(Self).map_err(|error| format!("bad pattern {raw:?}: {error}"))
    }

    pub fn matches(&self, text: &str) -> bool {
        self.0.matches_with(
            text,
            glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: false,
                require_literal_leading_dot: false,
            },
        )
    }

    /// Matches a store path: `*` stays within one folder, `**` crosses folders.
    pub fn matches_path(&self, path: &str) -> bool {
        self.0.matches_with(
            path,
            glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: false,
            },
        )
    }

    /// True when the text has glob metacharacters, so it names a set rather than one entry.
    pub fn is_pattern(raw: &str) -> bool {
        raw.contains(['*', '?', '['])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_names_and_content_types() {
        let mp3 = Pattern::parse("*.mp3").expect("valid");
        assert!(mp3.matches("song1.mp3"));
        assert!(!mp3.matches("song1.mp3.jpg"));
        let audio = Pattern::parse("audio/*").expect("valid");
        assert!(audio.matches("audio/mpeg"));
        assert!(!audio.matches("video/mp4"));
        assert!(Pattern::parse("[").is_err());
        assert!(Pattern::is_pattern("*.mp3") && !Pattern::is_pattern("song.mp3"));
    }
}
