//! Entry points of the `pssh` and `playready_header` fuzz targets (`fuzz/` at the repository
//! root). They live here, not in the fuzz crate, so that the regression test below feeds the
//! saved inputs through exactly what the fuzzer ran. Not an API: hidden from the docs.
//!
//! Each function takes untrusted bytes, calls every parser that accepts them and checks the
//! properties the parsers promise; a broken promise panics, which is what the fuzzer reports.

use crate::playready::{PlayReadyHeader, PlayReadyObject, kid_from_value};
use crate::widevine::{WidevinePsshData, unknown_field_numbers};
use crate::{DrmSystem, PsshBox, describe};

/// pssh boxes (one, or a concatenation), the payloads they carry, and `describe` on the
/// bytes and on the bytes read as command-line text.
pub fn pssh(data: &[u8]) {
    if let Ok((b, used)) = PsshBox::parse(data) {
        // The module promises byte-exact re-serialisation except for the 64-bit and
        // to-end-of-input size forms.
        if !matches!(data.get(..4), Some([0, 0, 0, 0 | 1])) {
            assert_eq!(
                Some(b.to_bytes().as_slice()),
                data.get(..used),
                "a parsed pssh box must re-serialise to its bytes"
            );
        }
    }
    if let Ok(boxes) = PsshBox::parse_all(data) {
        for b in &boxes {
            let _ = b.to_base64();
            match b.system() {
                Some(DrmSystem::Widevine) => widevine_data(&b.data),
                Some(DrmSystem::PlayReady) => playready_object(&b.data),
                _ => {}
            }
        }
    }
    // Bare payloads, as `describe` also accepts them.
    widevine_data(data);
    let _ = describe::describe_pssh(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(bytes) = describe::decode_text_input(text)
    {
        let _ = describe::describe_pssh(&bytes);
    }
}

/// A PlayReady Object, and a WRMHEADER given directly as text.
pub fn playready_header(data: &[u8]) {
    playready_object(data);
    if let Ok(text) = std::str::from_utf8(data) {
        playready_xml(text);
        let _ = kid_from_value(text);
    }
}

fn widevine_data(data: &[u8]) {
    let _ = unknown_field_numbers(data);
    if let Ok(d) = WidevinePsshData::decode_from(data) {
        let _ = d.key_ids();
        let _ = d.scheme();
        assert_eq!(
            WidevinePsshData::decode_from(&d.to_bytes()).as_ref(),
            Ok(&d),
            "Widevine pssh data must survive encode/decode"
        );
    }
}

fn playready_object(data: &[u8]) {
    let Ok(pro) = PlayReadyObject::parse(data) else {
        return;
    };
    // Parsing is strict (every length must agree), so the object is its bytes.
    assert_eq!(
        pro.to_bytes().ok().as_deref(),
        Some(data),
        "a parsed PlayReady Object must re-serialise to its bytes"
    );
    if let Some(Ok(xml)) = pro.header_xml() {
        playready_xml(&xml);
    }
}

fn playready_xml(xml: &str) {
    let Ok(header) = PlayReadyHeader::parse_xml(xml) else {
        return;
    };
    let _ = header.key_ids();
    let valid = header.validate().is_ok();
    let written = header.to_xml();
    let _ = PlayReadyObject::from_header(&header).to_bytes();
    // A valid header keyplex writes must read back as itself.
    if valid && header.custom_attributes_xml.is_none() {
        assert_eq!(
            PlayReadyHeader::parse_xml(&written).as_ref(),
            Ok(&header),
            "a valid PlayReady header must survive to_xml/parse_xml"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    /// Every input kept from fuzzing (`tests/fuzz_regressions/<target>/`: crashes found and
    /// fixed, and inputs that reach deep error paths) runs through its target again.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions")
            .join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // A panic names the file, so a regression points at its input.
            eprintln!("{}", path.display());
            run(&data);
            count += 1;
        }
        assert!(count > 0, "{} holds no inputs", dir.display());
    }

    #[test]
    fn pssh_fuzz_regressions() {
        replay("pssh", super::pssh);
    }

    #[test]
    fn playready_header_fuzz_regressions() {
        replay("playready_header", super::playready_header);
    }
}
