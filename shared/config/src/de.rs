//! Typed settings from the tree (`doc`), with errors that know where.
//!
//! A serde `Deserializer` over [`Node`]: each error carries the position of
//! the key or value it is about and the path to it, so the reader can name
//! the line and column, and can remove that key and read again to find the
//! next error ([`read_all`]) — serde itself stops at the first.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::doc::{dotted, At, Node, Seg, Value};

/// At most this many errors are collected from one part of a file.
pub(crate) const MAX_ERRORS: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub message: String,
    pub at: Option<At>,
    /// From the node being read to the offending key or value.
    pub path: Vec<Seg>,
    /// An unknown key: the message is built from the whole path when
    /// shown, and this is the did-you-mean that ends it.
    pub unknown: Option<String>,
}

impl Error {
    fn new(message: String) -> Self {
        Error {
            message,
            at: None,
            path: Vec::new(),
            unknown: None,
        }
    }

    /// The error as it passes out through `seg` (written at `at`).
    fn within(mut self, seg: Seg, at: At) -> Self {
        self.at.get_or_insert(at);
        self.path.insert(0, seg);
        self
    }

    fn or_at(mut self, at: At) -> Self {
        self.at.get_or_insert(at);
        self
    }

    /// The message as shown: `key: message` unless it names its key.
    pub fn describe(&self) -> String {
        self.describe_in("")
    }

    /// As [`describe`](Self::describe) for a node found under `table`
    /// (a dotted key, or empty for the file's root).
    pub fn describe_in(&self, table: &str) -> String {
        let path = dotted(&self.path);
        let full = match (table, path.as_str()) {
            ("", p) => p.to_owned(),
            (t, "") => t.to_owned(),
            (t, p) if p.starts_with('[') => format!("{t}{p}"),
            (t, p) => format!("{t}.{p}"),
        };
        match (&self.unknown, full.is_empty()) {
            (Some(hint), _) => format!("unknown key `{}`{hint}", full.escape_debug()),
            (None, false) => format!("{full}: {}", self.message),
            (None, true) => self.message.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = Error::new(format!("unknown key `{}`", field.escape_debug()));
        e.unknown = Some(did_you_mean(field, expected));
        e
    }
}

/// "; did you mean `serverAddr`?" when one of `expected` is close to
/// `field` (a typo, another case, or INI's snake_case), else nothing.
pub(crate) fn did_you_mean(field: &str, expected: &[&str]) -> String {
    let squash = |s: &str| s.replace(['_', '-'], "").to_lowercase();
    let want = squash(field);
    let best = expected
        .iter()
        .map(|e| (strsim::damerau_levenshtein(&want, &squash(e)), *e))
        .min();
    match best {
        Some((d, e)) if d <= 2.max(field.len() / 4) => format!("; did you mean `{e}`?"),
        _ => String::new(),
    }
}

/// Reads `node` as `T`, collecting every error: after each one the key it
/// is about is removed and the read repeated. The value is what remains
/// readable (defaults where keys were bad), so validation can still look
/// at the rest; it is used only when there were no errors.
pub(crate) fn read_all<T: DeserializeOwned>(node: &Node) -> (Option<T>, Vec<Error>) {
    let mut node = node.clone();
    let mut errors = Vec::new();
    while errors.len() < MAX_ERRORS {
        match T::deserialize(&node) {
            // With the bad keys taken out: what validation can still check.
            Ok(v) => return (Some(v), errors),
            Err(e) => {
                let path = e.path.clone();
                errors.push(e);
                if !node.remove(&path) {
                    break;
                }
            }
        }
    }
    (None, errors)
}

fn plain_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

impl<'a> Node {
    fn unexpected(&'a self) -> de::Unexpected<'a> {
        match &self.value {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Int(i) => de::Unexpected::Signed(*i),
            Value::Float(f) => de::Unexpected::Float(*f),
            Value::Str(s) | Value::Plain(s) => de::Unexpected::Str(s),
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        }
    }

    fn wrong<T>(&self, exp: &dyn de::Expected) -> Result<T, Error> {
        Err(<Error as de::Error>::invalid_type(self.unexpected(), exp).or_at(self.at))
    }
}

macro_rules! integer {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            let r = match &self.value {
                Value::Int(i) => v.visit_i64(*i),
                Value::Plain(s) => match s.parse::<i64>() {
                    Ok(i) => v.visit_i64(i),
                    Err(_) => match s.parse::<u64>() {
                        Ok(u) => v.visit_u64(u),
                        Err(_) => return self.wrong(&v),
                    },
                },
                _ => return self.wrong(&v),
            };
            r.map_err(|e: Error| e.or_at(self.at))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let r = match &self.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Int(i) => v.visit_i64(*i),
            Value::Float(f) => v.visit_f64(*f),
            Value::Str(s) => v.visit_str(s),
            Value::Plain(s) => match (plain_bool(s), s.parse::<i64>(), s.parse::<f64>()) {
                (Some(b), _, _) => v.visit_bool(b),
                (_, Ok(i), _) => v.visit_i64(i),
                (_, _, Ok(f)) if s.bytes().any(|b| b.is_ascii_digit()) => v.visit_f64(f),
                _ => v.visit_str(s),
            },
            Value::Seq(s) => v.visit_seq(Seq {
                items: s.iter(),
                index: 0,
            }),
            Value::Map(m) => v.visit_map(Map {
                entries: m.iter(),
                value: None,
            }),
        };
        r.map_err(|e: Error| e.or_at(self.at))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let r = match &self.value {
            Value::Bool(b) => v.visit_bool(*b),
            Value::Plain(s) => match plain_bool(s) {
                Some(b) => v.visit_bool(b),
                None => return self.wrong(&v),
            },
            _ => return self.wrong(&v),
        };
        r.map_err(|e: Error| e.or_at(self.at))
    }

    integer!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
             deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64);

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let r = match &self.value {
            Value::Float(f) => v.visit_f64(*f),
            Value::Int(i) => v.visit_f64(*i as f64),
            Value::Plain(s) => match s.parse::<f64>() {
                Ok(f) if s.bytes().any(|b| b.is_ascii_digit()) => v.visit_f64(f),
                _ => return self.wrong(&v),
            },
            _ => return self.wrong(&v),
        };
        r.map_err(|e: Error| e.or_at(self.at))
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.value {
            Value::Str(s) | Value::Plain(s) => v.visit_str(s).map_err(|e: Error| e.or_at(self.at)),
            _ => self.wrong(&v),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.value {
            Value::Null => v.visit_none(),
            Value::Plain(s) if is_null(s) => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.value {
            Value::Null => v.visit_unit(),
            Value::Plain(s) if is_null(s) => v.visit_unit(),
            _ => self.wrong(&v),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.value {
            Value::Seq(s) => v
                .visit_seq(Seq {
                    items: s.iter(),
                    index: 0,
                })
                .map_err(|e: Error| e.or_at(self.at)),
            _ => self.wrong(&v),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.value {
            Value::Map(m) => v
                .visit_map(Map {
                    entries: m.iter(),
                    value: None,
                })
                .map_err(|e: Error| e.or_at(self.at)),
            // `transport:` with nothing under it (YAML), or `{}` written as null.
            Value::Null => v
                .visit_map(Map {
                    entries: [].iter(),
                    value: None,
                })
                .map_err(|e: Error| e.or_at(self.at)),
            Value::Plain(s) if is_null(s) => v
                .visit_map(Map {
                    entries: [].iter(),
                    value: None,
                })
                .map_err(|e: Error| e.or_at(self.at)),
            _ => self.wrong(&v),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match &self.value {
            Value::Str(s) | Value::Plain(s) => {
                let d: de::value::StrDeserializer<'_, Error> = s.as_str().into_deserializer();
                v.visit_enum(d).map_err(|e: Error| e.or_at(self.at))
            }
            _ => self.wrong(&v),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for Seq<'_> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let i = self.index;
        self.index += 1;
        seed.deserialize(node)
            .map(Some)
            .map_err(|e| e.within(Seg::Index(i), node.at))
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (crate::doc::Key, Node)>,
    value: Option<&'a (crate::doc::Key, Node)>,
}

impl<'de> de::MapAccess<'de> for Map<'_> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key: de::value::StrDeserializer<'_, Error> = entry.0.name.as_str().into_deserializer();
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.within(Seg::Key(entry.0.name.clone()), entry.0.at))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, node)) = self.value.take() else {
            return Err(Error::new("a value without a key".into()));
        };
        seed.deserialize(node)
            .map_err(|e| e.within(Seg::Key(key.name.clone()), key.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::Key;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
    struct Inner {
        enable: bool,
        port: u16,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
    struct Outer {
        server_addr: String,
        inner: Inner,
        list: Vec<u16>,
        opt: Option<u16>,
    }

    fn at(line: u32) -> At {
        At {
            file: 0,
            line,
            col: 1,
        }
    }

    fn map(line: u32, entries: Vec<(&str, u32, Value)>) -> Node {
        Node::new(
            Value::Map(
                entries
                    .into_iter()
                    .map(|(k, l, v)| {
                        (
                            Key {
                                name: k.into(),
                                at: at(l),
                            },
                            Node::new(v, at(l)),
                        )
                    })
                    .collect(),
            ),
            at(line),
        )
    }

    #[test]
    fn plain_scalars_take_the_type_asked_for() {
        let inner = map(
            2,
            vec![
                ("enable", 3, Value::Plain("true".into())),
                ("port", 4, Value::Plain("7000".into())),
            ],
        );
        let mut root = map(
            1,
            vec![
                ("serverAddr", 1, Value::Plain("1.2.3.4".into())),
                ("opt", 5, Value::Plain("~".into())),
            ],
        );
        root.set(
            Key {
                name: "inner".into(),
                at: at(2),
            },
            inner,
        );
        let (v, errors) = read_all::<Outer>(&root);
        assert!(errors.is_empty(), "{errors:?}");
        let v = v.expect("value");
        assert_eq!(v.server_addr, "1.2.3.4");
        assert_eq!(
            v.inner,
            Inner {
                enable: true,
                port: 7000
            }
        );
        assert_eq!(v.opt, None);
    }

    #[test]
    fn every_error_with_its_place_and_path() {
        let inner = map(
            2,
            vec![
                ("enable", 3, Value::Str("yes".into())),
                ("prot", 4, Value::Int(1)),
            ],
        );
        let mut root = map(1, vec![("serverAdr", 1, Value::Str("x".into()))]);
        root.set(
            Key {
                name: "inner".into(),
                at: at(2),
            },
            inner,
        );
        root.set(
            Key {
                name: "list".into(),
                at: at(6),
            },
            Node::new(
                Value::Seq(vec![
                    Node::new(Value::Int(1), at(6)),
                    Node::new(Value::Int(70000), at(7)),
                ]),
                at(6),
            ),
        );
        let (_, errors) = read_all::<Outer>(&root);
        let shown: Vec<_> = errors
            .iter()
            .map(|e| (e.at.map(|a| a.line), e.describe()))
            .collect();
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert_eq!(shown[0].0, Some(1));
        assert!(
            shown[0]
                .1
                .contains("unknown key `serverAdr`; did you mean `serverAddr`?"),
            "{shown:?}"
        );
        assert!(
            shown[1].1.starts_with("inner.enable: invalid type"),
            "{shown:?}"
        );
        assert_eq!(
            shown[2],
            (
                Some(4),
                "unknown key `inner.prot`; did you mean `port`?".into()
            )
        );
        assert!(
            shown[3]
                .1
                .starts_with("list[1]: invalid value: integer `70000`"),
            "{shown:?}"
        );
        assert_eq!(shown[3].0, Some(7));
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(
            did_you_mean("server_addr", &["serverAddr", "serverPort"]),
            "; did you mean `serverAddr`?"
        );
        assert_eq!(did_you_mean("flux", &["serverAddr", "serverPort"]), "");
    }
}
