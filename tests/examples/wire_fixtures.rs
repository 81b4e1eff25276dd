//! Writes the frame of every wire message, as this code encodes it, to
//! `tests/fixtures/wire/v<PROTOCOL_VERSION>/<name>.bin`.
//!
//! Run it once when a protocol version is made (`cargo run -p e2e
//! --example wire_fixtures`) and commit the files; from then on they are
//! that version's record and must never change. It refuses to touch a
//! version whose files exist unless `--rewrite` is given, which is only
//! right while that version has not been released.

use e2e::wire_samples::{encode, fixture_dir, samples};
use wire::message::PROTOCOL_VERSION;

fn main() -> anyhow::Result<()> {
    let rewrite = std::env::args().any(|a| a == "--rewrite");
    let dir = fixture_dir(PROTOCOL_VERSION);
    if dir.exists() && !rewrite {
        anyhow::bail!(
            "{} exists: a released version's bytes never change (--rewrite only for an unreleased one)",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir)?;
    let all = samples(PROTOCOL_VERSION);
    for (name, sample) in &all {
        std::fs::write(dir.join(format!("{name}.bin")), encode(sample))?;
    }
    println!("wrote {} fixtures to {}", all.len(), dir.display());
    Ok(())
}
