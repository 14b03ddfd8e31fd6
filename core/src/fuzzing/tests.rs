//! Every checked-in seed under `fuzz/corpus/<target>/` through its harness, so CI exercises
//! the fuzz checks on stable without running a fuzzer.

use std::path::Path;

use super::TARGETS;

#[test]
fn every_seed_passes_its_harness() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (target, harness) in TARGETS {
        let dir = corpus.join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("entry").path())
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for seed in seeds {
            let data = std::fs::read(&seed).expect("seed");
            let run = std::panic::catch_unwind(|| harness(&data));
            assert!(run.is_ok(), "{target}: {} fails", seed.display());
        }
    }
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for (target, _) in TARGETS {
        let file = dir.join(format!("{target}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}
