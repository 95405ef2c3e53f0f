//! Reads one bench request `n` times with `read_document`, for counting instructions per
//! document under callgrind (deterministic, unlike timings on a shared machine): run it with
//! `n` and `2n` and divide the difference by `n`.
//!
//! ```sh
//! cargo build --profile profiling -p keyplex-cpix --example read_count
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/rc.out \
//!     target/profiling/examples/read_count bench/cpix-request.xml 1000
//! ```

use std::hint::black_box;

use keyplex_cpix::read_document;

mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: read_count FILE [N]");
    let n: u32 = args
        .next()
        .map(|n| n.parse().expect("N: a number"))
        .unwrap_or(1000);
    let xml = common::bench_document(&path);
    for _ in 0..n {
        black_box(read_document(black_box(&xml)).ok());
    }
}
