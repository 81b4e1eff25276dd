//! The log file of `log.to`, rotated daily as frp rotates it: at the first
//! write of a new day the file is renamed `<log.to>.YYYYMMDD` (the day it
//! holds) and a fresh one opened; renamed files older than `log.maxDays`
//! days are removed. Days are UTC.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct DailyFile {
    path: PathBuf,
    max_days: u32,
    inner: Mutex<(File, u64)>,
}

fn day_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// `YYYYMMDD` of a day count since 1970-01-01 (civil_from_days).
pub fn stamp(day: u64) -> String {
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The day a file was last written, from its modification time.
fn day_of(file: &File) -> Option<u64> {
    let modified = file.metadata().ok()?.modified().ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_secs() / 86_400)
}

impl DailyFile {
    pub fn open(path: &Path, max_days: u32) -> io::Result<DailyFile> {
        let file = open(path)?;
        // A file left from an earlier day is rotated at the first write.
        let day = if file.metadata()?.len() == 0 {
            day_now()
        } else {
            day_of(&file).unwrap_or_else(day_now)
        };
        Ok(DailyFile {
            path: path.to_owned(),
            max_days,
            inner: Mutex::new((file, day)),
        })
    }

    /// Renames the file to its day's name, opens a new one, and removes
    /// rotated files beyond `max_days`.
    fn rotate(&self, inner: &mut (File, u64), today: u64) -> io::Result<()> {
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{}", stamp(inner.1)));
        std::fs::rename(&self.path, &rotated)?;
        *inner = (open(&self.path)?, today);
        self.remove_old(today);
        Ok(())
    }

    fn remove_old(&self, today: u64) {
        let oldest = stamp(today.saturating_sub(u64::from(self.max_days)));
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let file = e.file_name();
            let Some(date) = file
                .to_str()
                .and_then(|f| f.strip_prefix(name)?.strip_prefix('.'))
            else {
                continue;
            };
            // Same-width digits compare as dates.
            if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) && *date < *oldest {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Write for &DailyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let today = day_now();
        if self.max_days > 0 && today != inner.1 {
            // A rotation that fails (a read-only directory…) keeps logging
            // to the same file rather than losing lines.
            if self.rotate(&mut inner, today).is_err() {
                inner.1 = today;
            }
        }
        inner.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(stamp(0), "19700101");
        assert_eq!(stamp(20_788), "20261201");
        assert_eq!(stamp(11_016), "20000229");
    }

    #[test]
    fn rotates_by_day_and_removes_files_older_than_max_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("frps.log");
        let log = DailyFile::open(&path, 3).expect("open");
        (&log).write_all(b"today\n").expect("write");
        let today = day_now();
        // Files of earlier days, as earlier rotations left them.
        for back in [1, 2, 3, 4, 9] {
            std::fs::write(
                dir.path().join(format!("frps.log.{}", stamp(today - back))),
                "old",
            )
            .expect("old file");
        }
        std::fs::write(dir.path().join("frps.log.notes"), "kept").expect("other file");
        // The process ran into the next day.
        {
            let mut inner = log.inner.lock().expect("lock");
            inner.1 = today - 1;
        }
        (&log).write_all(b"next day\n").expect("write");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want = vec![
            "frps.log".to_owned(),
            format!("frps.log.{}", stamp(today - 3)),
            format!("frps.log.{}", stamp(today - 2)),
            format!("frps.log.{}", stamp(today - 1)),
            "frps.log.notes".to_owned(),
        ];
        want.sort();
        assert_eq!(names, want);
        assert_eq!(std::fs::read_to_string(&path).expect("log"), "next day\n");
        // Yesterday's file holds what was written before the day turned
        // (the pre-made one was overwritten by the rename).
        let yesterday = dir.path().join(format!("frps.log.{}", stamp(today - 1)));
        assert_eq!(
            std::fs::read_to_string(yesterday).expect("rotated"),
            "today\n"
        );
    }
}
