//! What the timing and counting examples share: a bench request as bench/lib.sh sends it.

/// The request in `path`, with the placeholders of the CPIX request template filled as
/// bench/lib.sh fills them; checked to read once.
pub fn bench_document(path: &str) -> Vec<u8> {
    let template = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let xml = template
        .replace("@CONTENT_ID@", "bench-existing")
        .replace("@KID@", "0b1e5c4a-2f6d-4e8b-9a07-5c3d2e1f0a9b")
        .into_bytes();
    keyplex_cpix::read_document(&xml).unwrap_or_else(|e| panic!("{path}: {e}"));
    xml
}
