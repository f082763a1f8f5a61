//! The wire's fuzz targets inside `cargo test`: every cargo-fuzz target
//! body of `protocol/fuzz` (`protocol/fuzz/src/targets.rs`, included here
//! by path) runs over its checked-in seeds (`protocol/fuzz/seeds/<target>/`,
//! real client captures among them, and any crashing input added there
//! as a regression) and over seeded random mutations of them.
//!
//! Not coverage-guided: `scripts/fuzz.sh --crate protocol` runs the same
//! bodies under libFuzzer. This keeps the targets compiling and exercised
//! in CI. `MQLAB_WIRE_FUZZ_ITERS=<mutations per target>` (default 300),
//! `MQLAB_WIRE_FUZZ_SEED=<n>` replays a run (the seed is printed).

mod common;

#[path = "../../protocol/fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn mutate(rng: &mut ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let len = b.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] = rng.random();
            }
            2 if len > 0 => b.truncate(rng.random_range(0..len)),
            3 if len > 4 => {
                // A length-like field: huge, negative, zero.
                let i = rng.random_range(0..len - 3);
                let v: i32 = [i32::MAX, -1, 0, 1 << 24, rng.random()][rng.random_range(0..5)];
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            4 if len > 0 => {
                let (i, j) = (rng.random_range(0..len), rng.random_range(0..len));
                let (i, j) = (i.min(j), i.max(j));
                let piece = b[i..j].to_vec();
                b.splice(j..j, piece);
            }
            5 => {
                let at = rng.random_range(0..=len);
                let n = rng.random_range(1..64);
                let byte: u8 = [0, 0xff, b'{', b'"', 0x01, 0x02][rng.random_range(0..6)];
                b.splice(at..at, std::iter::repeat_n(byte, n));
            }
            _ => {
                let n = rng.random_range(0..32);
                b.extend((0..n).map(|_| rng.random::<u8>()));
            }
        }
    }
    b
}

#[test]
fn every_target_takes_its_seeds_and_their_mutations() {
    let seed = common::env_seed("MQLAB_WIRE_FUZZ_SEED");
    let iters: usize = std::env::var("MQLAB_WIRE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    println!("seed {seed} (MQLAB_WIRE_FUZZ_SEED={seed} replays this run)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (name, body) in targets::TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "{name}: no seeds");
        for (file, bytes) in &seeds {
            let r = std::panic::catch_unwind(|| body(bytes));
            assert!(r.is_ok(), "{name}: seed {file} fails");
        }
        for i in 0..iters {
            let (_, base) = &seeds[rng.random_range(0..seeds.len())];
            let input = mutate(&mut rng, base);
            let r = std::panic::catch_unwind(|| body(&input));
            if r.is_err() {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/wire-fuzz-failures")
                    .join(name);
                std::fs::create_dir_all(&dir).unwrap();
                let f = dir.join(format!("seed-{seed}-{i}"));
                std::fs::write(&f, &input).unwrap();
                panic!(
                    "{name}: mutation {i} of seed {seed} fails; input in {} \
                     (replay: cd protocol/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {name} <file>)",
                    f.display()
                );
            }
        }
        println!("{name}: {} seeds, {iters} mutations", seeds.len());
    }
}
