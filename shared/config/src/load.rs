//! From a file name to typed settings: read, render the template, parse in
//! the file's format, take in included files, then read the settings with
//! every problem collected.

use std::path::{Path, PathBuf};

use crate::diag::{self, Diagnostic, Files, Found, Level};
use crate::doc::{At, Node};
use crate::format::{self, Format};
use crate::legacy::{self, Side};
use crate::ConfigError;

/// A settings type (frps's or frpc's): how to read it from the tree.
pub(crate) trait Settings: Sized {
    /// Whose file (legacy INI keys differ by side).
    const SIDE: Side;
    /// Everything after the syntax: the value, with every problem found
    /// added to `found` (the value is used only if none is an error).
    /// `load` takes in the files `includes` names, for frpc.
    fn read(root: Node, load: &mut Loader, found: &mut Vec<Found>) -> Option<Self>;
    fn set_dir(&mut self, dir: PathBuf);
    /// Where the not-supported-yet lines go once loading succeeded.
    fn notes_mut(&mut self) -> &mut Vec<Diagnostic>;
}

/// The files of one load.
pub(crate) struct Loader {
    pub(crate) files: Files,
    /// Directory of the main file: included paths are relative to it.
    pub(crate) dir: PathBuf,
    side: Side,
    /// The main file was legacy INI: included files are INI proxies too.
    legacy: bool,
    /// The environment, read once, for templates (`.Envs`).
    envs: Option<std::collections::HashMap<String, String>>,
    pub(crate) trust: Trust,
}

/// How far a file is trusted: the operator's file at start, the same file
/// read again by a running process, or one sent to frpc's admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Read at start (or by `frpc verify --allow-unsafe TokenSourceExec`):
    /// token sources are resolved, `exec` ones run when allowed.
    Operator,
    /// Read again while running (reload, `verify`): the token is not
    /// needed (it changes only at the next start), so no command runs;
    /// a `file` source is still read, to catch a mistake.
    Reload,
    /// Sent through the admin API: no token source is resolved, an `exec`
    /// one is refused, includes must stay in the config's folder, and
    /// problems of included files are not quoted back.
    Upload,
}

impl Loader {
    fn new(dir: PathBuf, side: Side) -> Self {
        Loader {
            files: Files::default(),
            dir,
            side,
            legacy: false,
            envs: None,
            trust: Trust::Operator,
        }
    }

    /// Reads one file's text in `format` (None: by its name, else guessed)
    /// into a tree; a problem that stops it is added to `found`.
    pub(crate) fn document(
        &mut self,
        text: &str,
        path: &Path,
        format: Option<Format>,
        found: &mut Vec<Found>,
    ) -> Option<Node> {
        let envs = self.envs.get_or_insert_with(|| std::env::vars().collect());
        let rendered = match crate::template::render(text, envs) {
            Ok(r) => r,
            Err(e) => {
                let file = self.files.add(path, None);
                let at = At {
                    file,
                    line: e.line,
                    col: 0,
                };
                found.push(Found::error(Some(at), format!("template: {}", e.message)));
                return None;
            }
        };
        let text = rendered.text.as_str();
        let file = self.files.add(path, Some(rendered.lines));
        if file == 0 && format.is_none() && legacy::is_legacy(text) {
            self.legacy = true;
            return Some(legacy::parse(text, self.side, file, found));
        }
        if file > 0 && self.legacy {
            return Some(legacy::parse_proxies(text, file, found));
        }
        let format = format.or_else(|| Format::of_path(path));
        match format::parse(text, format, file) {
            Ok(node) => Some(node),
            Err(e) => {
                found.push(Found::error(Some(e.at), e.message));
                None
            }
        }
    }

    /// The included file at `path` (already matched by a glob).
    pub(crate) fn include(&mut self, path: &Path, found: &mut Vec<Found>) -> Option<Node> {
        match std::fs::read_to_string(path) {
            Ok(text) => self.document(&text, path, None, found),
            Err(e) => {
                found.push(Found::error(
                    None,
                    format!("cannot read included file {}: {e}", path.display()),
                ));
                None
            }
        }
    }
}

/// The tree of the file at `path` (template rendered, format detected,
/// legacy INI renamed), before any settings are read: for `convert`.
pub(crate) fn tree(path: &Path, side: Side) -> Result<Node, ConfigError> {
    let text = crate::read_file(path)?;
    let mut loader = Loader::new(crate::config_dir(path), side);
    let mut found = Vec::new();
    let node = loader.document(&text, path, None, &mut found);
    found.retain(|f| f.level == Level::Error);
    match node {
        Some(n) if found.is_empty() => Ok(n),
        _ => Err(ConfigError::Invalid {
            path: path.to_owned(),
            errors: diag::sorted(&loader.files, found),
        }),
    }
}

/// Reads `text` as if it were the file at `path`.
pub(crate) fn parse<T: Settings>(
    text: &str,
    path: &Path,
    format: Option<Format>,
) -> Result<T, ConfigError> {
    parse_as(text, path, format, Trust::Operator)
}

pub(crate) fn parse_as<T: Settings>(
    text: &str,
    path: &Path,
    format: Option<Format>,
    trust: Trust,
) -> Result<T, ConfigError> {
    let mut loader = Loader::new(crate::config_dir(path), T::SIDE);
    loader.trust = trust;
    let mut found = Vec::new();
    let value = loader
        .document(text, path, format, &mut found)
        .and_then(|root| T::read(root, &mut loader, &mut found));
    if trust == Trust::Upload {
        found = found.into_iter().map(unquoted_outside_main).collect();
    }
    let all = diag::sorted(&loader.files, found);
    let has_error = all.iter().any(|d| d.level == Level::Error);
    match value {
        Some(mut v) if !has_error => {
            *v.notes_mut() = all;
            Ok(v)
        }
        // The not-supported-yet lines come with the errors, in file order,
        // so one run shows everything.
        _ => Err(ConfigError::Invalid {
            path: path.to_owned(),
            errors: all,
        }),
    }
}

/// [`parse`] of the file at `path`, its directory recorded.
pub(crate) fn load<T: Settings>(path: &Path) -> Result<T, ConfigError> {
    load_as(path, Trust::Operator)
}

pub(crate) fn load_as<T: Settings>(path: &Path, trust: Trust) -> Result<T, ConfigError> {
    let text = crate::read_file(path)?;
    let mut value = parse_as::<T>(&text, path, None, trust)?;
    value.set_dir(crate::config_dir(path));
    Ok(value)
}

/// A problem found in another file than the one uploaded keeps its place
/// (file and line, which the operator can look up) but not its words,
/// which may quote that file.
fn unquoted_outside_main(mut f: Found) -> Found {
    if f.at.is_some_and(|a| a.file != 0) {
        f.message =
            "a problem in this included file (its text is not quoted back to the admin API; \
                     `frpc verify` on the host shows it)"
                .into();
    }
    f
}

/// Only the table `key` of the file at `path` (its keys in `ignored`
/// dropped), whatever else the file holds: `frpc status` must reach the
/// running client even when the rest of the file has since been broken.
pub(crate) fn section<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    key: &str,
    ignored: &[&str],
) -> Result<T, ConfigError> {
    let text = crate::read_file(path)?;
    let mut loader = Loader::new(crate::config_dir(path), Side::Client);
    let mut found = Vec::new();
    let value = loader
        .document(&text, path, None, &mut found)
        .and_then(|mut root| {
            let Some((_, mut node)) = root.take(key) else {
                return Some(T::default());
            };
            for k in ignored {
                node.take(k);
            }
            let (value, errors) = crate::de::read_all::<T>(&node);
            found.extend(
                errors
                    .into_iter()
                    .map(|e| Found::error(e.at, e.describe_in(key))),
            );
            value
        });
    match value {
        Some(v) if found.is_empty() => Ok(v),
        _ => Err(ConfigError::Invalid {
            path: path.to_owned(),
            errors: diag::sorted(&loader.files, found),
        }),
    }
}

/// Most files `includes` may bring in (a glob such as `/**/*` would
/// otherwise read a whole disk).
const MAX_INCLUDED: usize = 256;

/// Directory entries one uploaded pattern may make us read.
const MAX_VISITED: usize = 10_000;

/// A relative pattern of an uploaded config, matched one component at a
/// time inside `home` (canonical): no `**`, a directory is entered only if
/// it resolves inside `home` (a symlink out of it is not followed), and at
/// most [`MAX_VISITED`] entries are read. The glob crate would follow a
/// link to `/` and walk the whole disk before any match could be refused.
fn confined_glob(home: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if pattern.contains("**") {
        return Err("`**` is not allowed in a config sent to the admin API".into());
    }
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let mut dirs = vec![home.to_owned()];
    let mut visited = 0usize;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let pat = glob::Pattern::new(part).map_err(|e| e.to_string())?;
        let mut next = Vec::new();
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                visited += 1;
                if visited > MAX_VISITED {
                    return Err(format!("reads more than {MAX_VISITED} directory entries"));
                }
                let name = entry.file_name();
                if !name.to_str().is_some_and(|n| pat.matches(n)) {
                    continue;
                }
                let path = entry.path();
                let Ok(real) = path.canonicalize() else {
                    continue;
                };
                if !real.starts_with(home) {
                    return Err("reaches outside the config's folder; a config sent to the \
                                admin API may only include files in that folder"
                        .into());
                }
                if (last && real.is_file()) || (!last && real.is_dir()) {
                    next.push(path);
                }
            }
        }
        dirs = next;
    }
    dirs.sort();
    Ok(dirs)
}

/// The files `includes` names: each pattern is a glob, relative to the
/// main file's directory, matched against file names (sorted, so the
/// proxies come in a stable order). `confined` (an upload): only files
/// inside that directory, found without leaving it.
pub(crate) fn expand_includes(
    patterns: &[String],
    dir: &Path,
    confined: bool,
    found: &mut Vec<Found>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let home = confined.then(|| dir.canonicalize().unwrap_or_else(|_| dir.to_owned()));
    for pattern in patterns {
        let matched = match &home {
            Some(home) => confined_pattern(home, pattern),
            None => glob_pattern(dir, pattern),
        };
        match matched {
            Ok(files) => out.extend(files),
            Err(why) => found.push(Found::error(None, format!("includes: {pattern:?}{why}"))),
        }
        if out.len() > MAX_INCLUDED {
            found.push(Found::error(
                None,
                format!("includes: more than {MAX_INCLUDED} files match; name fewer"),
            ));
            out.truncate(MAX_INCLUDED);
            break;
        }
    }
    out
}

/// One pattern of an uploaded config. Absolute and `..` patterns are
/// refused before any walk: a glob over / (whose symlink loops it follows)
/// would run for minutes before its matches could be.
fn confined_pattern(home: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let leaves = Path::new(pattern).is_absolute()
        || Path::new(pattern)
            .components()
            .any(|c| c == std::path::Component::ParentDir);
    if leaves {
        return Err(
            " names a place outside the config's folder; a config sent to the admin \
                    API may only include files in that folder (a relative pattern without \"..\")"
                .into(),
        );
    }
    confined_glob(home, pattern).map_err(|why| format!(": {why}"))
}

/// One pattern of the operator's own config, by the glob crate.
fn glob_pattern(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = match Path::new(pattern).is_absolute() {
        true => PathBuf::from(pattern),
        false => dir.join(pattern),
    };
    let text = full.to_str().ok_or(" is not valid UTF-8")?;
    let paths = glob::glob(text).map_err(|e| format!(": {e}"))?;
    let mut files: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .take(MAX_INCLUDED + 1)
        .collect();
    files.sort();
    Ok(files)
}
