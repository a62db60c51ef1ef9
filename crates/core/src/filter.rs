//! The record filter language: which objects a device holds.
//!
//! ```text
//! expr       := term ("or" term)*
//! term       := factor ("and" factor)*
//! factor     := "not" factor | "(" expr ")" | comparison
//! comparison := field op value
//! ```
//!
//! | field | values | operators |
//! |---|---|---|
//! | `path`, `name`, `type`, `from`, `to`, `subject` | `"quoted"` or bare text | `=` `!=` `~` `!~` (`~`: glob; in `path`, `*` stays within a folder and `**` crosses folders) |
//! | `kind` | `file`, `message` | `=` `!=` |
//! | `size` | `20MB`, `1.5GiB`, `512` (bytes; KB/MB/GB/TB are 1000-based, KiB/MiB/GiB/TiB 1024-based) | `=` `!=` `<` `<=` `>` `>=` |
//! | `modified`, `created`, `date` | `2026-01-31` or `2026-01-31T12:00:00Z` | `=` `!=` `<` `<=` `>` `>=` |
//! | `age` | `30d`, `12h`, `2w` (time since `modified`) | `<` `<=` `>` `>=` |
//! | `flag` | a flag such as `seen` | `=` (has it) `!=` (has not) |
//!
//! `date` is a message's Date, and `modified` for files; `to` matches when any recipient does.
//! Example: `kind = file and type ~ "audio/*" and size < 20MB and age < 30d`.

use crate::kind::ObjectKind;
use crate::pattern::Pattern;
use jiff::{SignedDuration, Timestamp};
use std::fmt;

/// What a filter looks at in one object.
#[derive(Debug, Clone, Copy)]
pub struct ObjectFacts<'a> {
    pub path: &'a str,
    pub name: &'a str,
    pub kind: ObjectKind,
    pub content_type: &'a str,
    pub size: u64,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub date: Option<Timestamp>,
    pub flags: &'a [String],
    pub from: Option<&'a str>,
    pub to: &'a [String],
    pub subject: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad filter at column {column}: {message}")]
pub struct FilterError {
    pub column: usize,
    pub message: String,
}

/// The longest filter text, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// The deepest nesting of `not` and parentheses a filter may have.
pub const MAX_FILTER_DEPTH: usize = 64;

/// A parsed filter; `Display` gives back canonical text that parses to the same filter.
#[derive(Debug, Clone)]
pub struct Filter {
    source: String,
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Test(Test),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Glob,
    NotGlob,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextField {
    Path,
    Name,
    Type,
    From,
    To,
    Subject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeField {
    Modified,
    Created,
    Date,
}

#[derive(Debug, Clone)]
enum Test {
    Text { field: TextField, op: Op, text: String, pattern: Option<Pattern> },
    Kind { negated: bool, kind: ObjectKind },
    Size { op: Op, bytes: u64 },
    Time { field: TimeField, op: Op, at: Timestamp },
    Age { op: Op, age: SignedDuration },
    Flag { negated: bool, flag: String },
}

impl Filter {
    pub fn parse(source: &str) -> Result<Self, FilterError> {
        if source.len() > MAX_FILTER_BYTES {
            return Err(FilterError {
                column: 1,
                message: format!("a filter is at most {MAX_FILTER_BYTES} bytes long; this one is {}", source.len()),
            });
        }
        let tokens = tokenize(source)?;
        let mut parser = Parser { tokens, at: 0, end: source.chars().count() + 1, depth: 0 };
        let root = parser.expr()?;
        if let Some(token) = parser.tokens.get(parser.at) {
            return Err(FilterError { column: token.column, message: format!("unexpected {:?}", token.text) });
        }
        Ok(Self { source: source.trim().to_owned(), root })
    }

    pub fn matches(&self, object: &ObjectFacts<'_>, now: Timestamp) -> bool {
        self.root.matches(object, now)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the filter reads the object's path: such a filter must be evaluated again for
    /// everything below a folder that moves.
    pub fn reads_path(&self) -> bool {
        self.root.reads_path()
    }

    /// The ages the filter compares with, each once: an object's answer can change with time
    /// alone only when its age passes one of them.
    pub fn ages(&self) -> Vec<SignedDuration> {
        let mut ages = Vec::new();
        self.root.ages(&mut ages);
        ages.sort();
        ages.dedup();
        ages
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Node {
    fn matches(&self, object: &ObjectFacts<'_>, now: Timestamp) -> bool {
        match self {
            Node::Or(nodes) => nodes.iter().any(|node| node.matches(object, now)),
            Node::And(nodes) => nodes.iter().all(|node| node.matches(object, now)),
            Node::Not(node) => !node.matches(object, now),
            Node::Test(test) => test.matches(object, now),
        }
    }

    fn reads_path(&self) -> bool {
        match self {
            Node::Or(nodes) | Node::And(nodes) => nodes.iter().any(Node::reads_path),
            Node::Not(node) => node.reads_path(),
            Node::Test(Test::Text { field, .. }) => *field == TextField::Path,
            Node::Test(_) => false,
        }
    }

    fn ages(&self, into: &mut Vec<SignedDuration>) {
        match self {
            Node::Or(nodes) | Node::And(nodes) => nodes.iter().for_each(|node| node.ages(into)),
            Node::Not(node) => node.ages(into),
            Node::Test(Test::Age { age, .. }) => into.push(*age),
            Node::Test(_) => {}
        }
    }
}

fn compare<T: Ord>(op: Op, left: T, right: T) -> bool {
    match op {
        Op::Eq => left == right,
        Op::Ne => left != right,
        Op::Lt => left < right,
        Op::Le => left <= right,
        Op::Gt => left > right,
        Op::Ge => left >= right,
        Op::Glob | Op::NotGlob => false,
    }
}

impl Test {
    fn matches(&self, object: &ObjectFacts<'_>, now: Timestamp) -> bool {
        match self {
            Test::Text { field, op, text, pattern } => {
                let one = |value: &str| match (op, pattern) {
                    (Op::Glob, Some(pattern)) => {
                        if *field == TextField::Path {
                            pattern.matches_path(value)
                        } else {
                            pattern.matches(value)
                        }
                    }
                    (Op::NotGlob, Some(pattern)) => {
                        !(if *field == TextField::Path { pattern.matches_path(value) } else { pattern.matches(value) })
                    }
                    (Op::Ne, _) => value != text,
                    _ => value == text,
                };
                match field {
                    TextField::Path => one(object.path),
                    TextField::Name => one(object.name),
                    TextField::Type => one(object.content_type),
                    TextField::From => object.from.is_some_and(one),
                    TextField::Subject => object.subject.is_some_and(one),
                    TextField::To => object.to.iter().any(|to| one(to)),
                }
            }
            Test::Kind { negated, kind } => (object.kind == *kind) != *negated,
            Test::Size { op, bytes } => compare(*op, object.size, *bytes),
            Test::Time { field, op, at } => {
                let value = match field {
                    TimeField::Modified => object.modified,
                    TimeField::Created => object.created,
                    TimeField::Date => object.date.unwrap_or(object.modified),
                };
                compare(*op, value, *at)
            }
            Test::Age { op, age } => compare(*op, now.duration_since(object.modified), *age),
            Test::Flag { negated, flag } => object.flags.iter().any(|has| has == flag) != *negated,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    quoted: bool,
    column: usize,
}

fn tokenize(source: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(FilterError { column, message: "unterminated string".into() }),
                    Some('"') => break,
                    Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                        text.extend(chars.get(i + 1));
                        i += 2;
                    }
                    Some(other) => {
                        text.push(*other);
                        i += 1;
                    }
                }
            }
            i += 1;
            tokens.push(Token { text, quoted: true, column });
        } else if c == '(' || c == ')' {
            tokens.push(Token { text: c.to_string(), quoted: false, column });
            i += 1;
        } else if matches!(c, '=' | '!' | '<' | '>' | '~') {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["!=", "!~", "<=", ">="].into_iter().find(|op| *op == two).unwrap_or_default();
            let text = if op.is_empty() { c.to_string() } else { op.to_owned() };
            if text == "!" {
                return Err(FilterError { column, message: "'!' must be followed by '=' or '~'".into() });
            }
            i += text.len();
            tokens.push(Token { text, quoted: false, column });
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '(' | ')' | '"' | '=' | '!' | '<' | '>' | '~')
            {
                i += 1;
            }
            tokens.push(Token { text: chars[start..i].iter().collect(), quoted: false, column });
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    end: usize,
    /// How many `not`s and parentheses enclose the factor being read.
    depth: usize,
}

impl Parser {
    fn peek_word(&self, word: &str) -> bool {
        self.tokens.get(self.at).is_some_and(|token| !token.quoted && token.text.eq_ignore_ascii_case(word))
    }

    fn next(&mut self, expected: &str) -> Result<Token, FilterError> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| FilterError { column: self.end, message: format!("expected {expected}, found the end") })?;
        self.at += 1;
        Ok(token)
    }

    fn expr(&mut self) -> Result<Node, FilterError> {
        let mut nodes = vec![self.term()?];
        while self.peek_word("or") {
            self.at += 1;
            nodes.push(self.term()?);
        }
        Ok(if nodes.len() == 1 { nodes.remove(0) } else { Node::Or(nodes) })
    }

    fn term(&mut self) -> Result<Node, FilterError> {
        let mut nodes = vec![self.factor()?];
        while self.peek_word("and") {
            self.at += 1;
            nodes.push(self.factor()?);
        }
        Ok(if nodes.len() == 1 { nodes.remove(0) } else { Node::And(nodes) })
    }

    /// Invariant: the parser recurses only here, and at most [`MAX_FILTER_DEPTH`] deep, so no
    /// input can exhaust the stack (nor can evaluating what it returns).
    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, FilterError>) -> Result<T, FilterError> {
        if self.depth >= MAX_FILTER_DEPTH {
            // The `not` or `(` just read is the one too deep.
            let column = self.tokens.get(self.at.saturating_sub(1)).map_or(self.end, |token| token.column);
            return Err(FilterError { column, message: format!("nested more than {MAX_FILTER_DEPTH} levels deep") });
        }
        self.depth += 1;
        let read = read(self);
        self.depth -= 1;
        read
    }

    fn factor(&mut self) -> Result<Node, FilterError> {
        if self.peek_word("not") {
            self.at += 1;
            return self.nested(|parser| Ok(Node::Not(Box::new(parser.factor()?))));
        }
        if self.tokens.get(self.at).is_some_and(|token| !token.quoted && token.text == "(") {
            self.at += 1;
            let inner = self.nested(Self::expr)?;
            let close = self.next("')'")?;
            if close.quoted || close.text != ")" {
                return Err(FilterError {
                    column: close.column,
                    message: format!("expected ')', found {:?}", close.text),
                });
            }
            return Ok(inner);
        }
        self.comparison().map(Node::Test)
    }

    fn comparison(&mut self) -> Result<Test, FilterError> {
        let field = self.next("a field name")?;
        if field.quoted || ["and", "or", ")"].iter().any(|word| field.text.eq_ignore_ascii_case(word)) {
            return Err(FilterError {
                column: field.column,
                message: format!("expected a field name, found {:?}", field.text),
            });
        }
        let op_token = self.next("an operator")?;
        let value = self.next("a value")?;
        let op = match (op_token.quoted, op_token.text.as_str()) {
            (false, "=") => Op::Eq,
            (false, "!=") => Op::Ne,
            (false, "~") => Op::Glob,
            (false, "!~") => Op::NotGlob,
            (false, "<") => Op::Lt,
            (false, "<=") => Op::Le,
            (false, ">") => Op::Gt,
            (false, ">=") => Op::Ge,
            _ => {
                return Err(FilterError {
                    column: op_token.column,
                    message: format!("expected an operator (= != ~ !~ < <= > >=), found {:?}", op_token.text),
                });
            }
        };
        let fail = |message: String| FilterError { column: value.column, message };
        let op_fail =
            |allowed: &str| FilterError { column: op_token.column, message: format!("{} takes {allowed}", field.text) };
        let text_field = match field.text.to_ascii_lowercase().as_str() {
            "path" => Some(TextField::Path),
            "name" => Some(TextField::Name),
            "type" => Some(TextField::Type),
            "from" => Some(TextField::From),
            "to" => Some(TextField::To),
            "subject" => Some(TextField::Subject),
            _ => None,
        };
        if let Some(text_field) = text_field {
            if !matches!(op, Op::Eq | Op::Ne | Op::Glob | Op::NotGlob) {
                return Err(op_fail("= != ~ !~"));
            }
            let pattern =
                matches!(op, Op::Glob | Op::NotGlob).then(|| Pattern::parse(&value.text)).transpose().map_err(fail)?;
            return Ok(Test::Text { field: text_field, op, text: value.text, pattern });
        }
        match field.text.to_ascii_lowercase().as_str() {
            "kind" => {
                let negated = match op {
                    Op::Eq => false,
                    Op::Ne => true,
                    _ => return Err(op_fail("= !=")),
                };
                let kind = value.text.parse::<ObjectKind>().map_err(fail)?;
                Ok(Test::Kind { negated, kind })
            }
            "flag" => {
                let negated = match op {
                    Op::Eq => false,
                    Op::Ne => true,
                    _ => return Err(op_fail("= (has) and != (has not)")),
                };
                Ok(Test::Flag { negated, flag: value.text })
            }
            "size" => {
                ordered(op).map_err(|()| op_fail("= != < <= > >="))?;
                Ok(Test::Size { op, bytes: parse_size(&value.text).map_err(fail)? })
            }
            "modified" | "created" | "date" => {
                ordered(op).map_err(|()| op_fail("= != < <= > >="))?;
                let field = match field.text.to_ascii_lowercase().as_str() {
                    "modified" => TimeField::Modified,
                    "created" => TimeField::Created,
                    _ => TimeField::Date,
                };
                Ok(Test::Time { field, op, at: parse_time(&value.text).map_err(fail)? })
            }
            "age" => {
                if !matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) {
                    return Err(op_fail("< <= > >="));
                }
                Ok(Test::Age { op, age: parse_age(&value.text).map_err(fail)? })
            }
            other => Err(FilterError {
                column: field.column,
                message: format!(
                    "unknown field {other:?} (fields: path name type from to subject kind size modified created date age flag)"
                ),
            }),
        }
    }
}

fn ordered(op: Op) -> Result<(), ()> {
    if matches!(op, Op::Glob | Op::NotGlob) { Err(()) } else { Ok(()) }
}

/// `512`, `20MB`, `1.5GiB`: bytes, with 1000- or 1024-based units.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let split = raw.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("bad size {raw:?} (e.g. 512, 20MB, 1.5GiB)"))?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("bad size unit in {raw:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    let bytes = (number * scale).round();
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("size {raw:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// `30d`, `12h`, `2w`, `90m`, `45s`.
pub fn parse_age(raw: &str) -> Result<SignedDuration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: i64 = number.parse().map_err(|_| format!("bad age {raw:?} (e.g. 30d, 12h, 2w)"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("bad age unit in {raw:?} (s, m, h, d, w)")),
    };
    number.checked_mul(seconds).map(SignedDuration::from_secs).ok_or_else(|| format!("age {raw:?} is out of range"))
}

/// `2026-01-31` (midnight UTC) or an RFC 3339 instant.
pub fn parse_time(raw: &str) -> Result<Timestamp, String> {
    raw.parse::<Timestamp>()
        .or_else(|_| {
            raw.parse::<jiff::civil::Date>()
                .map(|date| date.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()))
                .and_then(|t| t)
        })
        .map_err(|_| format!("bad date {raw:?} (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song() -> ObjectFacts<'static> {
        static FLAGS: [String; 0] = [];
        ObjectFacts {
            path: "/content/favourite song/song1.mp3",
            name: "song1.mp3",
            kind: ObjectKind::File,
            content_type: "audio/mpeg",
            size: 5_000_000,
            created: Timestamp::from_second(1_800_000_000).expect("valid"),
            modified: Timestamp::from_second(1_800_000_000).expect("valid"),
            date: None,
            flags: &FLAGS,
            from: None,
            to: &[],
            subject: None,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000 + 10 * 86_400).expect("valid")
    }

    fn check(source: &str) -> bool {
        Filter::parse(source).unwrap_or_else(|error| panic!("{source}: {error}")).matches(&song(), now())
    }

    #[test]
    fn evaluates_each_field_and_operator() {
        for yes in [
            r#"kind = file and type ~ "audio/*" and size < 20MB"#,
            "path ~ /content/**",
            r#"path ~ "/content/*/*.mp3""#,
            "not path ~ /content/*.mp3",
            "name = song1.mp3",
            "size >= 5MB and size <= 5MB",
            "size > 4MiB",
            "age < 30d and age > 1w",
            "modified < 2027-12-31 and modified >= 2027-01-15T00:00:00Z",
            "date = 2027-01-15T08:00:00Z",
            "flag != seen",
            "kind = message or (type !~ video/* and not size > 1GB)",
        ] {
            assert!(check(yes), "{yes}");
        }
        for no in
            ["kind = message", "type = audio/ogg", "size < 1MB", "age > 30d", "flag = seen", "from ~ *", "to = a@b.c"]
        {
            assert!(!check(no), "{no}");
        }
    }

    #[test]
    fn refuses_bad_syntax_with_the_column() {
        for (source, column) in [
            ("size < lots", 8),
            ("colour = red", 1),
            ("kind ~ file", 6),
            ("size ~ 1MB", 6),
            ("(kind = file", 13),
            ("kind = file and", 16),
            ("kind = file or or", 16),
            ("name = \"open", 8),
            ("age = 3d", 5),
            ("kind = folder", 8),
            ("name ! x", 6),
        ] {
            let error = Filter::parse(source).expect_err(source);
            assert_eq!(error.column, column, "{source}: {error}");
        }
    }

    #[test]
    fn knows_whether_it_reads_paths() {
        assert!(Filter::parse("kind = file or not path ~ /a/**").is_ok_and(|filter| filter.reads_path()));
        assert!(Filter::parse("kind = file and size < 1MB").is_ok_and(|filter| !filter.reads_path()));
    }

    #[test]
    fn parses_sizes_ages_and_dates() {
        assert_eq!(parse_size("20MB"), Ok(20_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("12XB").is_err());
        assert_eq!(parse_age("2w"), Ok(SignedDuration::from_hours(336)));
        assert!(parse_age("3y").is_err());
        assert_eq!(parse_time("2026-01-31").map(|t| t.to_string()), Ok("2026-01-31T00:00:00Z".to_owned()));
    }

    /// Deep nesting is refused with the column where it goes too deep, before any recursion
    /// could exhaust the stack (a filter of 50,000 `not`s once aborted the server).
    #[test]
    fn refuses_filters_nested_too_deep_or_too_long() {
        let nots = format!("{}kind = file", "not ".repeat(50_000));
        let error = Filter::parse(&nots).expect_err("50,000 nots");
        assert!(error.message.contains("4096 bytes"), "{error}");
        let nots = format!("{}kind = file", "not ".repeat(MAX_FILTER_DEPTH + 1));
        let error = Filter::parse(&nots).expect_err("65 nots");
        assert_eq!(error.column, 4 * MAX_FILTER_DEPTH + 1, "{error}");
        assert!(error.message.contains("nested more than 64"), "{error}");
        let parens = format!("{}kind = file{}", "(".repeat(2000), ")".repeat(2000));
        assert!(Filter::parse(&parens).is_err_and(|error| error.message.contains("nested")));
        let deepest = format!("{}kind = file", "not ".repeat(MAX_FILTER_DEPTH));
        assert!(Filter::parse(&deepest).is_ok());
        let long = format!("name = \"{}\"", "x".repeat(MAX_FILTER_BYTES));
        assert!(Filter::parse(&long).is_err_and(|error| error.column == 1));
    }

    fn filter_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let token = prop_oneof![
            Just("not".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("and".to_owned()),
            Just("or".to_owned()),
            Just("name".to_owned()),
            Just("size".to_owned()),
            Just("age".to_owned()),
            Just("path".to_owned()),
            Just("flag".to_owned()),
            Just("=".to_owned()),
            Just("!=".to_owned()),
            Just("<".to_owned()),
            Just("~".to_owned()),
            Just("\"a b\"".to_owned()),
            Just("1MB".to_owned()),
            Just("3d".to_owned()),
            Just("/a/**".to_owned()),
            "\\PC{0,6}",
        ];
        prop_oneof![proptest::collection::vec(token, 0..200).prop_map(|tokens| tokens.join(" ")), "\\PC{0,300}"]
    }

    proptest::proptest! {
        /// No text makes the parser panic or overflow; what parses reads back the same.
        #[test]
        fn any_text_parses_or_is_refused(source in filter_text()) {
            if let Ok(filter) = Filter::parse(&source) {
                let again = Filter::parse(&filter.to_string());
                proptest::prop_assert!(again.is_ok());
                let _ = filter.matches(&song(), now());
            }
        }
    }
}
