//! Times `read_document` on the two bench requests and prints nanoseconds per document: wall
//! clock, and on Linux also the time the thread was on a CPU (`/proc/thread-self/schedstat`),
//! which waiting for a busy core does not inflate. Not a test: the numbers depend on the
//! machine and what else runs on it. For a before/after comparison, build this example at
//! both commits and run the two binaries in turn.
//!
//! ```sh
//! cargo run --release -p keyplex-cpix --example read_timing [rounds]
//! ```

use std::hint::black_box;
use std::time::Instant;

use keyplex_cpix::read_document;

mod common;

/// Nanoseconds this thread has run on a CPU, where the kernel says.
fn on_cpu_ns() -> Option<u128> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// The bench requests (`bench/`) and how many times each is read per round.
const DOCUMENTS: [(&str, u32); 2] = [
    ("cpix-request.xml", 200_000),
    ("speke-live-request.xml", 50_000),
];

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .map(|r| r.parse().expect("rounds: a number"))
        .unwrap_or(3);
    let bench = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench");
    let documents: Vec<(&str, u32, Vec<u8>)> = DOCUMENTS
        .iter()
        .map(|&(name, iterations)| {
            let xml = common::bench_document(&format!("{bench}/{name}"));
            (name, iterations, xml)
        })
        .collect();
    for round in 1..=rounds {
        for (name, iterations, xml) in &documents {
            // Warm-up: caches, branch predictors, the allocator's free lists.
            for _ in 0..iterations / 10 {
                black_box(read_document(black_box(xml)).ok());
            }
            let cpu_start = on_cpu_ns();
            let start = Instant::now();
            for _ in 0..*iterations {
                black_box(read_document(black_box(xml)).ok());
            }
            let wall = start.elapsed().as_nanos() / u128::from(*iterations);
            let cpu = match (cpu_start, on_cpu_ns()) {
                (Some(a), Some(b)) => format!(", {} on CPU", (b - a) / u128::from(*iterations)),
                _ => String::new(),
            };
            println!(
                "round {round}: {name} ({} B): {wall} ns per document{cpu}",
                xml.len()
            );
        }
    }
}
