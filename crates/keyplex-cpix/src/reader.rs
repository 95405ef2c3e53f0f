//! XML → [`CpixDocument`].
//!
//! Hardening: DTDs are refused outright (no entity is ever expanded), the node count is
//! capped, and elements are matched by (namespace URI, local name), never by prefix.
//!
//! Leniency, on purpose: child order inside an element is not enforced (SPEKE v1 packagers put
//! `speke:` elements before `cpix:PSSH`), whitespace around base64 text is stripped, and
//! schema-valid elements keyplex has no use for (PSKC `KeyType` children of a 2.3 ContentKey,
//! 2.4 `HDCPData`, DeliveryData `Description`…) are skipped. Foreign-namespace elements are
//! kept in `DrmSystemEntry::extensions` and `UsageRule::unknown_children`, and ignored
//! elsewhere; `ds:Signature` elements are dropped (keyplex does not verify XMLDSig). An
//! unknown element in the CPIX namespace is an error.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{ContentKeyValue, EncryptionScheme, Iv, KeyId};
use roxmltree::{Node, ParsingOptions};

use crate::error::{CpixError, quoted};
use crate::model::{
    AudioFilter, BitrateFilter, ContentKeyEntry, ContentKeyPeriod, CpixDocument, CpixVersion,
    DeliveryData, DrmSystemEntry, ExtensionElement, HlsSignaling, KeyPeriodFilter, KeyValue, Kid,
    LabelFilter, Playlist, SystemIdAttr, UsageRule, VideoFilter, WrappedDeliveryKeys,
};
use crate::ns;

/// Far above any real CPIX document (a few hundred keys and DRM systems), far below what
/// could exhaust memory.
pub const NODES_LIMIT: u32 = 100_000;

/// Most entries of one list: a live request for 5 track types over 100 key periods has 500
/// content keys and, for 5 DRM systems, 2,500 `DRMSystem`s. The limit bounds the work one
/// request can cause (keys created, signaling built, answer size), not only its memory.
pub const MAX_CONTENT_KEYS: usize = 1_024;
/// See [`MAX_CONTENT_KEYS`]; for the lists whose entries are per key and per DRM system.
pub const MAX_LIST_ENTRIES: usize = 8_192;

/// Parses a CPIX document (UTF-8 with or without BOM, or UTF-16 with BOM).
pub fn read_document(xml: &[u8]) -> Result<CpixDocument, CpixError> {
    let text = decode(xml)?;
    // roxmltree accepts an empty `<!DOCTYPE x>` even with `allow_dtd: false`; CPIX has no use
    // for any DTD, so any declaration is refused before parsing.
    if memchr::memmem::find(text.as_bytes(), b"<!DOCTYPE").is_some() {
        return Err(CpixError::Dtd);
    }
    check_markup(&text)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
    };
    let doc = roxmltree::Document::parse_with_options(&text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => CpixError::Dtd,
        other => CpixError::Xml(other.to_string()),
    })?;
    read_root(doc.root_element())
}

/// Deepest element nesting accepted. CPIX documents nest about 8 deep (12 with an XML
/// signature); roxmltree's tokenizer recurses once per level, so without this bound a
/// 50,000-deep document overflows the stack.
pub const MAX_DEPTH: usize = 64;

/// Most attributes (namespace declarations included) on one element. CPIX elements carry
/// at most about ten; the parser checks each new attribute name against the element's
/// earlier ones, so the work of one tag grows with the square of its attribute count
/// (60,000 attributes on one tag: seconds of CPU for one request).
pub const MAX_ATTRIBUTES: usize = 128;

/// Most namespace declarations (`xmlns`, `xmlns:p`) in one document. A CPIX document
/// declares a handful; each declaration costs the parser memory and every later name
/// lookup in its scope.
pub const MAX_NAMESPACE_DECLARATIONS: usize = 256;

/// Counts element nesting, attributes per element and namespace declarations without
/// parsing, so that roxmltree only sees documents it can handle at a bounded cost. It only
/// needs to be right for well-formed XML: whatever it miscounts in broken XML, roxmltree
/// refuses afterwards (the counts only ever err on the side of refusing).
fn check_markup(text: &str) -> Result<(), CpixError> {
    let bytes = text.as_bytes();
    let tail = |at: usize| bytes.get(at..).unwrap_or_default();
    // Where the text after the next `end` starts (the end of input when there is none).
    let past = |at: usize, end: &[u8]| {
        memchr::memmem::find(tail(at), end).map_or(bytes.len(), |p| at + p + end.len())
    };
    let too_deep = || CpixError::Xml(format!("elements nested deeper than {MAX_DEPTH} levels"));
    let mut depth = 0usize;
    let mut declarations = 0usize;
    let mut at = 0;
    // The scan jumps from one markup character to the next with SIMD searches (memchr): it
    // runs on every request body, before the parser.
    while let Some(offset) = memchr::memchr(b'<', tail(at)) {
        at += offset;
        let rest = tail(at);
        if rest.starts_with(b"<!--") {
            at = past(at, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            at = past(at, b"]]>");
        } else if rest.starts_with(b"<?") {
            at = past(at, b"?>");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            at = past(at, b">");
        } else {
            // A start tag: its end is the first '>' outside quoted attribute values ('>' may
            // appear in them); `/>` closes an empty element. Each quoted value is one
            // attribute, named by the markup between the previous value and its quote.
            let mut j = at + 1;
            let mut attributes = 0usize;
            let end = loop {
                let Some(p) = memchr::memchr3(b'"', b'\'', b'>', tail(j)) else {
                    break None;
                };
                let found = j + p;
                match bytes.get(found) {
                    Some(b'>') => break Some(found),
                    Some(&quote) => {
                        attributes += 1;
                        if attributes > MAX_ATTRIBUTES {
                            return Err(CpixError::Xml(format!(
                                "an element has more than {MAX_ATTRIBUTES} attributes"
                            )));
                        }
                        if declares_namespace(bytes.get(j..found).unwrap_or_default()) {
                            declarations += 1;
                            if declarations > MAX_NAMESPACE_DECLARATIONS {
                                return Err(CpixError::Xml(format!(
                                    "the document has more than {MAX_NAMESPACE_DECLARATIONS} namespace declarations"
                                )));
                            }
                        }
                        match memchr::memchr(quote, tail(found + 1)) {
                            Some(close) => j = found + 1 + close + 1,
                            None => break None,
                        }
                    }
                    None => break None,
                }
            };
            let empty = end.is_some_and(|e| e > at + 1 && bytes.get(e - 1) == Some(&b'/'));
            if !empty {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep());
                }
            }
            at = end.map_or(bytes.len(), |e| e + 1);
        }
    }
    Ok(())
}

/// Whether the attribute whose markup before its value is `before` (` xmlns:p=`, or
/// `<Tag xmlns=` for the first one) declares a namespace.
fn declares_namespace(before: &[u8]) -> bool {
    let before = before.trim_ascii_end();
    let name = before.strip_suffix(b"=").unwrap_or(before).trim_ascii_end();
    let start = name
        .iter()
        .rposition(|b| b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    let name = name.get(start..).unwrap_or_default();
    name == b"xmlns" || name.starts_with(b"xmlns:")
}

/// Decodes the byte stream per its BOM (XML 1.0 Appendix F); no BOM means UTF-8.
fn decode(xml: &[u8]) -> Result<Cow<'_, str>, CpixError> {
    let utf16 = |body: &[u8], little_endian: bool| -> Result<Cow<'_, str>, CpixError> {
        let encoding = if little_endian {
            "UTF-16LE"
        } else {
            "UTF-16BE"
        };
        let chunks = body.chunks_exact(2);
        if !chunks.remainder().is_empty() {
            return Err(CpixError::Encoding { encoding });
        }
        let units = chunks.map(|c| match c {
            [a, b] if little_endian => u16::from_le_bytes([*a, *b]),
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map(Cow::Owned)
            .map_err(|_| CpixError::Encoding { encoding })
    };
    match xml {
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest)
            .map(Cow::Borrowed)
            .map_err(|_| CpixError::Encoding { encoding: "UTF-8" }),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false),
        // `<?` without BOM (XML 1.0 Appendix F.1).
        [0x3C, 0x00, 0x3F, 0x00, ..] => utf16(xml, true),
        [0x00, 0x3C, 0x00, 0x3F, ..] => utf16(xml, false),
        _ => std::str::from_utf8(xml)
            .map(Cow::Borrowed)
            .map_err(|_| CpixError::Encoding { encoding: "UTF-8" }),
    }
}

// ---------------------------------------------------------------------------------------------
// Node helpers

fn is(node: Node<'_, '_>, namespace: &str, local: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(namespace)
        && node.tag_name().name() == local
}

fn clark_name(node: Node<'_, '_>) -> String {
    let name = node.tag_name();
    match name.namespace() {
        Some(ns) => format!("{{{ns}}}{}", name.name()),
        None => name.name().to_owned(),
    }
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

/// What a child element of a CPIX element is.
enum Child<'n> {
    /// In the CPIX namespace, with this local name.
    Cpix(&'n str),
    /// `ds:Signature`: dropped everywhere.
    Signature,
    /// Any other namespace (or none).
    Foreign,
}

fn classify<'n>(node: Node<'_, 'n>) -> Child<'n> {
    let name = node.tag_name();
    match name.namespace() {
        Some(ns::CPIX) => Child::Cpix(name.name()),
        Some(ns::DS) if name.name() == "Signature" => Child::Signature,
        _ => Child::Foreign,
    }
}

fn unknown(node: Node<'_, '_>, parent: &'static str) -> CpixError {
    CpixError::UnknownElement {
        element: clark_name(node),
        parent,
    }
}

/// Stores `value` in a 0..1 slot, refusing a second occurrence.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    element: &'static str,
    parent: &'static str,
) -> Result<(), CpixError> {
    if slot.is_some() {
        return Err(CpixError::DuplicateElement { element, parent });
    }
    *slot = Some(value);
    Ok(())
}

/// The element's own text (all direct text nodes), whitespace-trimmed.
fn text(node: Node<'_, '_>) -> String {
    let joined: String = node
        .children()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect();
    joined.trim().to_owned()
}

fn strip_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// Text of an `xs:base64Binary` element: whitespace removed, checked to decode.
fn base64_text(node: Node<'_, '_>, element: &'static str) -> Result<String, CpixError> {
    let value = strip_whitespace(&text(node));
    if B64.decode(&value).is_err() {
        return Err(CpixError::InvalidText {
            element,
            value: quoted(&value),
            expected: "base64",
        });
    }
    Ok(value)
}

/// Decoded base64 of a secret-carrying element (its content is never quoted in errors).
fn secret_bytes(node: Node<'_, '_>, element: &'static str) -> Result<Vec<u8>, CpixError> {
    B64.decode(strip_whitespace(&text(node)))
        .map_err(|_| CpixError::InvalidSecret {
            element,
            reason: "not valid base64",
        })
}

fn attr(node: Node<'_, '_>, name: &str) -> Option<String> {
    node.attribute(name).map(str::to_owned)
}

fn required_attr<'a>(
    node: Node<'a, '_>,
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, CpixError> {
    node.attribute(attribute)
        .ok_or(CpixError::MissingAttribute { element, attribute })
}

fn invalid(
    element: &'static str,
    attribute: &'static str,
    value: &str,
    expected: &'static str,
) -> CpixError {
    CpixError::InvalidAttribute {
        element,
        attribute,
        value: quoted(value),
        expected,
    }
}

fn kid_value(
    value: &str,
    element: &'static str,
    attribute: &'static str,
) -> Result<Kid, CpixError> {
    let id = KeyId::from_str(value).map_err(|_| {
        invalid(
            element,
            attribute,
            value,
            "a UUID such as 01234567-89ab-cdef-0123-456789abcdef",
        )
    })?;
    Ok(Kid {
        id,
        as_written: value.to_owned(),
    })
}

fn required_kid(node: Node<'_, '_>, element: &'static str) -> Result<Kid, CpixError> {
    kid_value(required_attr(node, element, "kid")?, element, "kid")
}

fn u64_attr(
    node: Node<'_, '_>,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<u64>, CpixError> {
    node.attribute(attribute)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| invalid(element, attribute, v, "a non-negative integer"))
        })
        .transpose()
}

fn bool_attr(
    node: Node<'_, '_>,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<bool>, CpixError> {
    node.attribute(attribute)
        .map(|v| match v.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(invalid(element, attribute, v, "true or false")),
        })
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Document

fn read_root(root: Node<'_, '_>) -> Result<CpixDocument, CpixError> {
    if !is(root, ns::CPIX, "CPIX") {
        return Err(CpixError::NotCpix(format!(
            "root element is {}, expected {{{}}}CPIX",
            quoted(&clark_name(root)),
            ns::CPIX
        )));
    }
    let mut doc = CpixDocument {
        version: root.attribute("version").map(|v| match v.trim() {
            "2.3" => CpixVersion::V2_3,
            "2.4" => CpixVersion::V2_4,
            other => CpixVersion::Other(other.to_owned()),
        }),
        id: attr(root, "id"),
        content_id: attr(root, "contentId"),
        name: attr(root, "name"),
        ..CpixDocument::default()
    };
    const PARENT: &str = "CPIX";
    for child in elements(root) {
        match classify(child) {
            Child::Cpix("DeliveryDataList") => {
                let list = read_list(
                    child,
                    "DeliveryDataList",
                    "DeliveryData",
                    read_delivery_data,
                )?;
                set_once(&mut doc.delivery_data, list, "DeliveryDataList", PARENT)?;
            }
            Child::Cpix("ContentKeyList") => {
                let list = read_list(child, "ContentKeyList", "ContentKey", read_content_key)?;
                let mut seen = HashSet::new();
                for key in &list {
                    if !seen.insert(key.kid.id) {
                        return Err(CpixError::DuplicateKid(quoted(&key.kid.as_written)));
                    }
                }
                set_once(&mut doc.content_keys, list, "ContentKeyList", PARENT)?;
            }
            Child::Cpix("DRMSystemList") => {
                let list = read_list(child, "DRMSystemList", "DRMSystem", read_drm_system)?;
                set_once(&mut doc.drm_systems, list, "DRMSystemList", PARENT)?;
            }
            Child::Cpix("ContentKeyPeriodList") => {
                let list = read_list(
                    child,
                    "ContentKeyPeriodList",
                    "ContentKeyPeriod",
                    read_period,
                )?;
                set_once(&mut doc.periods, list, "ContentKeyPeriodList", PARENT)?;
            }
            Child::Cpix("ContentKeyUsageRuleList") => {
                let list = read_list(
                    child,
                    "ContentKeyUsageRuleList",
                    "ContentKeyUsageRule",
                    read_usage_rule,
                )?;
                set_once(
                    &mut doc.usage_rules,
                    list,
                    "ContentKeyUsageRuleList",
                    PARENT,
                )?;
            }
            Child::Cpix("UpdateHistoryItemList") => {
                set_once(
                    &mut doc.update_history_xml,
                    fragment_xml(child),
                    "UpdateHistoryItemList",
                    PARENT,
                )?;
            }
            Child::Cpix(_) => return Err(unknown(child, PARENT)),
            Child::Signature | Child::Foreign => {}
        }
    }
    Ok(doc)
}

/// Reads every `item` child of a `…List` element (which may also carry signatures).
fn read_list<T>(
    list: Node<'_, '_>,
    parent: &'static str,
    item: &'static str,
    read_item: fn(Node<'_, '_>) -> Result<T, CpixError>,
) -> Result<Vec<T>, CpixError> {
    let limit = if item == "ContentKey" {
        MAX_CONTENT_KEYS
    } else {
        MAX_LIST_ENTRIES
    };
    let mut out = Vec::new();
    for child in elements(list) {
        match classify(child) {
            Child::Cpix(name) if name == item => {
                if out.len() == limit {
                    return Err(CpixError::TooManyElements {
                        element: item,
                        parent,
                        limit,
                    });
                }
                out.push(read_item(child)?);
            }
            Child::Cpix(_) => return Err(unknown(child, parent)),
            Child::Signature | Child::Foreign => {}
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// DeliveryData

fn read_delivery_data(node: Node<'_, '_>) -> Result<DeliveryData, CpixError> {
    const PARENT: &str = "DeliveryData";
    let mut certificate_der = None;
    let mut document_key_cipher = None;
    let mut mac_key_cipher = None;
    for child in elements(node) {
        match classify(child) {
            Child::Cpix("DeliveryKey") => {
                set_once(
                    &mut certificate_der,
                    read_delivery_key(child)?,
                    "DeliveryKey",
                    PARENT,
                )?;
            }
            Child::Cpix("DocumentKey") => {
                check_algorithm(
                    child,
                    "DocumentKey",
                    ns::ALG_AES256_CBC,
                    "xmlenc#aes256-cbc",
                )?;
                set_once(
                    &mut document_key_cipher,
                    read_document_key(child)?,
                    "DocumentKey",
                    PARENT,
                )?;
            }
            Child::Cpix("MACMethod") => {
                if child.attribute("Algorithm").is_none() {
                    return Err(CpixError::MissingAttribute {
                        element: "MACMethod",
                        attribute: "Algorithm",
                    });
                }
                check_algorithm(
                    child,
                    "MACMethod",
                    ns::ALG_HMAC_SHA512,
                    "xmldsig-more#hmac-sha512",
                )?;
                set_once(
                    &mut mac_key_cipher,
                    read_mac_method(child)?,
                    "MACMethod",
                    PARENT,
                )?;
            }
            Child::Cpix(
                "Description" | "SendingEntity" | "SenderPointOfContact" | "ReceivingEntity",
            ) => {}
            Child::Cpix(_) => return Err(unknown(child, PARENT)),
            Child::Signature | Child::Foreign => {}
        }
    }
    let certificate_der = certificate_der.ok_or(CpixError::MissingElement {
        element: "DeliveryKey",
        parent: PARENT,
    })?;
    let wrapped = match (document_key_cipher, mac_key_cipher) {
        (None, None) => None,
        (Some(document_key_cipher), Some(mac_key_cipher)) => Some(WrappedDeliveryKeys {
            document_key_cipher,
            mac_key_cipher,
        }),
        (Some(_), None) => {
            return Err(CpixError::MissingElement {
                element: "MACMethod",
                parent: PARENT,
            });
        }
        (None, Some(_)) => {
            return Err(CpixError::MissingElement {
                element: "DocumentKey",
                parent: PARENT,
            });
        }
    };
    Ok(DeliveryData {
        id: attr(node, "id"),
        certificate_der,
        wrapped,
    })
}

fn check_algorithm(
    node: Node<'_, '_>,
    element: &'static str,
    uri: &str,
    expected: &'static str,
) -> Result<(), CpixError> {
    match node.attribute("Algorithm") {
        Some(value) if value.trim() != uri => Err(CpixError::UnsupportedAlgorithm {
            element,
            value: quoted(value),
            expected,
        }),
        _ => Ok(()),
    }
}

/// `DeliveryKey` (ds:KeyInfoType): the first `ds:X509Data/ds:X509Certificate`.
fn read_delivery_key(node: Node<'_, '_>) -> Result<Vec<u8>, CpixError> {
    let cert = elements(node)
        .filter(|n| is(*n, ns::DS, "X509Data"))
        .flat_map(elements)
        .find(|n| is(*n, ns::DS, "X509Certificate"))
        .ok_or(CpixError::MissingElement {
            element: "ds:X509Data/ds:X509Certificate",
            parent: "DeliveryKey",
        })?;
    let value = strip_whitespace(&text(cert));
    let der = B64.decode(&value).map_err(|_| CpixError::InvalidText {
        element: "ds:X509Certificate",
        value: quoted(&value),
        expected: "base64 of a DER certificate",
    })?;
    if der.is_empty() {
        return Err(CpixError::InvalidText {
            element: "ds:X509Certificate",
            value: String::new(),
            expected: "base64 of a DER certificate",
        });
    }
    Ok(der)
}

/// `DocumentKey/Data/pskc:Secret/pskc:EncryptedValue`: the RSA-OAEP wrapped document key.
fn read_document_key(node: Node<'_, '_>) -> Result<Vec<u8>, CpixError> {
    let encrypted = elements(node)
        .filter(|n| is(*n, ns::CPIX, "Data"))
        .flat_map(elements)
        .filter(|n| is(*n, ns::PSKC, "Secret"))
        .flat_map(elements)
        .find(|n| is(*n, ns::PSKC, "EncryptedValue"))
        .ok_or(CpixError::MissingElement {
            element: "Data/pskc:Secret/pskc:EncryptedValue",
            parent: "DocumentKey",
        })?;
    read_rsa_wrapped(encrypted, "DocumentKey")
}

/// `MACMethod`: the wrapped MAC key as written by DASH-IF/Axinom (`cpix:Key` holding
/// `enc:EncryptionMethod` + `enc:CipherData`), by AWS SPEKE (`cpix:Key/pskc:EncryptedValue`)
/// or per RFC 6030 (`pskc:MACKey`).
fn read_mac_method(node: Node<'_, '_>) -> Result<Vec<u8>, CpixError> {
    for child in elements(node) {
        if is(child, ns::CPIX, "Key") {
            return match elements(child).find(|n| is(*n, ns::PSKC, "EncryptedValue")) {
                Some(encrypted) => read_rsa_wrapped(encrypted, "MACMethod/Key"),
                None => read_rsa_wrapped(child, "MACMethod/Key"),
            };
        }
        if is(child, ns::PSKC, "MACKey") {
            return read_rsa_wrapped(child, "MACMethod/pskc:MACKey");
        }
    }
    Err(CpixError::MissingElement {
        element: "Key",
        parent: "MACMethod",
    })
}

/// An xenc `EncryptedDataType`-shaped element wrapping a key with RSA-OAEP.
fn read_rsa_wrapped(node: Node<'_, '_>, element: &'static str) -> Result<Vec<u8>, CpixError> {
    read_encrypted(
        node,
        element,
        ns::ALG_RSA_OAEP_MGF1P,
        "xmlenc#rsa-oaep-mgf1p",
    )
}

/// `enc:EncryptionMethod@Algorithm` (checked when present) and `enc:CipherData/enc:CipherValue`.
fn read_encrypted(
    node: Node<'_, '_>,
    element: &'static str,
    algorithm: &str,
    expected: &'static str,
) -> Result<Vec<u8>, CpixError> {
    if let Some(method) = elements(node).find(|n| is(*n, ns::ENC, "EncryptionMethod")) {
        check_algorithm(method, element, algorithm, expected)?;
    }
    let value = elements(node)
        .filter(|n| is(*n, ns::ENC, "CipherData"))
        .flat_map(elements)
        .find(|n| is(*n, ns::ENC, "CipherValue"))
        .ok_or(CpixError::MissingElement {
            element: "enc:CipherData/enc:CipherValue",
            parent: element,
        })?;
    let bytes = secret_bytes(value, "CipherValue")?;
    if bytes.is_empty() {
        return Err(CpixError::InvalidSecret {
            element: "CipherValue",
            reason: "empty",
        });
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// ContentKey

fn read_content_key(node: Node<'_, '_>) -> Result<ContentKeyEntry, CpixError> {
    const E: &str = "ContentKey";
    let explicit_iv = node
        .attribute("explicitIV")
        .map(|v| {
            B64.decode(strip_whitespace(v))
                .ok()
                .and_then(|bytes| Iv::from_slice(&bytes).ok())
                .ok_or_else(|| {
                    invalid(
                        E,
                        "explicitIV",
                        v,
                        "must be base64 of exactly 16 bytes (CPIX 2.3.1)",
                    )
                })
        })
        .transpose()?;
    let common_encryption_scheme = node
        .attribute("commonEncryptionScheme")
        .map(|v| {
            EncryptionScheme::from_str(v).map_err(|_| {
                invalid(
                    E,
                    "commonEncryptionScheme",
                    v,
                    "one of cenc, cbcs, cens, cbc1",
                )
            })
        })
        .transpose()?;
    let depends_on_key = node
        .attribute("dependsOnKey")
        .map(|v| kid_value(v, E, "dependsOnKey"))
        .transpose()?;
    let mut value = None;
    for child in elements(node) {
        match classify(child) {
            Child::Cpix("Data") => {
                if let Some(data) = read_key_data(child)? {
                    set_once(&mut value, data, "Data", E)?;
                }
            }
            // 2.3 PSKC KeyType children and 2.4 HDCPData: schema-valid, unused by keyplex.
            Child::Cpix(
                "Issuer"
                | "AlgorithmParameters"
                | "KeyProfileId"
                | "KeyReference"
                | "FriendlyName"
                | "UserId"
                | "Policy"
                | "Extensions"
                | "HDCPData",
            ) => {}
            Child::Cpix(_) => return Err(unknown(child, E)),
            Child::Signature | Child::Foreign => {}
        }
    }
    Ok(ContentKeyEntry {
        id: attr(node, "id"),
        kid: required_kid(node, E)?,
        explicit_iv,
        common_encryption_scheme,
        content_id: attr(node, "contentId"),
        depends_on_key,
        value,
    })
}

/// `Data` (pskc:KeyDataType): the `pskc:Secret`, if any value is present.
fn read_key_data(node: Node<'_, '_>) -> Result<Option<KeyValue>, CpixError> {
    let Some(secret) = elements(node).find(|n| is(*n, ns::PSKC, "Secret")) else {
        return Ok(None);
    };
    let mut plain = None;
    let mut encrypted = None;
    let mut mac = None;
    for child in elements(secret) {
        if is(child, ns::PSKC, "PlainValue") {
            let bytes = secret_bytes(child, "PlainValue")?;
            let key =
                ContentKeyValue::from_slice(&bytes).map_err(|_| CpixError::InvalidSecret {
                    element: "PlainValue",
                    reason: "must be base64 of exactly 16 bytes",
                })?;
            set_once(&mut plain, key, "PlainValue", "pskc:Secret")?;
        } else if is(child, ns::PSKC, "EncryptedValue") {
            let cipher = read_encrypted(
                child,
                "pskc:EncryptedValue",
                ns::ALG_AES256_CBC,
                "xmlenc#aes256-cbc",
            )?;
            set_once(&mut encrypted, cipher, "EncryptedValue", "pskc:Secret")?;
        } else if is(child, ns::PSKC, "ValueMAC") {
            set_once(
                &mut mac,
                secret_bytes(child, "ValueMAC")?,
                "ValueMAC",
                "pskc:Secret",
            )?;
        }
    }
    match (plain, encrypted, mac) {
        (Some(_), Some(_), _) => Err(CpixError::DuplicateElement {
            element: "PlainValue/EncryptedValue",
            parent: "pskc:Secret",
        }),
        (Some(key), None, _) => Ok(Some(KeyValue::Plain(key))),
        (None, Some(cipher_value), Some(value_mac)) => Ok(Some(KeyValue::Encrypted {
            cipher_value,
            value_mac,
        })),
        (None, Some(_), None) => Err(CpixError::MissingElement {
            element: "ValueMAC",
            parent: "pskc:Secret",
        }),
        (None, None, _) => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// DRMSystem

fn read_drm_system(node: Node<'_, '_>) -> Result<DrmSystemEntry, CpixError> {
    const E: &str = "DRMSystem";
    let system_id_text = required_attr(node, E, "systemId")?;
    let system_id = KeyId::from_str(system_id_text).map_err(|_| {
        invalid(
            E,
            "systemId",
            system_id_text,
            "a UUID such as edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
        )
    })?;
    let mut entry = DrmSystemEntry {
        id: attr(node, "id"),
        system_id: SystemIdAttr {
            uuid: *system_id.as_bytes(),
            as_written: system_id_text.to_owned(),
        },
        kid: required_kid(node, E)?,
        name: attr(node, "name"),
        pssh: None,
        content_protection_data: None,
        uri_ext_x_key: None,
        hls_signaling: Vec::new(),
        smooth_streaming: None,
        hds_signaling: None,
        extensions: Vec::new(),
    };
    for child in elements(node) {
        match classify(child) {
            Child::Cpix("PSSH") => {
                set_once(&mut entry.pssh, base64_text(child, "PSSH")?, "PSSH", E)?
            }
            Child::Cpix("ContentProtectionData") => set_once(
                &mut entry.content_protection_data,
                base64_text(child, "ContentProtectionData")?,
                "ContentProtectionData",
                E,
            )?,
            Child::Cpix("URIExtXKey") => {
                set_once(
                    &mut entry.uri_ext_x_key,
                    base64_text(child, "URIExtXKey")?,
                    "URIExtXKey",
                    E,
                )?;
            }
            Child::Cpix("HLSSignalingData") => {
                let playlist = child
                    .attribute("playlist")
                    .map(|v| match v.trim() {
                        "media" => Ok(Playlist::Media),
                        "master" => Ok(Playlist::Master),
                        "multiVariant" => Ok(Playlist::MultiVariant),
                        _ => Err(invalid(
                            "HLSSignalingData",
                            "playlist",
                            v,
                            "media, master or multiVariant",
                        )),
                    })
                    .transpose()?;
                entry.hls_signaling.push(HlsSignaling {
                    playlist,
                    value: base64_text(child, "HLSSignalingData")?,
                });
            }
            Child::Cpix("SmoothStreamingProtectionHeaderData") => set_once(
                &mut entry.smooth_streaming,
                text(child),
                "SmoothStreamingProtectionHeaderData",
                E,
            )?,
            Child::Cpix("HDSSignalingData") => {
                set_once(
                    &mut entry.hds_signaling,
                    base64_text(child, "HDSSignalingData")?,
                    "HDSSignalingData",
                    E,
                )?;
            }
            Child::Cpix(_) => return Err(unknown(child, E)),
            Child::Signature => {}
            Child::Foreign => entry.extensions.push(ExtensionElement {
                namespace: child.tag_name().namespace().unwrap_or_default().to_owned(),
                local_name: child.tag_name().name().to_owned(),
                prefix: child
                    .tag_name()
                    .namespace()
                    .and_then(|uri| child.lookup_prefix(uri))
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
                text: text(child),
            }),
        }
    }
    Ok(entry)
}

// ---------------------------------------------------------------------------------------------
// ContentKeyPeriod and usage rules

fn read_period(node: Node<'_, '_>) -> Result<ContentKeyPeriod, CpixError> {
    Ok(ContentKeyPeriod {
        id: attr(node, "id"),
        index: u64_attr(node, "ContentKeyPeriod", "index")?,
        start: attr(node, "start"),
        end: attr(node, "end"),
        label: attr(node, "label"),
        start_offset: attr(node, "startOffset"),
        end_offset: attr(node, "endOffset"),
        duration: attr(node, "duration"),
    })
}

fn read_usage_rule(node: Node<'_, '_>) -> Result<UsageRule, CpixError> {
    let mut rule = UsageRule {
        id: attr(node, "id"),
        kid: required_kid(node, "ContentKeyUsageRule")?,
        intended_track_type: attr(node, "intendedTrackType"),
        key_period_filters: Vec::new(),
        label_filters: Vec::new(),
        video_filters: Vec::new(),
        audio_filters: Vec::new(),
        bitrate_filters: Vec::new(),
        unknown_children: Vec::new(),
    };
    for child in elements(node) {
        match classify(child) {
            Child::Cpix("KeyPeriodFilter") => rule.key_period_filters.push(KeyPeriodFilter {
                period_id: required_attr(child, "KeyPeriodFilter", "periodId")?.to_owned(),
            }),
            Child::Cpix("LabelFilter") => rule.label_filters.push(LabelFilter {
                label: required_attr(child, "LabelFilter", "label")?.to_owned(),
            }),
            Child::Cpix("VideoFilter") => {
                const E: &str = "VideoFilter";
                rule.video_filters.push(VideoFilter {
                    min_pixels: u64_attr(child, E, "minPixels")?,
                    max_pixels: u64_attr(child, E, "maxPixels")?,
                    hdr: bool_attr(child, E, "hdr")?,
                    wcg: bool_attr(child, E, "wcg")?,
                    min_fps: attr(child, "minFps"),
                    max_fps: attr(child, "maxFps"),
                });
            }
            Child::Cpix("AudioFilter") => rule.audio_filters.push(AudioFilter {
                min_channels: u64_attr(child, "AudioFilter", "minChannels")?,
                max_channels: u64_attr(child, "AudioFilter", "maxChannels")?,
            }),
            Child::Cpix("BitrateFilter") => rule.bitrate_filters.push(BitrateFilter {
                min_bitrate: u64_attr(child, "BitrateFilter", "minBitrate")?,
                max_bitrate: u64_attr(child, "BitrateFilter", "maxBitrate")?,
            }),
            // A filter from a later CPIX version or a foreign extension: the rule becomes
            // unusable (CPIX "Usage Rules Filters"), which is for the caller to decide.
            Child::Cpix(_) | Child::Foreign => rule.unknown_children.push(fragment_xml(child)),
            Child::Signature => {}
        }
    }
    Ok(rule)
}

// ---------------------------------------------------------------------------------------------
// Self-contained fragments

/// Serialises an element subtree as XML that declares every namespace it uses on its root, so
/// it can be pasted anywhere. Comments and processing instructions are dropped.
fn fragment_xml(node: Node<'_, '_>) -> String {
    let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
    let mut declarations: Vec<(String, String)> = Vec::new();
    let mut assign = |uri: &str, hint: Option<&str>| {
        if uri == ns::XML || prefixes.contains_key(uri) {
            return;
        }
        let taken = |p: &str| prefixes.values().any(|v| v == p);
        let prefix =
            match hint.filter(|h| !h.is_empty() && *h != "xmlns" && *h != "xml" && !taken(h)) {
                Some(h) => h.to_owned(),
                None => (0..)
                    .map(|i| format!("ns{i}"))
                    .find(|p| !taken(p))
                    .unwrap_or_default(),
            };
        prefixes.insert(uri.to_owned(), prefix.clone());
        declarations.push((prefix, uri.to_owned()));
    };
    for n in node.descendants().filter(Node::is_element) {
        if let Some(uri) = n.tag_name().namespace() {
            assign(uri, n.lookup_prefix(uri));
        }
        for a in n.attributes() {
            if let Some(uri) = a.namespace() {
                assign(uri, n.lookup_prefix(uri));
            }
        }
    }
    let mut out = String::new();
    write_fragment_element(node, &prefixes, Some(&declarations), &mut out);
    out
}

fn write_fragment_element(
    node: Node<'_, '_>,
    prefixes: &BTreeMap<String, String>,
    declarations: Option<&[(String, String)]>,
    out: &mut String,
) {
    let qualified = |uri: Option<&str>, local: &str| match uri {
        Some(ns::XML) => format!("xml:{local}"),
        Some(uri) => match prefixes.get(uri) {
            Some(p) => format!("{p}:{local}"),
            None => local.to_owned(),
        },
        None => local.to_owned(),
    };
    let name = qualified(node.tag_name().namespace(), node.tag_name().name());
    out.push('<');
    out.push_str(&name);
    for (prefix, uri) in declarations.unwrap_or_default() {
        out.push_str(&format!(
            " xmlns:{prefix}=\"{}\"",
            quick_xml::escape::escape(uri.as_str())
        ));
    }
    for a in node.attributes() {
        out.push_str(&format!(
            " {}=\"{}\"",
            qualified(a.namespace(), a.name()),
            quick_xml::escape::escape(a.value())
        ));
    }
    let children: Vec<_> = node
        .children()
        .filter(|c| c.is_element() || c.is_text())
        .collect();
    if children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for child in children {
        if child.is_element() {
            write_fragment_element(child, prefixes, None, out);
        } else if let Some(t) = child.text() {
            out.push_str(&quick_xml::escape::escape(t));
        }
    }
    out.push_str("</");
    out.push_str(&name);
    out.push('>');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use keyplex_crypto::delivery::{DocumentKeys, RecipientKey, RecipientPrivateKey, WrappedKeys};

    use super::*;
    use crate::testing::{DASHIF, SPEKE, read_vector, xml_files};

    const CERT1_PKCS8: &[u8] =
        include_bytes!("../../keyplex-crypto/testdata/cert1_private_key.pk8.der");

    fn dashif(name: &str) -> CpixDocument {
        read_document(&read_vector(&format!("{DASHIF}/{name}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    /// Decrypts every encrypted ContentKey of `doc` with Cert1's private key, using the
    /// DeliveryData whose certificate is Cert1.
    fn decrypt_with_cert1(
        doc: &CpixDocument,
    ) -> Vec<(String, Result<String, keyplex_crypto::CryptoError>)> {
        let cert1 = read_vector(&format!("{DASHIF}/Cert1.cer"));
        let delivery = doc
            .delivery_data
            .iter()
            .flatten()
            .find(|d| d.certificate_der == cert1)
            .expect("a DeliveryData for Cert1");
        let wrapped = delivery.wrapped.as_ref().unwrap();
        let private = RecipientPrivateKey::from_pkcs8_der(CERT1_PKCS8).unwrap();
        let keys = DocumentKeys::unwrap_with(
            &private,
            &WrappedKeys {
                document_key_cipher: wrapped.document_key_cipher.clone(),
                mac_key_cipher: wrapped.mac_key_cipher.clone(),
            },
        )
        .unwrap();
        doc.content_keys
            .iter()
            .flatten()
            .map(|k| match &k.value {
                Some(KeyValue::Encrypted {
                    cipher_value,
                    value_mac,
                }) => (
                    k.kid.as_written.clone(),
                    keys.decrypt_content_key(cipher_value, value_mac)
                        .map(|v| B64.encode(v.expose())),
                ),
                other => panic!("expected an encrypted key, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_dashif_vector_reads_except_uuid_explicit_iv() {
        for path in xml_files(DASHIF) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let result = read_document(&read_vector(path.to_str().unwrap()));
            if name.starts_with("KeyRotation") {
                let err = result.unwrap_err();
                assert_eq!(
                    err,
                    CpixError::InvalidAttribute {
                        element: "ContentKey",
                        attribute: "explicitIV",
                        value: "f45bcebb-f0df-4a34-bf4e-c24edfcf6289".to_owned(),
                        expected: "must be base64 of exactly 16 bytes (CPIX 2.3.1)",
                    },
                    "{name}"
                );
                assert!(err.to_string().contains("base64 of exactly 16 bytes"));
            } else {
                let doc = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                doc.validate_references()
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    #[test]
    fn clear_keys_default_namespace_and_bom() {
        let doc = dashif("ClearContentKeysOnly.xml");
        let keys = doc.content_keys.unwrap();
        assert_eq!(keys.len(), 4);
        assert_eq!(
            keys[0].kid.as_written,
            "40d02dd1-61a3-4787-a155-572325d47b80"
        );
        match &keys[0].value {
            Some(KeyValue::Plain(k)) => {
                assert_eq!(B64.encode(k.expose()), "gPxt0PMwrHM4TdjwdQmhhQ==")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(doc.version, None);
        assert!(doc.delivery_data.is_none() && doc.drm_systems.is_none());
    }

    #[test]
    fn empty_document_is_an_empty_model() {
        assert_eq!(dashif("EmptyDocument.xml"), CpixDocument::default());
    }

    #[test]
    fn complex_vector_signaling_and_signatures_dropped() {
        let doc = dashif("Complex.xml");
        assert_eq!(doc.delivery_data.as_ref().unwrap().len(), 2);
        let drm = doc.drm_systems.as_ref().unwrap();
        assert_eq!(drm.len(), 12);
        let widevine = &drm[0];
        assert_eq!(
            widevine.system_id.as_written,
            "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
        );
        assert_eq!(
            hex::encode(widevine.system_id.uuid),
            "edef8ba979d64acea3c827dcd51d21ed"
        );
        assert_eq!(
            widevine.kid.id.to_string(),
            "b4c3188b-eddd-453d-9bc2-1cbca7566239"
        );
        assert_eq!(
            widevine
                .hls_signaling
                .iter()
                .map(|h| h.playlist)
                .collect::<Vec<_>>(),
            vec![Some(Playlist::Master), Some(Playlist::Media)]
        );
        let media = String::from_utf8(b64(&widevine.hls_signaling[1].value)).unwrap();
        assert!(media.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI=\"data:text/plain;base64,AAAAOHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABgSELTDGIvt3UU9m8IcvKdWYjlI49yVmwY=\""), "{media}");
        let playready = &drm[1];
        assert!(
            playready
                .smooth_streaming
                .as_deref()
                .unwrap()
                .starts_with("xAEAAAEAAQC6ATwAVwBSAE0ASABFAE")
        );
        assert!(drm.iter().all(|d| d.extensions.is_empty()));
        // The nine ds:Signature elements (root and lists) are parsed and dropped.
        assert!(doc.usage_rules.is_some());
    }

    #[test]
    fn encrypted_vector_decrypts_to_published_keys_with_cert1() {
        let doc = dashif("EncryptedContentKeys.xml");
        let got = decrypt_with_cert1(&doc);
        let want = [
            (
                "bd5adf51-cf04-410f-aac3-ec63a69e929e",
                "3rWoHYasQubO6HbJGrGtLw==",
            ),
            (
                "d2920429-87ab-41e6-a4c5-a8c836b6312e",
                "O5w9FdZiwmQK4uIXzAziaQ==",
            ),
            (
                "e17ba4b8-faff-4d30-bcba-7485e3f2e884",
                "Cwu/3hSBBRQ7SurBdZD5ow==",
            ),
            (
                "0ae6b9ad-92d2-4ebe-882b-1d07dee70715",
                "FB6/Eck9Y9SXy6bY8UU/Mw==",
            ),
        ];
        assert_eq!(got.len(), want.len());
        for ((kid, key), (want_kid, want_key)) in got.into_iter().zip(want) {
            assert_eq!(kid, want_kid);
            assert_eq!(key.unwrap(), want_key);
        }
    }

    #[test]
    fn complex_and_multi_recipient_vectors_decrypt_with_cert1() {
        let complex: Vec<_> = decrypt_with_cert1(&dashif("Complex.xml"))
            .into_iter()
            .map(|(k, v)| (k, v.unwrap()))
            .collect();
        assert_eq!(
            complex[0],
            (
                "b4c3188b-eddd-453d-9bc2-1cbca7566239".to_owned(),
                "b1pkxdNYqPxljV68gohWcw==".to_owned()
            )
        );
        assert_eq!(
            complex[3],
            (
                "a466cdfd-e556-4b1d-8098-c1a4aa78997a".to_owned(),
                "rRuRUWAibaUtai0qQnb71g==".to_owned()
            )
        );
        let multi = decrypt_with_cert1(&dashif("EncryptedContentKeysWithMultipleRecipients.xml"));
        assert_eq!(multi.len(), 4);
        assert_eq!(multi[0].1.as_deref().unwrap(), "gMMdXMudvuGpYW5k3lzf/g==");
        assert_eq!(multi[3].1.as_deref().unwrap(), "zqvOfAja51IUSRV385bvoA==");
    }

    #[test]
    fn wrong_mac_vector_loads_but_fails_the_mac_check() {
        let got = decrypt_with_cert1(&dashif("Invalid_WrongMac.xml"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "5ad2b739-4f46-48df-9a44-aab8c35abf71");
        assert!(matches!(got[0].1, Err(keyplex_crypto::CryptoError::BadMac)));
    }

    #[test]
    fn delivery_certificates_load_as_recipient_keys() {
        let doc = dashif("EncryptedContentKeysWithMultipleRecipients.xml");
        let recipients = doc.delivery_data.unwrap();
        assert_eq!(recipients.len(), 4);
        for d in &recipients {
            assert_eq!(
                RecipientKey::from_certificate_der(&d.certificate_der)
                    .unwrap()
                    .key_size_bits(),
                4096
            );
        }
    }

    #[test]
    fn every_speke_vector_reads_and_v1_extensions_are_kept() {
        for path in xml_files(SPEKE) {
            read_document(&read_vector(path.to_str().unwrap()))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let doc = read_document(&read_vector(&format!(
            "{SPEKE}/aws-speke-v1-docs/live_response.xml"
        )))
        .unwrap();
        assert_eq!(doc.id.as_deref(), Some("abc123"));
        let drm = doc.drm_systems.unwrap();
        let aes = &drm[0];
        assert_eq!(
            aes.uri_ext_x_key
                .as_deref()
                .map(|u| String::from_utf8(b64(u)).unwrap())
                .unwrap(),
            "https://7k4ytuxq5d.execute-api.us-west-2.amazonaws.com/EkeStage/client/abc123/98ee5596-cd3e-a20d-163a-e382420c6eff"
        );
        assert_eq!(
            aes.extensions,
            vec![
                ExtensionElement {
                    namespace: ns::SPEKE.to_owned(),
                    local_name: "KeyFormat".to_owned(),
                    prefix: Some("speke".to_owned()),
                    text: "aWRlbnRpdHk=".to_owned()
                },
                ExtensionElement {
                    namespace: ns::SPEKE.to_owned(),
                    local_name: "KeyFormatVersions".to_owned(),
                    prefix: Some("speke".to_owned()),
                    text: "MQ==".to_owned()
                },
            ]
        );
        // PlayReady: speke:ProtectionHeader before cpix:PSSH (out of schema order) is accepted.
        assert_eq!(drm[3].extensions[0].local_name, "ProtectionHeader");
        assert!(drm[3].pssh.as_deref().unwrap().starts_with("AAADMHBzc2g"));

        let request = read_document(&read_vector(&format!(
            "{SPEKE}/speke-reference-server/v1_request_hls_aes128_keyperiod.xml"
        )))
        .unwrap();
        let slots = &request.drm_systems.unwrap()[0];
        assert_eq!(slots.pssh.as_deref(), Some(""));
        assert_eq!(slots.uri_ext_x_key.as_deref(), Some(""));
        assert_eq!(slots.content_protection_data.as_deref(), Some(""));
        assert_eq!(
            slots
                .extensions
                .iter()
                .map(|e| (e.local_name.as_str(), e.text.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("KeyFormat", ""),
                ("KeyFormatVersions", ""),
                ("ProtectionHeader", "")
            ]
        );
        assert_eq!(request.periods.unwrap()[0].index, Some(11425));
    }

    #[test]
    fn speke_v2_request_fields() {
        let doc = read_document(&read_vector(&format!(
            "{SPEKE}/speke-reference-server/v2_request_cenc_widevine_playready_fairplay.xml"
        )))
        .unwrap();
        assert_eq!(doc.version, Some(CpixVersion::V2_3));
        assert_eq!(doc.content_id.as_deref(), Some("cenc_test_001"));
        let keys = doc.content_keys.as_ref().unwrap();
        assert_eq!(
            keys[0].common_encryption_scheme,
            Some(EncryptionScheme::Cenc)
        );
        assert!(keys.iter().all(|k| k.value.is_none()));
        let drm = doc.drm_systems.as_ref().unwrap();
        assert_eq!(
            drm[2].hls_signaling,
            vec![
                HlsSignaling {
                    playlist: Some(Playlist::Media),
                    value: String::new()
                },
                HlsSignaling {
                    playlist: Some(Playlist::Master),
                    value: String::new()
                },
            ]
        );
        let rules = doc.usage_rules.as_ref().unwrap();
        assert_eq!(rules[0].intended_track_type.as_deref(), Some("VIDEO"));
        assert_eq!(rules[0].video_filters, vec![VideoFilter::default()]);
        assert_eq!(rules[1].audio_filters, vec![AudioFilter::default()]);
        let wrong = read_document(&read_vector(&format!("{SPEKE}/speke-reference-server/v2_general_3_negative_wrong_version_spekev2_dash_widevine.xml"))).unwrap();
        assert_eq!(wrong.version, Some(CpixVersion::Other("4.0".to_owned())));
        // Shared-video negative case references an undefined period: found by validate_references.
        let shared = read_document(&read_vector(&format!(
            "{SPEKE}/speke-reference-server/v2_general_4_spekev2_negative_preset_shared_video.xml"
        )))
        .unwrap();
        assert!(matches!(
            shared.validate_references(),
            Err(CpixError::DanglingReference {
                element: "KeyPeriodFilter",
                ..
            })
        ));
    }

    #[test]
    fn dtd_and_entities_are_rejected() {
        let laughs = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<CPIX xmlns="urn:dashif:org:cpix" id="&lol2;"/>"#;
        assert_eq!(read_document(laughs), Err(CpixError::Dtd));
        let external = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><CPIX xmlns="urn:dashif:org:cpix" name="&e;"/>"#;
        assert_eq!(read_document(external), Err(CpixError::Dtd));
        let empty_doctype = br#"<!DOCTYPE CPIX><CPIX xmlns="urn:dashif:org:cpix"/>"#;
        assert_eq!(read_document(empty_doctype), Err(CpixError::Dtd));
        // An undeclared entity reference is a well-formedness error, never an expansion.
        let undeclared = br#"<CPIX xmlns="urn:dashif:org:cpix" name="&e;"/>"#;
        assert!(matches!(read_document(undeclared), Err(CpixError::Xml(_))));
    }

    #[test]
    fn node_limit_is_enforced() {
        let mut xml =
            String::from(r#"<CPIX xmlns="urn:dashif:org:cpix"><ContentKeyUsageRuleList>"#);
        for _ in 0..NODES_LIMIT {
            xml.push_str(r#"<ContentKeyUsageRule kid="40d02dd1-61a3-4787-a155-572325d47b80"/>"#);
        }
        xml.push_str("</ContentKeyUsageRuleList></CPIX>");
        assert!(matches!(
            read_document(xml.as_bytes()),
            Err(CpixError::Xml(_))
        ));
    }

    #[test]
    fn utf16_and_bom_inputs() {
        let text = r#"<?xml version="1.0" encoding="UTF-16"?><c:CPIX xmlns:c="urn:dashif:org:cpix" contentId="é"><c:ContentKeyList><c:ContentKey kid="40d02dd1-61a3-4787-a155-572325d47b80"/></c:ContentKeyList></c:CPIX>"#;
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let mut be = vec![0xFE, 0xFF];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        let no_bom: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut utf8_bom = vec![0xEF, 0xBB, 0xBF];
        utf8_bom.extend_from_slice(text.replace("UTF-16", "UTF-8").as_bytes());
        for input in [le, be, no_bom, utf8_bom] {
            let doc = read_document(&input).unwrap();
            assert_eq!(doc.content_id.as_deref(), Some("é"));
            assert_eq!(doc.content_keys.unwrap().len(), 1);
        }
        assert_eq!(
            read_document(&[0xFF, 0xFE, 0x3C]),
            Err(CpixError::Encoding {
                encoding: "UTF-16LE"
            })
        );
        assert_eq!(
            read_document(&[0x3C, 0xFF, 0x3E]),
            Err(CpixError::Encoding { encoding: "UTF-8" })
        );
    }

    fn err(xml: &str) -> CpixError {
        read_document(xml.as_bytes()).unwrap_err()
    }

    const KID: &str = "40d02dd1-61a3-4787-a155-572325d47b80";

    fn with_keys(keys: &str) -> String {
        format!(
            r#"<CPIX xmlns="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"><ContentKeyList>{keys}</ContentKeyList></CPIX>"#
        )
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for depth in [1_000, 50_000, 200_000] {
            let xml = format!(
                r#"<CPIX xmlns="urn:dashif:org:cpix">{}{}</CPIX>"#,
                "<x>".repeat(depth),
                "</x>".repeat(depth)
            );
            assert!(read_document(xml.as_bytes()).is_err(), "depth {depth}");
        }
        // The count: the root plus 63 levels pass the check, one more does not; empty
        // elements, comments, CDATA and '>' inside attribute values do not count.
        let nested = |levels: usize| {
            format!(
                r#"<r a=">>"><!-- <x> --><![CDATA[<x>]]><e/>{}{}</r>"#,
                "<x b='/>'>".repeat(levels),
                "</x>".repeat(levels)
            )
        };
        assert_eq!(check_markup(&nested(MAX_DEPTH - 1)), Ok(()));
        assert!(check_markup(&nested(MAX_DEPTH)).is_err());
    }

    #[test]
    fn attributes_and_namespace_declarations_are_bounded() {
        // 60,000 attributes on the root: refused by the pre-scan, before the parser's
        // duplicate-name check (quadratic in the attribute count) runs.
        let attributes: String = (0..60_000).map(|i| format!(r#" a{i}="""#)).collect();
        let xml = format!(r#"<CPIX xmlns="urn:dashif:org:cpix"{attributes}/>"#);
        let err = read_document(xml.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            CpixError::Xml(format!(
                "an element has more than {MAX_ATTRIBUTES} attributes"
            ))
        );
        // The limit itself: 128 attributes (the declaration among them) pass the check.
        let at_limit: String = (1..MAX_ATTRIBUTES).map(|i| format!(" a{i}='>'")).collect();
        assert_eq!(
            check_markup(&format!(r#"<CPIX xmlns="urn:dashif:org:cpix"{at_limit}/>"#)),
            Ok(())
        );
        assert!(
            check_markup(&format!(
                r#"<CPIX xmlns="urn:dashif:org:cpix"{at_limit} b=""/>"#
            ))
            .is_err()
        );

        // Namespace declarations count over the whole document, however they are spread.
        let declaring = |n: usize| -> String {
            (0..n)
                .map(|i| format!(r#"<x xmlns:p{i} = "urn:p{i}" xmlns="urn:d" q="xmlns:"/>"#))
                .collect()
        };
        let doc = |inner: String| format!(r#"<CPIX xmlns="urn:dashif:org:cpix">{inner}</CPIX>"#);
        // The root's declaration plus two per element.
        let half = (MAX_NAMESPACE_DECLARATIONS - 1) / 2;
        assert_eq!(check_markup(&doc(declaring(half))), Ok(()));
        let err = read_document(doc(declaring(half + 1)).as_bytes()).unwrap_err();
        assert_eq!(
            err,
            CpixError::Xml(format!(
                "the document has more than {MAX_NAMESPACE_DECLARATIONS} namespace declarations"
            ))
        );
        // A real document's declarations are far from the bounds.
        assert!(declares_namespace(b"<CPIX xmlns="));
        assert!(declares_namespace(b" xmlns:pskc = "));
        assert!(!declares_namespace(b" contentId="));
        assert!(!declares_namespace(b" notxmlns="));
    }

    /// The byte-by-byte scan [`check_markup`] replaced (kept as its oracle for the depth).
    fn reference_depth_check(text: &str) -> bool {
        fn skip_past<'a>(rest: &'a str, end: &str) -> &'a str {
            rest.find(end)
                .and_then(|p| rest.get(p + end.len()..))
                .unwrap_or("")
        }
        let mut depth = 0usize;
        let mut rest = text;
        while let Some(offset) = rest.find('<') {
            rest = rest.get(offset..).unwrap_or("");
            if rest.starts_with("<!--") {
                rest = skip_past(rest, "-->");
            } else if rest.starts_with("<![CDATA[") {
                rest = skip_past(rest, "]]>");
            } else if rest.starts_with("<?") {
                rest = skip_past(rest, "?>");
            } else if rest.starts_with("</") {
                depth = depth.saturating_sub(1);
                rest = skip_past(rest, ">");
            } else {
                let (mut quote, mut prev, mut end) = (None, 0u8, None);
                for (j, b) in rest.bytes().enumerate().skip(1) {
                    match (quote, b) {
                        (None, b'"' | b'\'') => quote = Some(b),
                        (Some(q), _) if b == q => quote = None,
                        (None, b'>') => {
                            end = Some((j, prev));
                            break;
                        }
                        _ => {}
                    }
                    prev = b;
                }
                if end.is_none_or(|(_, before)| before != b'/') {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return false;
                    }
                }
                rest = end.and_then(|(j, _)| rest.get(j + 1..)).unwrap_or("");
            }
        }
        true
    }

    proptest::proptest! {
        #[test]
        fn depth_check_agrees_with_the_byte_by_byte_scan(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "<x>", "<x><x><x><x>", "</x>", "<e/>", "<x a='>'>", "<x b=\"/>\">", "<x c='/'/>", "<!-- <x> -->",
                    "<![CDATA[<x>]]>", "<?pi <x> ?>", "<", ">", "/", "'", "\"", "-->", "text", "é",
                ]),
                0..400,
            )
        ) {
            let text: String = parts.concat();
            proptest::prop_assert_eq!(check_markup(&text).is_ok(), reference_depth_check(&text), "{}", text);
        }
    }

    #[test]
    fn content_keys_beyond_the_limit_are_refused() {
        let keys = |n: usize| -> String {
            (0..n)
                .map(|i| format!(r#"<ContentKey kid="{i:08x}-0000-4000-8000-000000000000"/>"#))
                .collect()
        };
        let doc = read_document(with_keys(&keys(MAX_CONTENT_KEYS)).as_bytes()).unwrap();
        assert_eq!(doc.content_keys.map(|k| k.len()), Some(MAX_CONTENT_KEYS));
        assert_eq!(
            err(&with_keys(&keys(MAX_CONTENT_KEYS + 1))),
            CpixError::TooManyElements {
                element: "ContentKey",
                parent: "ContentKeyList",
                limit: MAX_CONTENT_KEYS,
            }
        );
    }

    #[test]
    fn root_and_unknown_elements() {
        let e = err(r#"<Foo xmlns="urn:example"/>"#);
        assert_eq!(
            e.to_string(),
            "not a CPIX document: root element is {urn:example}Foo, expected {urn:dashif:org:cpix}CPIX"
        );
        // Same local name, wrong namespace: prefixes never matter, namespaces do.
        assert!(matches!(
            err(r#"<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix:x"/>"#),
            CpixError::NotCpix(_)
        ));
        let e = err(r#"<CPIX xmlns="urn:dashif:org:cpix"><KeyList/></CPIX>"#);
        assert_eq!(
            e,
            CpixError::UnknownElement {
                element: "{urn:dashif:org:cpix}KeyList".to_owned(),
                parent: "CPIX"
            }
        );
        let e = err(
            r#"<CPIX xmlns="urn:dashif:org:cpix"><DRMSystemList><DRMSystem systemId="edef8ba9-79d6-4ace-a3c8-27dcd51d21ed" kid="40d02dd1-61a3-4787-a155-572325d47b80"><Pssh/></DRMSystem></DRMSystemList></CPIX>"#,
        );
        assert!(
            e.to_string()
                .contains("{urn:dashif:org:cpix}Pssh inside DRMSystem"),
            "{e}"
        );
        // Foreign elements outside DRMSystem are ignored.
        let doc = read_document(br#"<CPIX xmlns="urn:dashif:org:cpix"><x:Note xmlns:x="urn:example"/><ContentKeyList><x:Note xmlns:x="urn:example"/></ContentKeyList></CPIX>"#).unwrap();
        assert_eq!(doc.content_keys, Some(vec![]));
        assert!(matches!(
            err(r#"<CPIX xmlns="urn:dashif:org:cpix"><ContentKeyList/><ContentKeyList/></CPIX>"#),
            CpixError::DuplicateElement {
                element: "ContentKeyList",
                ..
            }
        ));
    }

    #[test]
    fn attribute_validation_messages() {
        let e = err(&with_keys(r#"<ContentKey kid="not-a-uuid"/>"#));
        assert_eq!(
            e.to_string(),
            "invalid ContentKey@kid \"not-a-uuid\": a UUID such as 01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(
            err(&with_keys("<ContentKey/>")),
            CpixError::MissingAttribute {
                element: "ContentKey",
                attribute: "kid"
            }
        );
        let e = err(&with_keys(&format!(
            r#"<ContentKey kid="{KID}" explicitIV="AAAA"/>"#
        )));
        assert!(
            e.to_string()
                .contains("explicitIV \"AAAA\": must be base64 of exactly 16 bytes"),
            "{e}"
        );
        let e = err(&with_keys(&format!(
            r#"<ContentKey kid="{KID}" commonEncryptionScheme="ctr1"/>"#
        )));
        assert!(
            e.to_string()
                .contains("commonEncryptionScheme \"ctr1\": one of cenc, cbcs, cens, cbc1"),
            "{e}"
        );
        let dup = with_keys(&format!(
            r#"<ContentKey kid="{KID}"/><ContentKey kid="{}"/>"#,
            KID.to_uppercase()
        ));
        assert_eq!(err(&dup), CpixError::DuplicateKid(KID.to_uppercase()));
        let long = "x".repeat(500);
        let e = err(&with_keys(&format!(r#"<ContentKey kid="{long}"/>"#)));
        assert!(e.to_string().len() < 200, "values are truncated: {e}");

        let drm = |attrs: &str, body: &str| {
            format!(
                r#"<CPIX xmlns="urn:dashif:org:cpix"><DRMSystemList><DRMSystem {attrs}>{body}</DRMSystem></DRMSystemList></CPIX>"#
            )
        };
        let e = err(&drm(&format!(r#"systemId="widevine" kid="{KID}""#), ""));
        assert!(
            e.to_string()
                .starts_with("invalid DRMSystem@systemId \"widevine\""),
            "{e}"
        );
        let e = err(&drm(
            &format!(r#"systemId="edef8ba9-79d6-4ace-a3c8-27dcd51d21ed" kid="{KID}""#),
            r#"<HLSSignalingData playlist="variant"/>"#,
        ));
        assert!(
            e.to_string()
                .contains("playlist \"variant\": media, master or multiVariant"),
            "{e}"
        );
        let e = err(&drm(
            &format!(r#"systemId="edef8ba9-79d6-4ace-a3c8-27dcd51d21ed" kid="{KID}""#),
            "<PSSH>not base64!</PSSH>",
        ));
        assert!(
            e.to_string()
                .contains("invalid PSSH content \"notbase64!\": base64"),
            "{e}"
        );

        let periods = |p: &str| {
            format!(
                r#"<CPIX xmlns="urn:dashif:org:cpix"><ContentKeyPeriodList>{p}</ContentKeyPeriodList></CPIX>"#
            )
        };
        let e = err(&periods(r#"<ContentKeyPeriod id="p" index="-1"/>"#));
        assert!(
            e.to_string()
                .contains("ContentKeyPeriod@index \"-1\": a non-negative integer"),
            "{e}"
        );
        let rules = |r: &str| {
            format!(
                r#"<CPIX xmlns="urn:dashif:org:cpix"><ContentKeyUsageRuleList><ContentKeyUsageRule kid="{KID}">{r}</ContentKeyUsageRule></ContentKeyUsageRuleList></CPIX>"#
            )
        };
        assert!(
            err(&rules(r#"<VideoFilter minPixels="lots"/>"#))
                .to_string()
                .contains("VideoFilter@minPixels")
        );
        assert!(
            err(&rules(r#"<AudioFilter maxChannels="-2"/>"#))
                .to_string()
                .contains("AudioFilter@maxChannels")
        );
        assert!(
            err(&rules(r#"<VideoFilter hdr="yes"/>"#))
                .to_string()
                .contains("VideoFilter@hdr \"yes\": true or false")
        );
        assert_eq!(
            err(&rules("<KeyPeriodFilter/>")),
            CpixError::MissingAttribute {
                element: "KeyPeriodFilter",
                attribute: "periodId"
            }
        );
    }

    #[test]
    fn plain_values_are_checked_without_quoting_them() {
        let plain = |v: &str| {
            with_keys(&format!(
                r#"<ContentKey kid="{KID}"><Data><pskc:Secret><pskc:PlainValue>{v}</pskc:PlainValue></pskc:Secret></Data></ContentKey>"#
            ))
        };
        let doc = read_document(plain("\n  gPxt0PMw rHM4TdjwdQmhhQ==\n").as_bytes()).unwrap();
        assert!(
            matches!(&doc.content_keys.unwrap()[0].value, Some(KeyValue::Plain(k)) if B64.encode(k.expose()) == "gPxt0PMwrHM4TdjwdQmhhQ==")
        );
        // 15 bytes ("secret-key-byte").
        let e = err(&plain("c2VjcmV0LWtleS1ieXRl"));
        assert_eq!(
            e,
            CpixError::InvalidSecret {
                element: "PlainValue",
                reason: "must be base64 of exactly 16 bytes"
            }
        );
        assert!(!e.to_string().contains("c2VjcmV0"));
        assert!(matches!(
            err(&plain("%%%")),
            CpixError::InvalidSecret {
                element: "PlainValue",
                ..
            }
        ));
        // An empty Secret is a request slot.
        let slot = with_keys(&format!(
            r#"<ContentKey kid="{KID}"><Data><pskc:Secret/></Data></ContentKey>"#
        ));
        assert_eq!(
            read_document(slot.as_bytes())
                .unwrap()
                .content_keys
                .unwrap()[0]
                .value,
            None
        );
    }

    #[test]
    fn encrypted_values_need_a_mac_and_known_algorithms() {
        let encrypted = |alg: &str, mac: &str| {
            with_keys(&format!(
                r#"<ContentKey kid="{KID}"><Data><pskc:Secret><pskc:EncryptedValue><enc:EncryptionMethod xmlns:enc="http://www.w3.org/2001/04/xmlenc#" Algorithm="{alg}"/><enc:CipherData xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:CipherValue>AAAA</enc:CipherValue></enc:CipherData></pskc:EncryptedValue>{mac}</pskc:Secret></Data></ContentKey>"#
            ))
        };
        let ok = encrypted(ns::ALG_AES256_CBC, "<pskc:ValueMAC>AQID</pskc:ValueMAC>");
        assert_eq!(
            read_document(ok.as_bytes()).unwrap().content_keys.unwrap()[0].value,
            Some(KeyValue::Encrypted {
                cipher_value: vec![0, 0, 0],
                value_mac: vec![1, 2, 3]
            })
        );
        assert_eq!(
            err(&encrypted(ns::ALG_AES256_CBC, "")),
            CpixError::MissingElement {
                element: "ValueMAC",
                parent: "pskc:Secret"
            }
        );
        assert!(matches!(
            err(&encrypted(
                "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
                "<pskc:ValueMAC>AQID</pskc:ValueMAC>"
            )),
            CpixError::UnsupportedAlgorithm { .. }
        ));
    }

    #[test]
    fn mac_key_accepted_in_speke_and_rfc6030_shapes() {
        let cert = B64.encode(read_vector(&format!("{DASHIF}/Cert1.cer")));
        let delivery = |mac_body: &str| {
            format!(
                r#"<CPIX xmlns="urn:dashif:org:cpix" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><DeliveryDataList><DeliveryData><DeliveryKey><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></DeliveryKey><DocumentKey Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc"><Data><pskc:Secret><pskc:EncryptedValue><enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/><enc:CipherData><enc:CipherValue>AQID</enc:CipherValue></enc:CipherData></pskc:EncryptedValue></pskc:Secret></Data></DocumentKey><MACMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha512">{mac_body}</MACMethod></DeliveryData></DeliveryDataList></CPIX>"#
            )
        };
        let cipher = r#"<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/><enc:CipherData><enc:CipherValue>BAUG</enc:CipherValue></enc:CipherData>"#;
        for body in [
            format!("<Key>{cipher}</Key>"),
            format!(
                "<Key><pskc:EncryptedValue>{cipher}</pskc:EncryptedValue><pskc:ValueMAC>AA==</pskc:ValueMAC></Key>"
            ),
            format!("<pskc:MACKey>{cipher}</pskc:MACKey>"),
        ] {
            let doc =
                read_document(delivery(&body).as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
            let wrapped = doc.delivery_data.unwrap()[0].wrapped.clone().unwrap();
            assert_eq!(
                wrapped,
                WrappedDeliveryKeys {
                    document_key_cipher: vec![1, 2, 3],
                    mac_key_cipher: vec![4, 5, 6]
                }
            );
        }
        assert_eq!(
            err(&delivery("")),
            CpixError::MissingElement {
                element: "Key",
                parent: "MACMethod"
            }
        );
    }

    #[test]
    fn unknown_usage_rule_children_are_kept_as_fragments() {
        let xml = format!(
            r#"<CPIX xmlns="urn:dashif:org:cpix"><ContentKeyUsageRuleList><ContentKeyUsageRule kid="{KID}"><VideoFilter/><v:ColorFilter xmlns:v="urn:example:v" gamut="bt2020"><v:Sub>a&lt;b</v:Sub></v:ColorFilter><FutureFilter x="1"/></ContentKeyUsageRule></ContentKeyUsageRuleList></CPIX>"#
        );
        let rule = read_document(xml.as_bytes())
            .unwrap()
            .usage_rules
            .unwrap()
            .remove(0);
        assert_eq!(rule.unknown_children, vec![
            r#"<v:ColorFilter xmlns:v="urn:example:v" gamut="bt2020"><v:Sub>a&lt;b</v:Sub></v:ColorFilter>"#.to_owned(),
            r#"<ns0:FutureFilter xmlns:ns0="urn:dashif:org:cpix" x="1"/>"#.to_owned(),
        ]);
    }
}
