//! Errors with line numbers, all of a file at once.
//!
//! serde stops at the first error, so a file is read in passes: the common
//! keys are parsed, and each error's line is commented out and the parse
//! retried, while the text stays valid TOML; each `[[proxies]]` entry is
//! parsed on its own (see `proxy`), an offending key removed and the entry
//! retried; then validation adds what it finds, each naming a key whose line
//! is looked up in the text. `frpc verify` prints them all in file order.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// At most this many errors are collected from one file.
const MAX_ERRORS: usize = 32;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The text of a config file, for finding the line of a key.
pub(crate) struct Source<'a> {
    text: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Source { text }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

    /// The line where `key` (a dotted path such as `transport.tls.certFile`)
    /// is set within `range` of the text: written whole (`a.b = `), as its
    /// last part (`b = ` under a `[a]` header), or as a table header.
    pub(crate) fn find_key(&self, key: &str, range: Range<usize>) -> Option<usize> {
        let key = key.split('[').next().unwrap_or(key);
        let last = key.rsplit('.').next().unwrap_or(key);
        let start = range.start.min(self.text.len());
        let end = range.end.min(self.text.len());
        let mut offset = start;
        for line in self.text[start..end].split_inclusive('\n') {
            let t = line.trim_start();
            let sets = |k: &str| {
                t.strip_prefix(k)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            };
            let header = t.starts_with('[')
                && t.trim_matches(|c| c == '[' || c == ']' || c == '\n' || c == ' ') == key;
            if sets(key) || sets(last) || header {
                return Some(self.line_of(offset));
            }
            offset += line.len();
        }
        None
    }
}

/// Problems found by validation, each tied to a key of the file.
pub(crate) struct Problems<'a> {
    src: &'a Source<'a>,
    /// Where the keys being checked live (a proxy entry, or the whole file).
    scope: Range<usize>,
    prefix: String,
    pub(crate) found: Vec<Diagnostic>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(src: &'a Source<'a>) -> Self {
        Problems {
            src,
            scope: 0..src.text.len(),
            prefix: String::new(),
            found: Vec::new(),
        }
    }

    /// Problems of one part of the file: keys are searched in `scope`, and
    /// messages start with `prefix` ("proxies[2] (name \"ssh\")").
    pub(crate) fn within(&self, scope: Range<usize>, prefix: String) -> Problems<'a> {
        Problems {
            src: self.src,
            scope,
            prefix,
            found: Vec::new(),
        }
    }

    /// A problem with `key`; its message is `message` as given.
    pub(crate) fn key(&mut self, key: &str, message: impl Into<String>) {
        let line = self
            .src
            .find_key(key, self.scope.clone())
            .or_else(|| (!self.prefix.is_empty()).then(|| self.src.line_of(self.scope.start)));
        let message = match self.prefix.as_str() {
            "" => message.into(),
            p => format!("{p}: {}", message.into()),
        };
        self.found.push(Diagnostic { line, message });
    }

    pub(crate) fn merge(&mut self, other: Problems<'_>) {
        self.found.extend(other.found);
    }
}

/// A `toml` error as a diagnostic, its line from the error's span.
pub(crate) fn from_toml(src: &Source<'_>, e: &toml::de::Error) -> Diagnostic {
    Diagnostic {
        line: e.span().map(|s| src.line_of(s.start)),
        message: e.message().trim_end().to_owned(),
    }
}

/// Parses `text` as `T`, collecting every error the retries can reach: the
/// line of each error is commented out and the parse repeated, as long as
/// what is left is still TOML and the error pointed at one line.
pub(crate) fn parse_all<T: DeserializeOwned>(src: &Source<'_>) -> Result<T, Vec<Diagnostic>> {
    let mut text = src.text().to_owned();
    let mut found = Vec::new();
    while found.len() < MAX_ERRORS {
        let e = match toml::from_str::<T>(&text) {
            Ok(v) if found.is_empty() => return Ok(v),
            Ok(_) => break,
            Err(e) => e,
        };
        found.push(from_toml(src, &e));
        let Some(span) = e.span() else { break };
        let line_start = text[..span.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i);
        let line = &text[line_start..line_end];
        if span.end > line_end + 1 || line.is_empty() || line.trim_start().starts_with('#') {
            break;
        }
        // Same length, so the offsets of later lines stay true.
        let blank = format!("#{}", " ".repeat(line.len() - 1));
        let mut next = text.clone();
        next.replace_range(line_start..line_end, &blank);
        if next.parse::<toml::Table>().is_err() {
            break;
        }
        text = next;
    }
    Err(found)
}

/// Errors in file order (those without a line last, in the order found).
pub(crate) fn sorted(mut found: Vec<Diagnostic>) -> Vec<Diagnostic> {
    found.sort_by_key(|d| d.line.unwrap_or(usize::MAX));
    found.truncate(MAX_ERRORS);
    found
}

/// A settings file type: how to read it from text, and where its
/// directory goes (for paths that default next to it).
pub(crate) trait Settings: Sized {
    /// Everything after the syntax check: the value, with every problem
    /// found added to `errors` (the value is used only if there are none).
    fn read(src: &Source<'_>, errors: &mut Vec<Diagnostic>) -> Option<Self>;
    fn set_dir(&mut self, dir: PathBuf);
}

/// Reads `text` (from `path`, for messages): a syntax error ends it at
/// once, otherwise every problem is reported together, in file order.
pub(crate) fn parse<T: Settings>(text: &str, path: &Path) -> Result<T, crate::ConfigError> {
    let src = Source::new(text);
    let mut errors = Vec::new();
    let value = match text.parse::<toml::Table>() {
        Err(e) => {
            errors.push(from_toml(&src, &e));
            None
        }
        Ok(_) => T::read(&src, &mut errors),
    };
    match value {
        Some(v) if errors.is_empty() => Ok(v),
        _ => Err(crate::ConfigError::Invalid {
            path: path.to_owned(),
            errors: sorted(errors),
        }),
    }
}

/// [`parse`] of the file at `path`, its directory recorded.
pub(crate) fn load<T: Settings>(path: &Path) -> Result<T, crate::ConfigError> {
    let text = crate::read_file(path)?;
    let mut value = parse::<T>(&text, path)?;
    value.set_dir(crate::config_dir(path));
    Ok(value)
}
