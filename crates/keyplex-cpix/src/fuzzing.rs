//! Entry point of the `cpix_document` fuzz target (`fuzz/` at the repository root). It lives
//! here, not in the fuzz crate, so that the regression test below feeds the saved inputs
//! through exactly what the fuzzer ran. Not an API: hidden from the docs.

use crate::speke::{SpekeVersion, document_scheme, validate_v2};
use crate::{read_document, write_document};

/// A CPIX document as a packager would send it: read; for what reads, the SPEKE v2.0/v2.1
/// profile checks, the reference checks, and the document written back. What keyplex
/// writes must read again and, read once, write the same way twice (the writer normalises,
/// so the first re-read may differ from the input, but not drift further). A panic here is
/// what the fuzzer reports.
pub fn cpix_document(data: &[u8]) {
    let Ok(doc) = read_document(data) else {
        return;
    };
    let _ = doc.validate_references();
    let _ = document_scheme(&doc);
    // SPEKE v1 has no profile rules of its own in this crate: it is the document as read.
    for version in [SpekeVersion::V2_0, SpekeVersion::V2_1] {
        let _ = validate_v2(&doc, version);
    }
    let written = write_document(&doc);
    let reread = match read_document(written.as_bytes()) {
        Ok(reread) => reread,
        Err(e) => panic!("keyplex's own output does not read back: {e}\n{written}"),
    };
    assert_eq!(
        write_document(&reread),
        written,
        "writing a document keyplex wrote must not change it"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    /// Every input kept from fuzzing (`tests/fuzz_regressions/cpix_document/`: crashes found
    /// and fixed, and inputs that reach deep error paths) runs through the target again.
    #[test]
    fn cpix_document_fuzz_regressions() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions/cpix_document");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // A panic names the file, so a regression points at its input.
            eprintln!("{}", path.display());
            super::cpix_document(&data);
            count += 1;
        }
        assert!(count > 0, "{} holds no inputs", dir.display());
    }
}
