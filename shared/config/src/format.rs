//! TOML, YAML and JSON text to the tree (`doc`), as frp reads them: by the
//! file's extension, else TOML, then JSON when the text opens with `{`,
//! then YAML.
//!
//! TOML is read by the `toml` crate's spanned parser. YAML by `yaml-rust2`:
//! `serde_yaml`, the best-known crate, is unmaintained since 2024; yaml-rust2
//! is a maintained, pure-Rust YAML 1.2 parser whose event API gives the line
//! and column of every scalar, which the errors need. JSON is checked by
//! `serde_json` (its messages are the clearest for JSON) and then read by the
//! YAML parser for the positions (JSON is YAML 1.2).

use std::path::Path;

use toml::de::{DeTable, DeValue};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::doc::{At, Key, Lines, Node, Value};

/// Most values a YAML file may expand to: aliases copy what they point
/// at, so a small file of aliases of aliases could otherwise grow
/// without end (a "billion laughs").
const MAX_YAML_VALUES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    /// From the file name, as frp: `.toml`, `.yaml`/`.yml`, `.json`.
    pub fn of_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// A syntax error: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: At,
    pub message: String,
}

/// Reads `text` in `format` (None: guess as frp does) as file number `file`.
pub fn parse(text: &str, format: Option<Format>, file: u16) -> Result<Node, SyntaxError> {
    match format {
        Some(Format::Toml) => parse_toml(text, file),
        Some(Format::Yaml) => parse_yaml(text, file),
        Some(Format::Json) => parse_json(text, file),
        None => match parse_toml(text, file) {
            Ok(n) => Ok(n),
            Err(toml_error) if text.trim_start().starts_with('{') => {
                parse_json(text, file).map_err(|_| toml_error)
            }
            Err(toml_error) => match parse_yaml(text, file) {
                Ok(n) if matches!(n.value, Value::Map(_)) => Ok(n),
                _ => Err(toml_error),
            },
        },
    }
}

fn parse_toml(text: &str, file: u16) -> Result<Node, SyntaxError> {
    let lines = Lines::new(text);
    let at = |offset: usize| lines.at(text, offset, file);
    match DeTable::parse(text) {
        Ok(root) => {
            let span = root.span();
            Ok(Node::new(
                Value::Map(toml_table(root.get_ref(), &at)),
                at(span.start),
            ))
        }
        Err(e) => Err(SyntaxError {
            at: at(e.span().map_or(0, |s| s.start)),
            message: e.message().trim_end().to_owned(),
        }),
    }
}

fn toml_table(t: &DeTable<'_>, at: &dyn Fn(usize) -> At) -> Vec<(Key, Node)> {
    t.iter()
        .map(|(k, v)| {
            let key = Key {
                name: k.get_ref().to_string(),
                at: at(k.span().start),
            };
            (key, toml_value(v.get_ref(), at(v.span().start), at))
        })
        .collect()
}

fn toml_value(v: &DeValue<'_>, here: At, at: &dyn Fn(usize) -> At) -> Node {
    let value = match v {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Int(n),
            // Beyond i64: kept as text, so the error says which number.
            Err(_) => Value::Plain(i.to_string()),
        },
        DeValue::Float(f) => Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Str(d.to_string()),
        DeValue::Array(a) => Value::Seq(
            a.iter()
                .map(|v| toml_value(v.get_ref(), at(v.span().start), at))
                .collect(),
        ),
        DeValue::Table(t) => Value::Map(toml_table(t, at)),
    };
    Node::new(value, here)
}

fn parse_json(text: &str, file: u16) -> Result<Node, SyntaxError> {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        return Err(SyntaxError {
            at: At {
                file,
                line: e.line() as u32,
                col: e.column() as u32,
            },
            message: strip_position(&e.to_string()),
        });
    }
    parse_yaml(text, file)
}

/// serde_json's "… at line 3 column 5": the position is shown separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn parse_yaml(text: &str, file: u16) -> Result<Node, SyntaxError> {
    // yaml-rust2 takes a NUL for the end of the text and silently reads no
    // further; YAML allows none (it is not printable).
    if let Some(i) = text.find('\0') {
        let before = &text[..i];
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        return Err(SyntaxError {
            at: At {
                file,
                line: before.matches('\n').count() as u32 + 1,
                col: before[line_start..].chars().count() as u32 + 1,
            },
            message: "a NUL character, which YAML does not allow".into(),
        });
    }
    let mut builder = YamlBuilder {
        file,
        end: (
            text.split('\n').count(),
            text.rsplit('\n').next().map_or(0, |l| l.chars().count()),
        ),
        stack: Vec::new(),
        anchors: Vec::new(),
        values: 0,
        root: None,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        let info = e.info().to_owned();
        return Err(SyntaxError {
            at: builder.at(*m),
            message: info,
        });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    let mut root = builder.root.unwrap_or_else(|| {
        Node::map(At {
            file,
            line: 1,
            col: 1,
        })
    });
    if let Value::Null = root.value {
        root.value = Value::Map(Vec::new());
    }
    // As frp: top-level keys starting with "." hold YAML anchors to merge
    // from (`.common: &c {...}` … `<<: *c`) and are not settings.
    if let Value::Map(m) = &mut root.value {
        m.retain(|(k, _)| !k.name.starts_with('.'));
    }
    Ok(root)
}

/// Builds the tree from the YAML parser's events.
struct YamlBuilder {
    file: u16,
    /// The last line of the text and its length in characters: the
    /// scanner gives the end of the stream a line of its own, past the
    /// last, and what it places there is placed at the end of the last line.
    end: (usize, usize),
    /// Open collections; a map's pending key waits in the `Option`.
    stack: Vec<(Node, Option<Key>, usize)>,
    /// Anchored values by anchor id (and how many values each holds), for
    /// aliases.
    anchors: Vec<(usize, Node, usize)>,
    /// Values made so far, aliases counted at their expanded size.
    values: usize,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl YamlBuilder {
    fn at(&self, m: Marker) -> At {
        let (line, col) = match m.line() {
            l if l > self.end.0 => self.end,
            l => (l, m.col()),
        };
        At {
            file: self.file,
            line: line as u32,
            col: col as u32 + 1,
        }
    }

    /// A finished value goes into its parent (or becomes the root).
    fn put(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = size(&node);
            self.anchors.push((anchor, node.clone(), size));
        }
        let Some((parent, key, _)) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match key.take() {
                None => {
                    let name = match &node.value {
                        Value::Str(s) | Value::Plain(s) => s.clone(),
                        _ => {
                            let at = node.at;
                            return self.fail(at, "a key must be a string".into());
                        }
                    };
                    *key = Some(Key { name, at: node.at });
                }
                Some(k) if k.name == "<<" => merge(entries, node),
                Some(k) => {
                    if entries.iter().any(|(e, _)| e.name == k.name) {
                        let message = format!("key `{}` is given twice", k.name.escape_debug());
                        return self.fail(k.at, message);
                    }
                    entries.push((k, node));
                }
            },
            _ => {}
        }
    }

    fn fail(&mut self, at: At, message: String) {
        self.error.get_or_insert(SyntaxError { at, message });
    }
}

/// YAML's merge key: the entries of a map (or of each map in a list) not
/// already set.
fn merge(entries: &mut Vec<(Key, Node)>, from: Node) {
    let maps = match from.value {
        Value::Seq(items) => items,
        other => vec![Node::new(other, from.at)],
    };
    for map in maps {
        if let Value::Map(m) = map.value {
            for (k, v) in m {
                if !entries.iter().any(|(e, _)| e.name == k.name) {
                    entries.push((k, v));
                }
            }
        }
    }
}

/// How many values `node` holds, itself included.
fn size(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(m) => 1 + m.iter().map(|(_, v)| size(v)).sum::<usize>(),
        _ => 1,
    }
}

impl MarkedEventReceiver for YamlBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // After an error the rest of the file is only scanned, not kept.
        if self.error.is_some() {
            return;
        }
        self.values = self.values.saturating_add(1);
        let at = self.at(mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let quoted =
                    !matches!(style, TScalarStyle::Plain) || tag.is_some_and(|t| t.suffix == "str");
                let value = if quoted {
                    Value::Str(text)
                } else {
                    Value::Plain(text)
                };
                self.put(Node::new(value, at), anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack
                    .push((Node::new(Value::Seq(Vec::new()), at), None, anchor));
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((Node::map(at), None, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _, anchor)) = self.stack.pop() {
                    self.put(node, anchor);
                }
            }
            Event::Alias(id) => {
                let found = self.anchors.iter().rev().find(|(a, _, _)| *a == id);
                match found.map(|(_, node, n)| (node.clone(), *n)) {
                    Some((_, n)) if self.values.saturating_add(n) > MAX_YAML_VALUES => {
                        let why = format!(
                            "the file expands to more than {MAX_YAML_VALUES} values (aliases)"
                        );
                        self.fail(at, why);
                    }
                    Some((mut node, n)) => {
                        node.at = at;
                        self.values += n;
                        self.put(node, 0);
                    }
                    None => self.fail(at, "an alias to an unknown anchor".into()),
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(node: &Node, key: &str) -> u32 {
        node.find_key(key).map(|a| a.line).unwrap_or(0)
    }

    #[test]
    fn a_nul_in_yaml_is_refused_not_the_end_of_the_file() {
        // yaml-rust2 alone would read `a` and `b` and stop there.
        let e = parse("a: 1\nb: 2\0\nc: 3\n", Some(Format::Yaml), 0).expect_err("a NUL");
        assert_eq!((e.at.line, e.at.col), (2, 5), "{e:?}");
    }

    #[test]
    fn a_yaml_problem_at_the_end_is_on_the_last_line() {
        let e = parse("a: 1\nbc", Some(Format::Yaml), 0).expect_err("no value");
        assert_eq!((e.at.line, e.at.col), (2, 3), "{e:?}");
        let e = parse("a: 1\nb\n", Some(Format::Yaml), 0).expect_err("no value");
        assert_eq!(e.at.line, 3, "after the last newline: {e:?}");
        // A value the end of the stream ends is placed there too.
        let n = parse("a: 1\nbc:", Some(Format::Yaml), 0).expect("parses");
        let at = n.get("bc").map(|v| (v.at.line, v.at.col));
        assert_eq!(at, Some((2, 4)));
    }

    #[test]
    fn the_same_settings_in_three_formats() {
        let toml =
            "serverAddr = \"x\"\nserverPort = 7000\n[[proxies]]\nname = \"ssh\"\nlocalPort = 22\n";
        let yaml = "serverAddr: x\nserverPort: 7000\nproxies:\n  - name: ssh\n    localPort: 22\n";
        let json = "{\n\"serverAddr\": \"x\",\n\"serverPort\": 7000,\n\"proxies\": [{\"name\": \"ssh\", \"localPort\": 22}]\n}";
        for (text, f) in [
            (toml, Format::Toml),
            (yaml, Format::Yaml),
            (json, Format::Json),
        ] {
            let n = parse(text, Some(f), 0).expect("parses");
            assert_eq!(
                n.get("serverAddr").and_then(Node::as_str),
                Some("x"),
                "{f:?}"
            );
            let port = n.get("serverPort").map(|p| p.to_toml());
            assert_eq!(port, Some(Some(toml::Value::Integer(7000))), "{f:?}");
            assert_eq!(
                line_of(&n, "serverPort"),
                2 + u32::from(f == Format::Json),
                "{f:?}"
            );
            let guessed = parse(text, None, 0).expect("guessed");
            assert_eq!(guessed.to_toml(), n.to_toml(), "{f:?} guessed");
        }
    }

    #[test]
    fn yaml_anchors_merge_and_hidden_keys() {
        let yaml = ".base: &base\n  localIP: 10.0.0.2\n  type: tcp\nproxies:\n  - <<: *base\n    name: a\n    localPort: 22\n";
        let n = parse(yaml, Some(Format::Yaml), 0).expect("parses");
        assert!(n.get(".base").is_none());
        let Some(Value::Seq(p)) = n.get("proxies").map(|p| &p.value) else {
            panic!("proxies: {n:?}");
        };
        assert_eq!(p[0].get("localIP").and_then(Node::as_str), Some("10.0.0.2"));
        assert_eq!(p[0].get("name").and_then(Node::as_str), Some("a"));
        let e = parse("a: 1\na: 2\n", Some(Format::Yaml), 0).expect_err("twice");
        assert_eq!((e.at.line, e.message.contains("twice")), (2, true));
        // Aliases of aliases ("billion laughs") stop at a bound.
        let mut bomb = String::from("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = parse(&bomb, Some(Format::Yaml), 0).expect_err("bounded");
        assert!(e.message.contains("more than 100000 values"), "{e:?}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = parse("a = \nb = 1\n", Some(Format::Toml), 0).expect_err("bad toml");
        assert_eq!(e.at.line, 1);
        let e = parse("{\n\"a\": 1,\n\"b\": }\n", Some(Format::Json), 0).expect_err("bad json");
        assert_eq!((e.at.line, e.message.contains("line")), (3, false), "{e:?}");
        let e = parse("a: [1\nb: 2\n", Some(Format::Yaml), 0).expect_err("bad yaml");
        assert_eq!(e.at.line, 2);
    }
}
