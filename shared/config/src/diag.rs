//! Problems of a config file, all at once, each with its file, line and
//! column.
//!
//! A file is read into a tree that remembers positions (`doc`); frp's keys
//! of features not built yet are taken out first, each with one "not
//! supported yet" line (`compat`); typed settings are read with every error
//! collected (`de::read_all`); validation then names keys, whose position
//! is looked up in the tree. `frpc verify` prints them all in file order.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::doc::{At, Node};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The file cannot be used.
    Error,
    /// frp has this and we do not yet: said once, the rest still runs.
    Unsupported,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file it is in (an included file, or the one given).
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub level: Level,
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A problem while reading, before the files' names are attached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    pub at: Option<At>,
    pub message: String,
    pub level: Level,
}

impl Found {
    pub(crate) fn error(at: Option<At>, message: impl Into<String>) -> Self {
        Found {
            at,
            message: message.into(),
            level: Level::Error,
        }
    }

    pub(crate) fn unsupported(at: Option<At>, message: impl Into<String>) -> Self {
        Found {
            at,
            message: message.into(),
            level: Level::Unsupported,
        }
    }
}

/// The files one config was read from, so positions can name them; a
/// templated file maps its rendered lines back to the lines written.
#[derive(Debug, Default)]
pub(crate) struct Files {
    files: Vec<(PathBuf, Option<Vec<u32>>)>,
}

impl Files {
    /// Adds a file; its number goes into the positions read from it.
    pub(crate) fn add(&mut self, path: &Path, line_map: Option<Vec<u32>>) -> u16 {
        self.files.push((path.to_owned(), line_map));
        u16::try_from(self.files.len() - 1).unwrap_or(u16::MAX)
    }

    pub(crate) fn diagnostic(&self, found: Found) -> Diagnostic {
        let (file, line, column) = match found.at {
            None => (self.path(0), None, None),
            Some(at) => {
                let (path, map) = match self.files.get(usize::from(at.file)) {
                    Some((p, m)) => (p.clone(), m.as_ref()),
                    None => (self.path(0), None),
                };
                let line = at.line as usize;
                match map.and_then(|m| m.get(line.wrapping_sub(1))) {
                    // A line that came out of a template action: its
                    // columns are the rendered ones, so only the line.
                    Some(src) if *src as usize != line => (path, Some(*src as usize), None),
                    _ => (path, Some(line), (at.col > 0).then_some(at.col as usize)),
                }
            }
        };
        Diagnostic {
            file,
            line,
            column,
            message: found.message,
            level: found.level,
        }
    }

    fn path(&self, i: usize) -> PathBuf {
        self.files
            .get(i)
            .map_or_else(|| PathBuf::from("<config>"), |(p, _)| p.clone())
    }
}

/// Problems found by validation, each tied to a key of the file.
pub(crate) struct Problems<'a> {
    /// Where the keys being checked live (a proxy entry, or the whole file).
    scope: &'a Node,
    prefix: String,
    pub(crate) found: Vec<Found>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(scope: &'a Node) -> Self {
        Problems {
            scope,
            prefix: String::new(),
            found: Vec::new(),
        }
    }

    /// Problems of one part of the file: keys are searched in `scope`, and
    /// messages start with `prefix` ("proxy \"ssh\"").
    pub(crate) fn within<'b>(&self, scope: &'b Node, prefix: String) -> Problems<'b> {
        Problems {
            scope,
            prefix,
            found: Vec::new(),
        }
    }

    /// A problem with `key`; its message is `message` as given.
    pub(crate) fn key(&mut self, key: &str, message: impl Into<String>) {
        let at = self
            .scope
            .find_key(key)
            .or_else(|| (!self.prefix.is_empty()).then_some(self.scope.at));
        let message = match self.prefix.as_str() {
            "" => message.into(),
            p => format!("{p}: {}", message.into()),
        };
        self.found.push(Found::error(at, message));
    }

    pub(crate) fn merge(&mut self, other: Problems<'_>) {
        self.found.extend(other.found);
    }
}

/// In file order (those without a place last), errors capped.
pub(crate) fn sorted(files: &Files, mut found: Vec<Found>) -> Vec<Diagnostic> {
    found.sort_by_key(|f| {
        f.at.map_or((u16::MAX, u32::MAX, 0), |a| (a.file, a.line, a.col))
    });
    found.truncate(crate::de::MAX_ERRORS * 4);
    found.into_iter().map(|f| files.diagnostic(f)).collect()
}
