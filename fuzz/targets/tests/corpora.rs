//! Every committed fuzz input, replayed through its target's `check` (the function libFuzzer
//! runs), one test per target. A failing input is named, with the command that replays it
//! under libFuzzer and AddressSanitizer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tenscale_fuzz_targets as targets;

/// Replays `fuzz/corpus/<target>/*` through `check`; fails on an empty corpus, and on the first
/// input that panics, naming it. Prints the count and the slowest input.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(target);
    let inputs = corpus(&dir);
    assert!(!inputs.is_empty(), "{target}: no committed corpus in {}", dir.display());
    let mut slowest = (Duration::ZERO, PathBuf::new());
    for input in &inputs {
        let data = std::fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let started = Instant::now();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!(
                "{target}: the committed input {} fails its check; under libFuzzer: \
                 (cd fuzz && cargo +nightly fuzz run {target} {})",
                input.display(),
                input.strip_prefix(dir.parent().and_then(Path::parent).unwrap_or(&dir)).unwrap_or(input).display(),
            );
        }
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, input.clone());
        }
    }
    let name = slowest.1.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    eprintln!("{target}: {} inputs replayed; slowest {name} in {:.1?}", inputs.len(), slowest.0);
}

/// The files of a corpus directory, in name order (a stable order for a stable report).
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn derp_server() {
    replay("derp_server", targets::derp_server::check);
}

#[test]
fn front_sniff() {
    replay("front_sniff", targets::front_sniff::check);
}

#[test]
fn h2_connection() {
    replay("h2_connection", targets::h2_connection::check);
}

#[test]
fn hpack() {
    replay("hpack", targets::hpack::check);
}

#[test]
fn noise() {
    replay("noise", targets::noise::check);
}

#[test]
fn policy() {
    replay("policy", targets::policy::check);
}

#[test]
fn stun() {
    replay("stun", targets::stun::check);
}

#[test]
fn wire_json() {
    replay("wire_json", targets::wire_json::check);
}

/// A corpus directory that is missing or empty is a failure, not a pass: the replay would
/// otherwise prove nothing after a rename.
#[test]
fn an_empty_corpus_fails_the_replay() {
    let missing = std::panic::catch_unwind(|| replay("no-such-target", |_| {}));
    assert!(missing.is_err());
}

/// A check that panics on an input fails the replay (the replay does not swallow panics).
#[test]
fn a_failing_input_fails_the_replay() {
    let failed = std::panic::catch_unwind(|| replay("stun", |_| panic!("planted")));
    assert!(failed.is_err());
}
