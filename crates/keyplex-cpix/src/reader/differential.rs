//! Differential tests: the streaming reader against the DOM reader it replaced
//! ([`super::dom_oracle`], roxmltree). For every input both must agree: the same
//! [`CpixDocument`], or both an error.
//!
//! How two errors may differ:
//! - Both say the document is not well-formed XML ([`CpixError::Xml`]): the wording is each
//!   parser's own (and where several problems exist, each may name a different one).
//! - Any other error must be the same error, with the same message.
//!
//! Where the streaming reader is deliberately stricter, it refuses with one of the messages
//! in [`STRICTER`]; those are the only accepted disagreements, each with its reason:
//! - `<:a>`, `:a="…"`, `</:a>`: a name with an empty prefix is not a qualified name
//!   (Namespaces in XML 1.0, 4); roxmltree took it for an unprefixed one (even to close
//!   `<a>`, which XML 1.0, 3.1 requires to be closed by `</a>`).
//! - `xmlns:p=""`: undeclaring a prefix is XML 1.1 only (Namespaces in XML 1.0, 3);
//!   roxmltree bound `p` to an empty namespace.
//! - `xmlns` twice on one element: a duplicate attribute (XML 1.0, 3.1); roxmltree kept the
//!   first.
//! - `xmlns:xmlns="…"`: the prefix `xmlns` may not be declared; roxmltree allowed it.
//! - `p:xmlns="…"`: roxmltree took it for a default namespace declaration; it is refused as
//!   ambiguous.
//! - `&#xD800;` (surrogates) and references beyond U+10FFFF are not characters (XML 1.0,
//!   4.1, "Legal Character"); roxmltree read them as U+FFFD.
//!
//! Two differences in what is read:
//! - A line end written as a lone CR (not followed by LF) right before or after a reference,
//!   in character data: XML 1.0, 2.11 makes every such CR a LF, and so does the streaming
//!   reader; roxmltree kept it as a CR (its line-end handling skips the bytes next to a
//!   reference). Inputs with a CR next to `&` or `;` are compared with CR and LF taken as
//!   the same character.
//! - `xmlns=""` puts unprefixed names in no namespace (Namespaces in XML 1.0, 6.2), where
//!   roxmltree gave them an empty namespace name, so that `fragment_xml` wrote
//!   `xmlns:ns0=""`, which is not XML 1.0 (and that keyplex's own reader would then refuse).
//!   For inputs with `xmlns=""`, [`agree`] accepts any two answers;
//!   `undeclared_default_namespace` tests the streaming reader's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;

use super::dom_oracle;
use crate::error::CpixError;
use crate::model::CpixDocument;
use crate::testing::any_document;
use crate::write_document;

/// The messages of the checks the streaming reader makes and roxmltree did not.
const STRICTER: &[&str] = &[
    "has an empty prefix",
    "an empty namespace name for a prefix",
    "duplicate namespace declaration for the default namespace",
    "the prefix xmlns may not be declared",
    "is ambiguous",
    "is not a Unicode scalar value",
];

/// Whether the two readers agree on `input`; `Err` says how they do not.
fn agree(input: &[u8]) -> Result<(), String> {
    let new = super::read_document(input);
    let old = dom_oracle::read_document(input);
    let agreed = match (&new, &old) {
        (Ok(a), Ok(b)) if cr_next_to_a_reference(input) => {
            format!("{a:?}").replace("\\r", "\\n") == format!("{b:?}").replace("\\r", "\\n")
        }
        (Ok(a), Ok(b)) => a == b,
        (Err(CpixError::Xml(_)), Err(CpixError::Xml(_))) => true,
        (Err(CpixError::Xml(m)), _) if STRICTER.iter().any(|s| m.contains(s)) => true,
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    if agreed || undeclares_default_namespace(input) {
        return Ok(());
    }
    Err(format!(
        "the readers disagree\n  streaming: {}\n  DOM:       {}\ninput: {:?}",
        describe(&new),
        describe(&old),
        String::from_utf8_lossy(input)
    ))
}

/// A CR written next to a reference, in character data (see the module documentation).
fn cr_next_to_a_reference(input: &[u8]) -> bool {
    let text = String::from_utf8_lossy(input);
    text.contains("\r&") || text.contains(";\r")
}

fn undeclares_default_namespace(input: &[u8]) -> bool {
    let text = String::from_utf8_lossy(input);
    text.contains("xmlns=\"\"") || text.contains("xmlns=''")
}

fn describe(result: &Result<CpixDocument, CpixError>) -> String {
    match result {
        Ok(doc) => format!("{doc:?}"),
        Err(e) => format!("error: {e}"),
    }
}

#[track_caller]
fn assert_agree(input: &[u8], what: &str) {
    if let Err(e) = agree(input) {
        panic!("{what}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus: every CPIX document the repository and the shared vectors hold.

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("{} is missing", dir.display());
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The shared vectors (`*.xml`), the crate's test data (the fuzz regressions), the bench
/// requests and the fuzz seeds.
fn corpus() -> &'static [(PathBuf, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let repo = crate_dir.join("../..");
        let mut paths = Vec::new();
        let mut vectors = Vec::new();
        files_under(Path::new("/work/shared/vectors"), &mut vectors);
        paths.extend(
            vectors
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "xml")),
        );
        files_under(&crate_dir.join("tests/fuzz_regressions"), &mut paths);
        paths.push(repo.join("bench/cpix-request.xml"));
        paths.push(repo.join("bench/speke-live-request.xml"));
        files_under(&repo.join("fuzz/seeds/cpix_document"), &mut paths);
        paths.sort();
        let mut corpus: Vec<(PathBuf, Vec<u8>)> = paths
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                (p, bytes)
            })
            .collect();
        // The bench CPIX request is a template: also as bench/lib.sh sends it.
        let template = repo.join("bench/cpix-request.xml");
        let sent = std::fs::read_to_string(&template)
            .unwrap()
            .replace("@CONTENT_ID@", "bench-existing")
            .replace("@KID@", "0b1e5c4a-2f6d-4e8b-9a07-5c3d2e1f0a9b");
        corpus.push((template.with_extension("xml (as sent)"), sent.into_bytes()));
        corpus
    })
}

/// The corpus documents small enough to mutate quickly (all but the deep-nesting one).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        corpus()
            .iter()
            .filter(|(_, bytes)| bytes.len() <= 64 * 1024)
            .map(|(_, bytes)| bytes.clone())
            .collect()
    })
}

fn utf16(text: &str, little_endian: bool) -> Vec<u8> {
    let mut out = if little_endian {
        vec![0xFF, 0xFE]
    } else {
        vec![0xFE, 0xFF]
    };
    for unit in text.encode_utf16() {
        out.extend(if little_endian {
            unit.to_le_bytes()
        } else {
            unit.to_be_bytes()
        });
    }
    out
}

#[test]
fn corpus_documents_read_the_same() {
    let corpus = corpus();
    assert!(corpus.len() >= 40, "only {} corpus files", corpus.len());
    let mut read = 0;
    for (path, bytes) in corpus {
        let what = path.display().to_string();
        assert_agree(bytes, &what);
        read += usize::from(super::read_document(bytes).is_ok());
        // The same document in the other encodings the reader accepts.
        if let Ok(text) = std::str::from_utf8(bytes) {
            let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
            assert_agree(&utf16(text, true), &format!("{what} (UTF-16LE)"));
            assert_agree(&utf16(text, false), &format!("{what} (UTF-16BE)"));
            let mut bom = b"\xEF\xBB\xBF".to_vec();
            bom.extend_from_slice(text.as_bytes());
            assert_agree(&bom, &format!("{what} (UTF-8 BOM)"));
        }
        // What keyplex writes for it (normalised: other prefixes, escapes, order).
        if let Ok(doc) = super::read_document(bytes) {
            assert_agree(
                write_document(&doc).as_bytes(),
                &format!("{what} (rewritten)"),
            );
        }
    }
    // Most of the corpus is valid CPIX; the rest is kept for its errors.
    assert!(read >= 30, "only {read} corpus files read");
}

/// `DIFFERENTIAL_EXHAUSTIVE=1` in the environment: the sweeps below try every place instead
/// of a sample (minutes in a debug build).
fn exhaustive() -> bool {
    std::env::var_os("DIFFERENTIAL_EXHAUSTIVE").is_some()
}

/// Every document cut short: at each of its first and last 128 bytes (the prolog, the root's
/// start and the last end tags) and at 128 places between; at every byte when exhaustive.
/// Each cut is an error for both, or (cut in trailing whitespace) the same model.
#[test]
fn truncated_corpus_documents_read_the_same() {
    for (path, bytes) in corpus() {
        let len = bytes.len();
        let step = if exhaustive() { 1 } else { (len / 128).max(1) };
        let ends = (0..len.min(128))
            .chain((0..len).step_by(step))
            .chain(len.saturating_sub(128)..len);
        for end in ends {
            assert_agree(&bytes[..end], &format!("{} cut at {end}", path.display()));
        }
    }
}

/// The bench requests (as sent) with one byte replaced by a markup character, where a
/// one-byte change turns one construct into another: every byte of the CPIX request and
/// every 8th of the SPEKE one (every byte of both, with more replacements, when exhaustive).
#[test]
fn bench_requests_with_a_byte_replaced_read_the_same() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cpix = corpus()
        .iter()
        .find(|(path, _)| path.to_string_lossy().ends_with("xml (as sent)"))
        .map(|(_, bytes)| bytes.clone())
        .unwrap();
    let speke = std::fs::read(repo.join("bench/speke-live-request.xml")).unwrap();
    let replacements: &[u8] = if exhaustive() { b"<>&\":/ x" } else { b"<&\":" };
    for (name, bytes, step) in [("cpix-request", cpix, 1), ("speke-live-request", speke, 8)] {
        let step = if exhaustive() { 1 } else { step };
        for at in (0..bytes.len()).step_by(step) {
            for &replacement in replacements {
                if bytes[at] == replacement {
                    continue;
                }
                let mut mutated = bytes.clone();
                mutated[at] = replacement;
                assert_agree(
                    &mutated,
                    &format!("{name} with byte {at} set to {:?}", replacement as char),
                );
            }
        }
    }
}

/// Small documents aimed at what the corpus rarely exercises: namespace scoping (what
/// `fragment_xml` and `ExtensionElement::prefix` echo), character data (line ends, references,
/// CDATA), attribute normalisation, the order in which errors are found, prolog and epilog.
#[test]
fn tricky_documents_read_the_same() {
    const KID: &str = "40d02dd1-61a3-4787-a155-572325d47b80";
    const WV: &str = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed";
    let rule = |attrs: &str, body: &str| {
        format!(
            r#"<CPIX xmlns="urn:dashif:org:cpix" xmlns:a="urn:a"{attrs}><ContentKeyUsageRuleList><ContentKeyUsageRule kid="{KID}">{body}</ContentKeyUsageRule></ContentKeyUsageRuleList></CPIX>"#
        )
    };
    let drm = |attrs: &str, body: &str| {
        format!(
            r#"<CPIX xmlns="urn:dashif:org:cpix"{attrs}><DRMSystemList><DRMSystem systemId="{WV}" kid="{KID}">{body}</DRMSystem></DRMSystemList></CPIX>"#
        )
    };
    let key = |body: &str| {
        format!(
            r#"<CPIX xmlns="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><ContentKeyList>{body}</ContentKeyList></CPIX>"#
        )
    };
    let cases = [
        // Fragments: shadowed, repeated and default-namespace prefixes, `xml:` attributes.
        rule(
            "",
            r#"<a:F xmlns:a="urn:b" xmlns:c="urn:a"><c:G a:x="1" c:y="2"/></a:F>"#,
        ),
        rule(
            "",
            r#"<a:F><G xmlns="urn:a" xmlns:z="urn:a"><z:H/></G></a:F>"#,
        ),
        // `a` is rebound inside, so the prefix in scope for urn:a is `b`, not `a`.
        rule(
            r#" xmlns:b="urn:a""#,
            r#"<a:F xmlns:a="urn:b"><b:G b:x="1"/></a:F>"#,
        ),
        drm(
            r#" xmlns:a="urn:aws:amazon:com:speke" xmlns:b="urn:aws:amazon:com:speke""#,
            r#"<a:KeyFormat xmlns:a="urn:b"><b:G/></a:KeyFormat><b:KeyFormat xmlns:a="urn:b"/>"#,
        ),
        rule(
            r#" xmlns:p="urn:dashif:org:cpix""#,
            r#"<p:Future p:x="1"><Future/></p:Future>"#,
        ),
        rule(
            "",
            r#"<a:F xmlns:ns0="urn:c" xml:lang="en"><ns0:G xmlns:a="urn:ns0"/><a:H/></a:F>"#,
        ),
        rule(
            "",
            r#"<a:F xmlns:xml="http://www.w3.org/XML/1998/namespace" xml:space="preserve"/>"#,
        ),
        rule(
            "",
            r#"<a:F xmlns:xmlns0="urn:a" xmlns:ns0="urn:q"><ns0:x/></a:F>"#,
        ),
        // Character data in fragments: line ends, references, CDATA (empty ones too),
        // comments and processing instructions dropped.
        rule("", "<a:F>x\r\ny\rz&#13;\r&#10;\r<![CDATA[\r\n]]>\r</a:F>"),
        rule(
            "",
            "<a:F><![CDATA[]]></a:F><a:G><!-- c --><?pi?></a:G><a:H> </a:H>",
        ),
        rule(
            "",
            "<a:F>&lt;&amp;&gt;&quot;&apos;&#x20AC;&#8364;<![CDATA[<&>]]></a:F>",
        ),
        // Attribute values: whitespace normalised, references kept as they are.
        rule(
            "",
            "<a:F v=\"a&#9;b\tc\r\nd\re&#13;&#10;f\nend\" w='&quot;\"'/>",
        ),
        // Extension elements: the prefix in scope, or none for a default namespace.
        drm(
            "",
            r#"<s:KeyFormat xmlns:s="urn:aws:amazon:com:speke"> a </s:KeyFormat>"#,
        ),
        drm(
            "",
            r#"<KeyFormat xmlns="urn:aws:amazon:com:speke">a</KeyFormat>"#,
        ),
        drm(
            r#" xmlns:s="urn:aws:amazon:com:speke""#,
            r#"<KeyFormat xmlns="urn:aws:amazon:com:speke" xmlns:t="urn:aws:amazon:com:speke">b</KeyFormat><s:X xmlns:s="urn:other" xmlns:u="urn:aws:amazon:com:speke"/><s:Y/>"#,
        ),
        drm(
            "",
            "<Foo>plain</Foo><SmoothStreamingProtectionHeaderData> x\r\ny\r <!--c--> z<![CDATA[\r\n\r]]>z</SmoothStreamingProtectionHeaderData>",
        ),
        drm(
            "",
            "<PSSH>\r\n AAAA\r\n <x:y xmlns:x=\"urn:x\">ignored</x:y> AAAA </PSSH>",
        ),
        drm(
            "",
            "<PSSH>AA&#x41;A</PSSH><HLSSignalingData playlist=\" media \">&#65;AAA</HLSSignalingData>",
        ),
        // The order errors are found in.
        key(r#"<ContentKey kid="bad"><Bogus/></ContentKey>"#),
        key(r#"<ContentKey kid="bad" explicitIV="x"><Bogus/></ContentKey>"#),
        key(&format!(
            r#"<ContentKey kid="{KID}"><Data><pskc:Secret><pskc:EncryptedValue><enc:CipherData><enc:CipherValue>!!</enc:CipherValue></enc:CipherData><enc:EncryptionMethod Algorithm="urn:bad"/></pskc:EncryptedValue></pskc:Secret></Data></ContentKey>"#
        )),
        key(&format!(
            r#"<ContentKey kid="{KID}"><Data/><Data><pskc:Secret><pskc:PlainValue>AAAA</pskc:PlainValue></pskc:Secret></Data></ContentKey>"#
        )),
        key(&format!(
            r#"<ContentKey kid="{KID}"><Data><x/><pskc:Secret/><pskc:Secret><pskc:PlainValue>!!</pskc:PlainValue></pskc:Secret></Data></ContentKey>"#
        )),
        key(&format!(
            r#"<ContentKey kid="{KID}"/><ContentKey kid="{KID}"><Bogus/></ContentKey>"#
        )),
        r#"<CPIX xmlns="urn:dashif:org:cpix"><ContentKeyList/><ContentKeyList><Bogus/></ContentKeyList></CPIX>"#.to_owned(),
        r#"<CPIX xmlns="urn:dashif:org:cpix"><Bogus/><ContentKeyList><ContentKey kid="bad"/></ContentKeyList>"#.to_owned(),
        r#"<Foo><ContentKeyList></Foo>"#.to_owned(),
        // Delivery data: certificate and key shapes.
        r#"<CPIX xmlns="urn:dashif:org:cpix" xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><DeliveryDataList><DeliveryData><DeliveryKey><ds:X509Data/><ds:X509Data><ds:Other/><ds:X509Certificate>!!</ds:X509Certificate></ds:X509Data></DeliveryKey></DeliveryData></DeliveryDataList></CPIX>"#.to_owned(),
        r#"<CPIX xmlns="urn:dashif:org:cpix" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:enc="http://www.w3.org/2001/04/xmlenc#" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"><DeliveryDataList><DeliveryData><DeliveryKey><ds:X509Data><ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data></DeliveryKey><DocumentKey><Data><pskc:Secret><pskc:EncryptedValue><enc:CipherData><enc:CipherValue>AQID</enc:CipherValue></enc:CipherData></pskc:EncryptedValue></pskc:Secret></Data></DocumentKey><MACMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha512"><Key><enc:CipherData><enc:CipherValue>AQID</enc:CipherValue></enc:CipherData><pskc:EncryptedValue><enc:EncryptionMethod Algorithm="urn:bad"/></pskc:EncryptedValue></Key></MACMethod></DeliveryData></DeliveryDataList></CPIX>"#.to_owned(),
        // Prolog and epilog.
        "\u{FEFF}<?xml version='1.0' encoding=\"x\" standalone='no' ?>\n<!--c--><?pi?>\n<CPIX xmlns=\"urn:dashif:org:cpix\"/>\n<!--c-->\n<?pi x?>\n".to_owned(),
        "<?xml version=\"1.0\"?><?xml?><?xml\tversion=\"1.0\"?><CPIX xmlns=\"urn:dashif:org:cpix\"/>".to_owned(),
        "<?xml version=\"1.0\"encoding=\"x\"?><CPIX xmlns=\"urn:dashif:org:cpix\"/>".to_owned(),
        "<?xml encoding=\"x\"?><CPIX xmlns=\"urn:dashif:org:cpix\"/>".to_owned(),
        "<CPIX xmlns=\"urn:dashif:org:cpix\"/><?xml version=\"1.0\"?>".to_owned(),
        "<CPIX xmlns=\"urn:dashif:org:cpix\"/>&amp;".to_owned(),
        "<CPIX xmlns=\"urn:dashif:org:cpix\"/><![CDATA[]]>".to_owned(),
        "<CPIX xmlns=\"urn:dashif:org:cpix\" xmlns:a=\"urn:a\" xmlns:b=\"urn:a\" a:x=\"1\" b:x=\"2\"/>".to_owned(),
        "<CPIX xmlns=\"urn:dashif&#58;org:cpix\"/>".to_owned(),
        "<CPIX xmlns=\" urn:dashif:org:cpix\"/>".to_owned(),
    ];
    for xml in &cases {
        assert_agree(xml.as_bytes(), xml);
    }
}

// ---------------------------------------------------------------------------------------------
// Generated and mutated documents

/// Markup that changes what a document means when dropped in anywhere.
const FRAGMENTS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "&",
    ";",
    "\"",
    "'",
    "=",
    ":",
    " ",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "\0",
    "é",
    "\u{FEFF}",
    "\u{FFFE}",
    "]]>",
    "<![CDATA[",
    "<![CDATA[x]]>",
    "<![CDATA[]]>",
    "<!--",
    "-->",
    "<!-- c -->",
    "<?pi x?>",
    "<?xml version=\"1.0\"?>",
    "<?xml?>",
    "&amp;",
    "&lt;",
    "&#x41;",
    "&#65;",
    "&#13;",
    "&#xD800;",
    "&#0;",
    "&e;",
    "<x/>",
    "<x>",
    "</x>",
    "<a:x xmlns:a=\"urn:a\"/>",
    "<cpix:Foo/>",
    "<Foo xmlns=\"urn:dashif:org:cpix\"/>",
    "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/>",
    " xmlns=\"urn:dashif:org:cpix\"",
    " xmlns:cpix=\"urn:x\"",
    " xmlns:p=\"urn:p\"",
    " p:a=\"1\"",
    " id=\"x\"",
    " kid=\"40d02dd1-61a3-4787-a155-572325d47b80\"",
    " xml:lang=\"en\"",
    "<!DOCTYPE x>",
    "<!doctype x>",
    "<!x>",
    "<![CDATA[ a\r\nb\r ]]>",
    "x\r\ny\rz&#13;\r",
    " xmlns:speke=\"urn:other\"",
    " xmlns=\"urn:aws:amazon:com:speke\"",
    "<p:F xmlns:p=\"urn:p\" xmlns:q=\"urn:p\"><q:G q:a=\"&lt;\"/>t</p:F>",
];

#[derive(Clone, Debug)]
enum Mutation {
    /// Overwrite one byte.
    Set(Index, u8),
    /// Insert one of [`FRAGMENTS`].
    Insert(Index, Index),
    /// Delete up to 16 bytes.
    Delete(Index, usize),
    /// Copy up to 64 bytes to another place.
    Copy(Index, usize, Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(i, f)| Mutation::Insert(i, f)),
        1 => (any::<Index>(), 1..16usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), 1..64usize, any::<Index>())
            .prop_map(|(i, n, j)| Mutation::Copy(i, n, j)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match mutation {
        Mutation::Set(i, b) => bytes[i.index(len)] = *b,
        Mutation::Insert(i, f) => {
            let at = i.index(len + 1);
            let fragment = FRAGMENTS[f.index(FRAGMENTS.len())].as_bytes();
            bytes.splice(at..at, fragment.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i.index(len);
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Copy(i, n, j) => {
            let from = i.index(len);
            let piece = bytes[from..(from + n).min(len)].to_vec();
            let to = j.index(len + 1);
            bytes.splice(to..to, piece);
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
    }
}

/// Cases per property: `DIFFERENTIAL_CASES` in the environment for a longer hunt (millions
/// run in minutes in a release build: `cargo test --release -p keyplex-cpix differential`).
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("DIFFERENTIAL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Schema-valid documents of every version, as keyplex writes them.
    #[test]
    fn generated_documents_read_the_same(doc in any_document()) {
        let xml = write_document(&doc);
        if let Err(e) = agree(xml.as_bytes()) {
            return Err(TestCaseError::fail(e));
        }
    }

    /// Generated documents, then mutated.
    #[test]
    fn mutated_generated_documents_read_the_same(
        doc in any_document(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = write_document(&doc).into_bytes();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if let Err(e) = agree(&bytes) {
            return Err(TestCaseError::fail(e));
        }
    }
}

proptest! {
    #![proptest_config(cases(4096))]

    /// The corpus documents with a few random changes each.
    #[test]
    fn mutated_corpus_documents_read_the_same(
        seed in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if let Err(e) = agree(&bytes) {
            return Err(TestCaseError::fail(e));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The documented differences, one by one

fn new_error(xml: &str) -> String {
    match super::read_document(xml.as_bytes()) {
        Err(CpixError::Xml(message)) => message,
        other => panic!("{xml}: expected a well-formedness error, got {other:?}"),
    }
}

#[test]
fn stricter_than_the_dom_reader() {
    const CPIX: &str = r#"xmlns="urn:dashif:org:cpix""#;
    for (xml, message) in [
        (format!("<:CPIX {CPIX}/>"), "has an empty prefix"),
        (format!(r#"<CPIX {CPIX} :a="1"/>"#), "has an empty prefix"),
        (format!(r#"<CPIX {CPIX}></:CPIX>"#), "has an empty prefix"),
        (
            format!(r#"<CPIX {CPIX} xmlns:p=""/>"#),
            "an empty namespace name for a prefix",
        ),
        (
            format!(r#"<CPIX {CPIX} xmlns="urn:x"/>"#),
            "duplicate namespace declaration for the default namespace",
        ),
        (
            format!(r#"<CPIX {CPIX} xmlns:xmlns="urn:x"/>"#),
            "the prefix xmlns may not be declared",
        ),
        (
            format!(r#"<CPIX {CPIX} xmlns:p="urn:p" p:xmlns="urn:x"/>"#),
            "is ambiguous",
        ),
        (
            format!(r#"<CPIX {CPIX} name="&#xD800;"/>"#),
            "is not a Unicode scalar value",
        ),
        (
            format!(r#"<CPIX {CPIX} name="&#x110000;"/>"#),
            "is not a Unicode scalar value",
        ),
    ] {
        let error = new_error(&xml);
        assert!(error.contains(message), "{xml}: {error}");
        assert!(STRICTER.contains(&message));
        // The DOM reader read these.
        assert!(dom_oracle::read_document(xml.as_bytes()).is_ok(), "{xml}");
    }
}

#[test]
fn undeclared_default_namespace() {
    // `xmlns=""` puts unprefixed names in no namespace: not CPIX, and echoed without a
    // namespace declaration.
    let e = super::read_document(br#"<CPIX xmlns=""/>"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a CPIX document: root element is CPIX, expected {urn:dashif:org:cpix}CPIX"
    );
    let xml = r#"<CPIX xmlns="urn:dashif:org:cpix"><ContentKeyUsageRuleList><ContentKeyUsageRule kid="40d02dd1-61a3-4787-a155-572325d47b80"><Filter xmlns="" a="1"><Sub/></Filter></ContentKeyUsageRule></ContentKeyUsageRuleList></CPIX>"#;
    let doc = super::read_document(xml.as_bytes()).unwrap();
    assert_eq!(
        doc.usage_rules.unwrap()[0].unknown_children,
        vec![r#"<Filter a="1"><Sub/></Filter>"#.to_owned()]
    );
}
