//! frps's traffic history on disk (`trafficHistoryFile`): each proxy's
//! daily buckets, keyed by user and name, so the dashboard's 7 days
//! survive a restart (frp loses them: #3530). One redb file; written every
//! minute and at shutdown, read at start.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::records::Daily;

/// user + "\0" + name → the days, each (day, in, out) as 3 little-endian u64.
const TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("proxy_traffic_v1");

pub(crate) type Key = (String, String);

pub(crate) struct HistoryStore {
    db: Database,
}

fn key(k: &Key) -> String {
    format!("{}\0{}", k.0, k.1)
}

fn encode(d: &Daily) -> Vec<u8> {
    d.days
        .iter()
        .flat_map(|&(day, i, o)| [day, i, o])
        .flat_map(u64::to_le_bytes)
        .collect()
}

fn decode(bytes: &[u8]) -> Daily {
    let mut d = Daily::default();
    for c in bytes.chunks_exact(24) {
        let n = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&c[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        d.days.push_back((n(0), n(1), n(2)));
    }
    d
}

impl HistoryStore {
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        Ok(HistoryStore {
            db: Database::create(path)?,
        })
    }

    /// Every proxy's days as stored.
    pub fn load(&self) -> Result<HashMap<Key, Daily>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = HashMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            if let Some((user, name)) = k.value().split_once('\0') {
                out.insert((user.to_owned(), name.to_owned()), decode(v.value()));
            }
        }
        Ok(out)
    }

    /// Writes `entries` (replacing what those proxies had) in one commit.
    pub fn save(&self, entries: &[(Key, Daily)]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (k, d) in entries {
                table.insert(key(k).as_str(), encode(d).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.redb");
        let mut d = Daily::default();
        d.days.push_back((20_000, 1, u64::MAX));
        d.days.push_back((20_001, 300, 4));
        let k: Key = ("alice".into(), "web".into());
        HistoryStore::open(&path)
            .expect("open")
            .save(&[(k.clone(), d.clone())])
            .expect("save");
        let back = HistoryStore::open(&path)
            .expect("reopen")
            .load()
            .expect("load");
        assert_eq!(back.get(&k).map(|d| d.days.clone()), Some(d.days));
    }
}
