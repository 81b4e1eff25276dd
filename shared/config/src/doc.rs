//! A config file as a tree of values that remember where they were written.
//!
//! Every format (TOML, YAML, JSON, legacy INI) is read into this one tree,
//! so what comes after — frp's keys we know but have not built, typed
//! settings with every error at once, validation naming the line of a key —
//! is written once and says `file:line:column` whatever the format.

use std::fmt;

/// Where a key or value was written: file (index into the loaded files),
/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct At {
    pub file: u16,
    pub line: u32,
    pub col: u32,
}

/// One value of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string the file wrote as one (quoted).
    Str(String),
    /// A scalar whose type comes from where it goes: YAML's plain scalars
    /// and every INI value. `7000` is a port where a number is wanted and
    /// the text "7000" where a string is.
    Plain(String),
    Seq(Vec<Node>),
    /// In file order.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub at: At,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub at: At,
}

/// One step of a path into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[2].c`, as a person reads a key.
pub fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl Node {
    pub fn new(value: Value, at: At) -> Self {
        Node { value, at }
    }

    pub fn map(at: At) -> Self {
        Node::new(Value::Map(Vec::new()), at)
    }

    /// The value under `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, n)| n)
    }

    /// The key and value under `key` of a map.
    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.value {
            Value::Map(m) => m.iter().find(|(k, _)| k.name == key).map(|(k, n)| (k, n)),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(m) => m.iter_mut().find(|(k, _)| k.name == key).map(|(_, n)| n),
            _ => None,
        }
    }

    /// Takes `key` out of a map.
    pub fn take(&mut self, key: &str) -> Option<(Key, Node)> {
        match &mut self.value {
            Value::Map(m) => {
                let i = m.iter().position(|(k, _)| k.name == key)?;
                Some(m.remove(i))
            }
            _ => None,
        }
    }

    /// Sets `key` of a map (replacing it where it is, else at the end).
    pub fn set(&mut self, key: Key, value: Node) {
        if let Value::Map(m) = &mut self.value {
            match m.iter_mut().find(|(k, _)| k.name == key.name) {
                Some(slot) => slot.1 = value,
                None => m.push((key, value)),
            }
        }
    }

    /// The entries of a map (none for anything else).
    pub fn entries(&self) -> &[(Key, Node)] {
        match &self.value {
            Value::Map(m) => m,
            _ => &[],
        }
    }

    /// The text of a string or plain scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) | Value::Plain(s) => Some(s),
            _ => None,
        }
    }

    /// Removes what `path` points at; false when nothing was there.
    pub fn remove(&mut self, path: &[Seg]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut node = self;
        for seg in parents {
            node = match (seg, &mut node.value) {
                (Seg::Key(k), Value::Map(m)) => {
                    match m.iter_mut().find(|(key, _)| &key.name == k) {
                        Some((_, n)) => n,
                        None => return false,
                    }
                }
                (Seg::Index(i), Value::Seq(s)) if *i < s.len() => &mut s[*i],
                _ => return false,
            };
        }
        match (last, &mut node.value) {
            (Seg::Key(k), Value::Map(m)) => {
                let before = m.len();
                m.retain(|(key, _)| &key.name != k);
                m.len() != before
            }
            (Seg::Index(i), Value::Seq(s)) if *i < s.len() => {
                s.remove(*i);
                true
            }
            _ => false,
        }
    }

    /// Where `key` (dotted, `transport.tls.certFile`) is written under this
    /// node: the key itself, or the deepest part of it that is there.
    pub fn find_key(&self, key: &str) -> Option<At> {
        let key = key.split('[').next().unwrap_or(key);
        let mut node = self;
        let mut found = None;
        for part in key.split('.') {
            let Some((k, n)) = node.entry(part) else {
                break;
            };
            found = Some(k.at);
            node = n;
        }
        found
    }

    /// The value as TOML; plain scalars become what they look like.
    pub fn to_toml(&self) -> Option<toml::Value> {
        Some(match &self.value {
            Value::Null => return None,
            Value::Bool(b) => toml::Value::Boolean(*b),
            Value::Int(i) => toml::Value::Integer(*i),
            Value::Float(f) => toml::Value::Float(*f),
            Value::Str(s) => toml::Value::String(s.clone()),
            Value::Plain(s) => plain_to_toml(s),
            Value::Seq(s) => toml::Value::Array(s.iter().filter_map(Node::to_toml).collect()),
            Value::Map(m) => toml::Value::Table(
                m.iter()
                    .filter_map(|(k, n)| Some((k.name.clone(), n.to_toml()?)))
                    .collect(),
            ),
        })
    }
}

/// A plain scalar as the TOML value it looks like.
fn plain_to_toml(s: &str) -> toml::Value {
    match s {
        "true" => return toml::Value::Boolean(true),
        "false" => return toml::Value::Boolean(false),
        _ => {}
    }
    let numeric = !s.is_empty()
        && s.trim_start_matches(['-', '+'])
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit());
    if numeric {
        if let Ok(i) = s.parse::<i64>() {
            return toml::Value::Integer(i);
        }
        if let Ok(f) = s.parse::<f64>() {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(s.to_owned())
}

impl fmt::Display for Value {
    /// What kind of value it is, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) | Value::Plain(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a table",
        })
    }
}

/// Byte offsets to lines and columns.
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub(crate) fn at(&self, text: &str, offset: usize, file: u16) -> At {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|s| *s <= offset);
        let start = self.starts[line - 1];
        let col = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        At {
            file,
            line: line as u32,
            col: col as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32) -> At {
        At {
            file: 0,
            line,
            col: 1,
        }
    }

    fn key(name: &str, line: u32) -> Key {
        Key {
            name: name.into(),
            at: at(line),
        }
    }

    #[test]
    fn paths_find_and_remove() {
        let inner = Node::new(
            Value::Map(vec![(
                key("enable", 3),
                Node::new(Value::Bool(true), at(3)),
            )]),
            at(2),
        );
        let mut root = Node::new(
            Value::Map(vec![
                (key("tls", 2), inner),
                (
                    key("ports", 4),
                    Node::new(
                        Value::Seq(vec![
                            Node::new(Value::Int(1), at(4)),
                            Node::new(Value::Int(2), at(4)),
                        ]),
                        at(4),
                    ),
                ),
            ]),
            at(1),
        );
        assert_eq!(root.find_key("tls.enable"), Some(at(3)));
        assert_eq!(root.find_key("tls.nothing"), Some(at(2)), "deepest part");
        assert!(root.remove(&[Seg::Key("ports".into()), Seg::Index(0)]));
        assert!(!root.remove(&[Seg::Key("ports".into()), Seg::Index(5)]));
        assert!(root.remove(&[Seg::Key("tls".into()), Seg::Key("enable".into())]));
        assert_eq!(root.find_key("tls.enable"), Some(at(2)));
        assert_eq!(
            dotted(&[Seg::Key("a".into()), Seg::Index(2), Seg::Key("b".into())]),
            "a[2].b"
        );
    }

    #[test]
    fn plain_scalars_become_what_they_look_like() {
        assert_eq!(plain_to_toml("7000"), toml::Value::Integer(7000));
        assert_eq!(plain_to_toml("true"), toml::Value::Boolean(true));
        assert_eq!(
            plain_to_toml("0.0.0.0"),
            toml::Value::String("0.0.0.0".into())
        );
        assert_eq!(plain_to_toml("1.5"), toml::Value::Float(1.5));
        assert_eq!(plain_to_toml("inf"), toml::Value::String("inf".into()));
    }

    #[test]
    fn lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        let lines = Lines::new(text);
        assert_eq!(
            lines.at(text, 0, 0),
            At {
                file: 0,
                line: 1,
                col: 1
            }
        );
        let off = text
            .find('=')
            .map(|_| text.rfind('=').unwrap_or(0))
            .unwrap_or(0);
        assert_eq!(
            lines.at(text, off, 0),
            At {
                file: 0,
                line: 2,
                col: 4
            }
        );
    }
}
