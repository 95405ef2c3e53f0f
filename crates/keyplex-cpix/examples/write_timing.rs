//! Times `write_document` on the answers of the two CPIX bench scenarios (`bench/README.md`):
//! SPEKE v2 live (`bench/speke-live-request.xml`, 5 keys × 4 DRM systems, ~28.8 KB written)
//! and CPIX for existing content (`bench/cpix-request.xml`, 1 key × 3 DRM systems, ~5.4 KB).
//! The requests are read and filled in as the server answers them, with signaling texts of
//! the sizes keyplex writes (pseudo-random base64: the writer only copies them).
//!
//! `cargo run --release -p keyplex-cpix --example write_timing [ITERATIONS]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_cpix::model::{CpixDocument, KeyValue};
use keyplex_cpix::{read_document, write_document};
use keyplex_types::{ContentKeyValue, Iv};

const WIDEVINE: &str = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed";
const PLAYREADY: &str = "9a04f079-9840-4286-ab92-e65be0885f95";
const FAIRPLAY: &str = "94ce86fb-07ff-4f43-adb8-93d2fa968ca2";

/// base64 of `len` pseudo-random bytes.
fn base64_of(len: usize, seed: &mut u64) -> String {
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 56) as u8
        })
        .collect();
    B64.encode(bytes)
}

/// `request` answered: a key (and IV) per content key, and each signaling slot filled with
/// a text of the size keyplex writes for that system (bytes before base64): Widevine PSSH
/// box ~90 and its `cenc:pssh` ContentProtectionData ~200; PlayReady PSSH (PRO) ~700 and
/// ContentProtectionData (`cenc:pssh` + `mspr:pro`) ~1,750; FairPlay `EXT-X-KEY` ~150 and
/// `EXT-X-SESSION-KEY` ~160; common PSSH (v1, one KID) 52 and its ContentProtectionData ~110.
fn answered(mut doc: CpixDocument) -> CpixDocument {
    let mut seed = 7;
    for (i, key) in doc.content_keys.iter_mut().flatten().enumerate() {
        key.value = Some(KeyValue::Plain(ContentKeyValue::from_bytes([i as u8; 16])));
        key.explicit_iv = Some(Iv::from_bytes([9; 16]));
    }
    for drm in doc.drm_systems.iter_mut().flatten() {
        let (pssh, cpd) = match drm.system_id.as_written.as_str() {
            WIDEVINE => (90, 200),
            PLAYREADY => (700, 1750),
            FAIRPLAY => (0, 0),
            _ => (52, 110),
        };
        for (slot, len) in [
            (&mut drm.pssh, pssh),
            (&mut drm.content_protection_data, cpd),
        ] {
            if let Some(v) = slot.as_mut() {
                *v = base64_of(len, &mut seed);
            }
        }
        for (i, hls) in drm.hls_signaling.iter_mut().enumerate() {
            hls.value = base64_of(150 + 10 * i, &mut seed);
        }
    }
    doc
}

fn bench_request(name: &str) -> CpixDocument {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench")
        .join(name);
    let xml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        // As bench/lib.sh fills the CPIX template.
        .replace("@CONTENT_ID@", "bench-existing")
        .replace("@KID@", "0b1e5c4a-2f6d-4e8b-9a07-5c3d2e1f0a9b");
    read_document(xml.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Nanoseconds per call of `write` over `iterations` calls.
fn time(doc: &CpixDocument, iterations: u32, write: fn(&CpixDocument) -> String) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(write(black_box(doc)));
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map_or(20_000, |n| n.parse().expect("ITERATIONS: a number"));
    let answers = [
        (
            "SPEKE v2 live",
            answered(bench_request("speke-live-request.xml")),
        ),
        ("CPIX existing", answered(bench_request("cpix-request.xml"))),
    ];
    for (name, doc) in &answers {
        println!("{name}: {} bytes written", write_document(doc).len());
        time(doc, iterations / 10, write_document);
    }
    for round in 1..=5 {
        for (name, doc) in &answers {
            let ns = time(doc, iterations, write_document);
            println!("round {round}  {name:<14} {ns:>8.0} ns/document");
        }
    }
}
