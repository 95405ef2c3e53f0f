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
//!
//! The document is read in one pass, streaming: [`cursor`] turns quick-xml's tokens into
//! checked events and hands out one element at a time; the functions below build the model
//! from them as they come, without a DOM. keyplex read CPIX through a roxmltree DOM before;
//! that reader is kept as the oracle of the differential tests (`reader/dom_oracle.rs`,
//! `reader/differential.rs`), and where the two differ on purpose is written down there.

mod cursor;
#[cfg(test)]
mod differential;
#[cfg(test)]
mod dom_oracle;

use hashbrown::HashSet;
use std::borrow::Cow;
use std::str::FromStr;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{ContentKeyValue, EncryptionScheme, Iv, KeyId};
use memchr::memmem;

use self::cursor::{Cursor, Ev, Name, Ns};
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
    // CPIX has no use for any DTD, so any declaration is refused before parsing (no entity
    // can then be declared, let alone expanded).
    static DOCTYPE: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"<!DOCTYPE"));
    if DOCTYPE.find(text.as_bytes()).is_some() {
        return Err(CpixError::Dtd);
    }
    // Depth, attributes per element and namespace declarations are bounded by the cursor as
    // it reads (MAX_DEPTH, MAX_ATTRIBUTES, MAX_NAMESPACE_DECLARATIONS).
    if let Some(at) = cursor::first_non_xml_char(&text) {
        return Err(CpixError::Xml(format!(
            "a character XML does not allow (at byte {at})"
        )));
    }
    let mut cur = Cursor::new(&text);
    match read_root(&mut cur).and_then(|doc| cur.finish().map(|()| doc)) {
        // A model error can show before the end of the document is read. A document that is
        // not well-formed is refused as such, wherever the first problem with its content
        // is (as with a DOM, built whole before the model was read): so read on first.
        Err(e) if !matches!(e, CpixError::Xml(_)) => {
            cur.finish()?;
            Err(e)
        }
        result => result,
    }
}

/// Deepest element nesting accepted. CPIX documents nest about 8 deep (12 with an XML
/// signature). The reader keeps a stack of open elements and recurses only along the CPIX
/// schema, so depth cannot overflow the stack; the bound keeps a hostile document from
/// making the reader's own stacks and scope lookups grow with its input.
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
/// parsing: the pre-scan that ran before the DOM parser keyplex used before, so that it only
/// saw documents it could handle at a bounded cost (its tokenizer recursed once per level, and
/// its duplicate-attribute check was quadratic). The streaming reader enforces the same
/// bounds as it reads, for no extra pass; the scan remains for the DOM reader kept as the
/// tests' oracle. It only needs to be right for well-formed XML: whatever it miscounts in
/// broken XML, the parser refuses afterwards (the counts only ever err on the side of
/// refusing).
#[cfg(test)]
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
#[cfg(test)]
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
// Walker helpers
//
// Each `read_*` function below is called right after the start tag of its element was read
// (its attributes are the cursor's until the next read) and reads that element's content.
// Attributes are taken first, into locals, and checked in the order keyplex always reported
// them: some after the element's children (a ContentKey's `kid`), as the DOM reader did.
// A function may stop reading early: the caller's `Children::next` skips what it left.

/// What a child element of a CPIX element is.
enum Child<'n> {
    /// In the CPIX namespace, with this local name.
    Cpix(&'n str),
    /// `ds:Signature`: dropped everywhere.
    Signature,
    /// Any other namespace (or none).
    Foreign,
}

fn classify(name: Name<'_>) -> Child<'_> {
    match name.ns {
        Ns::CPIX => Child::Cpix(name.local),
        Ns::DS if name.local == "Signature" => Child::Signature,
        _ => Child::Foreign,
    }
}

fn clark_name(cur: &Cursor<'_>, name: Name<'_>) -> String {
    match cur.uri(name.ns) {
        Some(ns) => format!("{{{ns}}}{}", name.local),
        None => name.local.to_owned(),
    }
}

fn unknown(cur: &Cursor<'_>, name: Name<'_>, parent: &'static str) -> CpixError {
    CpixError::UnknownElement {
        element: clark_name(cur, name),
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

/// The current element's own text (child elements skipped), whitespace-trimmed.
fn text(cur: &mut Cursor<'_>) -> Result<String, CpixError> {
    Ok(cur.text()?.trim().to_owned())
}

fn strip_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// Text of an `xs:base64Binary` element: whitespace removed, checked to decode.
fn base64_text(cur: &mut Cursor<'_>, element: &'static str) -> Result<String, CpixError> {
    let text = cur.text()?;
    let text = text.trim();
    // A request asks for a value with an empty element.
    if text.is_empty() {
        return Ok(String::new());
    }
    let value = strip_whitespace(text);
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
fn secret_bytes(cur: &mut Cursor<'_>, element: &'static str) -> Result<Vec<u8>, CpixError> {
    decode_secret(&cur.text()?, element)
}

fn decode_secret(text: &str, element: &'static str) -> Result<Vec<u8>, CpixError> {
    let text = text.trim();
    let decoded = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        B64.decode(strip_whitespace(text))
    } else {
        B64.decode(text)
    };
    decoded.map_err(|_| CpixError::InvalidSecret {
        element,
        reason: "not valid base64",
    })
}

fn attr(cur: &Cursor<'_>, name: &str) -> Option<String> {
    cur.attr(name).map(Cow::into_owned)
}

fn required_attr<'i>(
    cur: &Cursor<'i>,
    element: &'static str,
    attribute: &'static str,
) -> Result<Cow<'i, str>, CpixError> {
    cur.attr(attribute)
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

/// UUIDs this document has already spelt out, newest last. A document names each key many
/// times (its ContentKey, one DRMSystem per DRM system, its usage rules) and each DRM system
/// once per key, mostly in runs; comparing two strings costs a fraction of parsing a UUID
/// again. Key ids and system ids are remembered apart (see [`Uuids`]).
#[derive(Default)]
struct Recent<'i> {
    parsed: [Option<(&'i str, KeyId)>; 8],
    next: usize,
}

impl<'i> Recent<'i> {
    /// `KeyId::from_str`, remembered for the text as written in the document (a `Cow`: only
    /// text borrowed from the document lives long enough to be remembered).
    #[allow(clippy::ptr_arg)]
    fn parse(&mut self, text: &Cow<'i, str>) -> Option<KeyId> {
        let &Cow::Borrowed(text) = text else {
            return KeyId::from_str(text).ok();
        };
        // Newest first: the same id comes in runs.
        for back in 1..=self.parsed.len() {
            let at = self.next.wrapping_sub(back) % self.parsed.len();
            match self.parsed.get(at) {
                Some(Some((t, id))) if cursor::same(t, text) => return Some(*id),
                Some(Some(_)) => {}
                _ => break,
            }
        }
        let id = KeyId::from_str(text).ok()?;
        let at = self.next % self.parsed.len();
        if let Some(slot) = self.parsed.get_mut(at) {
            *slot = Some((text, id));
        }
        self.next = self.next.wrapping_add(1);
        Some(id)
    }
}

#[derive(Default)]
struct Uuids<'i> {
    kids: Recent<'i>,
    system_ids: Recent<'i>,
}

fn kid_value<'i>(
    uuids: &mut Uuids<'i>,
    value: Cow<'i, str>,
    element: &'static str,
    attribute: &'static str,
) -> Result<Kid, CpixError> {
    let id = uuids.kids.parse(&value).ok_or_else(|| {
        invalid(
            element,
            attribute,
            &value,
            "a UUID such as 01234567-89ab-cdef-0123-456789abcdef",
        )
    })?;
    Ok(Kid {
        id,
        as_written: value.into_owned(),
    })
}

fn required_kid<'i>(
    cur: &Cursor<'i>,
    uuids: &mut Uuids<'i>,
    element: &'static str,
) -> Result<Kid, CpixError> {
    kid_value(uuids, required_attr(cur, element, "kid")?, element, "kid")
}

fn u64_attr(
    cur: &Cursor<'_>,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<u64>, CpixError> {
    cur.attr(attribute)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| invalid(element, attribute, &v, "a non-negative integer"))
        })
        .transpose()
}

fn bool_attr(
    cur: &Cursor<'_>,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<bool>, CpixError> {
    cur.attr(attribute)
        .map(|v| match v.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(invalid(element, attribute, &v, "true or false")),
        })
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Document

fn read_root(cur: &mut Cursor<'_>) -> Result<CpixDocument, CpixError> {
    let root = cur.root()?;
    let mut uuids = Uuids::default();
    if !root.is(Ns::CPIX, "CPIX") {
        return Err(CpixError::NotCpix(format!(
            "root element is {}, expected {{{}}}CPIX",
            quoted(&clark_name(cur, root)),
            ns::CPIX
        )));
    }
    let mut doc = CpixDocument {
        version: cur.attr("version").map(|v| match v.trim() {
            "2.3" => CpixVersion::V2_3,
            "2.4" => CpixVersion::V2_4,
            other => CpixVersion::Other(other.to_owned()),
        }),
        id: attr(cur, "id"),
        content_id: attr(cur, "contentId"),
        name: attr(cur, "name"),
        ..CpixDocument::default()
    };
    const PARENT: &str = "CPIX";
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        match classify(child) {
            Child::Cpix("DeliveryDataList") => {
                let list = read_list(cur, "DeliveryDataList", "DeliveryData", read_delivery_data)?;
                set_once(&mut doc.delivery_data, list, "DeliveryDataList", PARENT)?;
            }
            Child::Cpix("ContentKeyList") => {
                let list = read_list(cur, "ContentKeyList", "ContentKey", |cur| {
                    read_content_key(cur, &mut uuids)
                })?;
                if let Some(key) = first_repeated_kid(&list) {
                    return Err(CpixError::DuplicateKid(quoted(&key.kid.as_written)));
                }
                set_once(&mut doc.content_keys, list, "ContentKeyList", PARENT)?;
            }
            Child::Cpix("DRMSystemList") => {
                let list = read_list(cur, "DRMSystemList", "DRMSystem", |cur| {
                    read_drm_system(cur, &mut uuids)
                })?;
                set_once(&mut doc.drm_systems, list, "DRMSystemList", PARENT)?;
            }
            Child::Cpix("ContentKeyPeriodList") => {
                let list = read_list(cur, "ContentKeyPeriodList", "ContentKeyPeriod", read_period)?;
                set_once(&mut doc.periods, list, "ContentKeyPeriodList", PARENT)?;
            }
            Child::Cpix("ContentKeyUsageRuleList") => {
                let list = read_list(
                    cur,
                    "ContentKeyUsageRuleList",
                    "ContentKeyUsageRule",
                    |cur| read_usage_rule(cur, &mut uuids),
                )?;
                set_once(
                    &mut doc.usage_rules,
                    list,
                    "ContentKeyUsageRuleList",
                    PARENT,
                )?;
            }
            Child::Cpix("UpdateHistoryItemList") => {
                let fragment = fragment_xml(cur, child)?;
                set_once(
                    &mut doc.update_history_xml,
                    fragment,
                    "UpdateHistoryItemList",
                    PARENT,
                )?;
            }
            Child::Cpix(_) => return Err(unknown(cur, child, PARENT)),
            Child::Signature | Child::Foreign => {}
        }
    }
    Ok(doc)
}

/// The first content key, in document order, whose kid an earlier one has.
fn first_repeated_kid(list: &[ContentKeyEntry]) -> Option<&ContentKeyEntry> {
    // A request carries a handful of keys: comparing each with those before it costs less
    // than building a set. Longer lists (up to MAX_CONTENT_KEYS) use one, so that the work
    // stays linear.
    const SCAN_UP_TO: usize = 16;
    if list.len() <= SCAN_UP_TO {
        return list.iter().enumerate().find_map(|(i, key)| {
            let earlier = list.get(..i).unwrap_or_default();
            earlier
                .iter()
                .any(|e| e.kid.id == key.kid.id)
                .then_some(key)
        });
    }
    let mut seen = HashSet::with_capacity(list.len());
    list.iter().find(|key| !seen.insert(key.kid.id))
}

/// Reads every `item` child of a `…List` element (which may also carry signatures).
fn read_list<'i, T>(
    cur: &mut Cursor<'i>,
    parent: &'static str,
    item: &'static str,
    mut read_item: impl FnMut(&mut Cursor<'i>) -> Result<T, CpixError>,
) -> Result<Vec<T>, CpixError> {
    let limit = if item == "ContentKey" {
        MAX_CONTENT_KEYS
    } else {
        MAX_LIST_ENTRIES
    };
    let mut out = Vec::new();
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        match classify(child) {
            Child::Cpix(name) if name == item => {
                if out.len() == limit {
                    return Err(CpixError::TooManyElements {
                        element: item,
                        parent,
                        limit,
                    });
                }
                out.push(read_item(cur)?);
            }
            Child::Cpix(_) => return Err(unknown(cur, child, parent)),
            Child::Signature | Child::Foreign => {}
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// DeliveryData

fn read_delivery_data(cur: &mut Cursor<'_>) -> Result<DeliveryData, CpixError> {
    const PARENT: &str = "DeliveryData";
    let id = attr(cur, "id");
    let mut certificate_der = None;
    let mut document_key_cipher = None;
    let mut mac_key_cipher = None;
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        match classify(child) {
            Child::Cpix("DeliveryKey") => {
                let der = read_delivery_key(cur)?;
                set_once(&mut certificate_der, der, "DeliveryKey", PARENT)?;
            }
            Child::Cpix("DocumentKey") => {
                check_algorithm(
                    cur.attr("Algorithm").as_deref(),
                    "DocumentKey",
                    ns::ALG_AES256_CBC,
                    "xmlenc#aes256-cbc",
                )?;
                let cipher = read_document_key(cur)?;
                set_once(&mut document_key_cipher, cipher, "DocumentKey", PARENT)?;
            }
            Child::Cpix("MACMethod") => {
                let algorithm = cur.attr("Algorithm");
                if algorithm.is_none() {
                    return Err(CpixError::MissingAttribute {
                        element: "MACMethod",
                        attribute: "Algorithm",
                    });
                }
                check_algorithm(
                    algorithm.as_deref(),
                    "MACMethod",
                    ns::ALG_HMAC_SHA512,
                    "xmldsig-more#hmac-sha512",
                )?;
                let cipher = read_mac_method(cur)?;
                set_once(&mut mac_key_cipher, cipher, "MACMethod", PARENT)?;
            }
            Child::Cpix(
                "Description" | "SendingEntity" | "SenderPointOfContact" | "ReceivingEntity",
            ) => {}
            Child::Cpix(_) => return Err(unknown(cur, child, PARENT)),
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
        id,
        certificate_der,
        wrapped,
    })
}

fn check_algorithm(
    value: Option<&str>,
    element: &'static str,
    uri: &str,
    expected: &'static str,
) -> Result<(), CpixError> {
    match value {
        Some(value) if value.trim() != uri => Err(CpixError::UnsupportedAlgorithm {
            element,
            value: quoted(value),
            expected,
        }),
        _ => Ok(()),
    }
}

/// `DeliveryKey` (ds:KeyInfoType): the first `ds:X509Data/ds:X509Certificate`.
fn read_delivery_key(cur: &mut Cursor<'_>) -> Result<Vec<u8>, CpixError> {
    let mut certificate = None;
    let mut children = cur.children();
    'find: while let Some(child) = children.next(cur)? {
        if child.is(Ns::DS, "X509Data") {
            let mut data = cur.children();
            while let Some(inner) = data.next(cur)? {
                if inner.is(Ns::DS, "X509Certificate") {
                    certificate = Some(cur.text()?);
                    break 'find;
                }
            }
        }
    }
    let certificate = certificate.ok_or(CpixError::MissingElement {
        element: "ds:X509Data/ds:X509Certificate",
        parent: "DeliveryKey",
    })?;
    let value = strip_whitespace(certificate.trim());
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
fn read_document_key(cur: &mut Cursor<'_>) -> Result<Vec<u8>, CpixError> {
    let mut children = cur.children();
    while let Some(data) = children.next(cur)? {
        if !data.is(Ns::CPIX, "Data") {
            continue;
        }
        let mut data_children = cur.children();
        while let Some(secret) = data_children.next(cur)? {
            if !secret.is(Ns::PSKC, "Secret") {
                continue;
            }
            let mut secret_children = cur.children();
            while let Some(encrypted) = secret_children.next(cur)? {
                if encrypted.is(Ns::PSKC, "EncryptedValue") {
                    return read_rsa_wrapped(cur, "DocumentKey");
                }
            }
        }
    }
    Err(CpixError::MissingElement {
        element: "Data/pskc:Secret/pskc:EncryptedValue",
        parent: "DocumentKey",
    })
}

/// `MACMethod`: the wrapped MAC key as written by DASH-IF/Axinom (`cpix:Key` holding
/// `enc:EncryptionMethod` + `enc:CipherData`), by AWS SPEKE (`cpix:Key/pskc:EncryptedValue`)
/// or per RFC 6030 (`pskc:MACKey`).
fn read_mac_method(cur: &mut Cursor<'_>) -> Result<Vec<u8>, CpixError> {
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        if child.is(Ns::CPIX, "Key") {
            // Which shape it is shows only once the whole `Key` has been read.
            let (own, nested) = collect_encrypted(cur, true)?;
            return nested.unwrap_or(own).decode(
                "MACMethod/Key",
                ns::ALG_RSA_OAEP_MGF1P,
                "xmlenc#rsa-oaep-mgf1p",
            );
        }
        if child.is(Ns::PSKC, "MACKey") {
            return read_rsa_wrapped(cur, "MACMethod/pskc:MACKey");
        }
    }
    Err(CpixError::MissingElement {
        element: "Key",
        parent: "MACMethod",
    })
}

/// An xenc `EncryptedDataType`-shaped element wrapping a key with RSA-OAEP.
fn read_rsa_wrapped(cur: &mut Cursor<'_>, element: &'static str) -> Result<Vec<u8>, CpixError> {
    read_encrypted(
        cur,
        element,
        ns::ALG_RSA_OAEP_MGF1P,
        "xmlenc#rsa-oaep-mgf1p",
    )
}

/// `enc:EncryptionMethod@Algorithm` (checked when present) and `enc:CipherData/enc:CipherValue`.
fn read_encrypted(
    cur: &mut Cursor<'_>,
    element: &'static str,
    algorithm: &str,
    expected: &'static str,
) -> Result<Vec<u8>, CpixError> {
    collect_encrypted(cur, false)?
        .0
        .decode(element, algorithm, expected)
}

/// The parts of an xenc `EncryptedDataType`-shaped element, as read: checked by
/// [`Encrypted::decode`] once the element has been read whole, so that an algorithm written
/// after the cipher value is still checked first.
#[derive(Default)]
struct Encrypted<'i> {
    /// The first `enc:EncryptionMethod`'s `Algorithm`, when there is such a child.
    method: Option<Option<Cow<'i, str>>>,
    /// The first `enc:CipherData/enc:CipherValue`'s text.
    cipher_value: Option<Cow<'i, str>>,
}

impl Encrypted<'_> {
    fn decode(
        self,
        element: &'static str,
        algorithm: &str,
        expected: &'static str,
    ) -> Result<Vec<u8>, CpixError> {
        if let Some(method) = self.method {
            check_algorithm(method.as_deref(), element, algorithm, expected)?;
        }
        let value = self.cipher_value.ok_or(CpixError::MissingElement {
            element: "enc:CipherData/enc:CipherValue",
            parent: element,
        })?;
        let bytes = decode_secret(&value, "CipherValue")?;
        if bytes.is_empty() {
            return Err(CpixError::InvalidSecret {
                element: "CipherValue",
                reason: "empty",
            });
        }
        Ok(bytes)
    }
}

/// Reads the current element as an [`Encrypted`]; with `nested`, also its first
/// `pskc:EncryptedValue` child (SPEKE's `MACMethod/Key`).
fn collect_encrypted<'i>(
    cur: &mut Cursor<'i>,
    nested: bool,
) -> Result<(Encrypted<'i>, Option<Encrypted<'i>>), CpixError> {
    let mut own = Encrypted::default();
    let mut inner = None;
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        if child.is(Ns::ENC, "EncryptionMethod") {
            if own.method.is_none() {
                own.method = Some(cur.attr("Algorithm"));
            }
        } else if child.is(Ns::ENC, "CipherData") {
            if own.cipher_value.is_none() {
                let mut data = cur.children();
                while let Some(value) = data.next(cur)? {
                    if value.is(Ns::ENC, "CipherValue") {
                        own.cipher_value = Some(cur.text()?);
                        break;
                    }
                }
            }
        } else if nested && inner.is_none() && child.is(Ns::PSKC, "EncryptedValue") {
            inner = Some(collect_encrypted(cur, false)?.0);
        }
    }
    Ok((own, inner))
}

// ---------------------------------------------------------------------------------------------
// ContentKey

fn read_content_key<'i>(
    cur: &mut Cursor<'i>,
    uuids: &mut Uuids<'i>,
) -> Result<ContentKeyEntry, CpixError> {
    const E: &str = "ContentKey";
    let id = attr(cur, "id");
    let kid = cur.attr("kid");
    let content_id = attr(cur, "contentId");
    let explicit_iv = cur
        .attr("explicitIV")
        .map(|v| {
            B64.decode(strip_whitespace(&v))
                .ok()
                .and_then(|bytes| Iv::from_slice(&bytes).ok())
                .ok_or_else(|| {
                    invalid(
                        E,
                        "explicitIV",
                        &v,
                        "must be base64 of exactly 16 bytes (CPIX 2.3.1)",
                    )
                })
        })
        .transpose()?;
    let common_encryption_scheme = cur
        .attr("commonEncryptionScheme")
        .map(|v| {
            EncryptionScheme::from_str(&v).map_err(|_| {
                invalid(
                    E,
                    "commonEncryptionScheme",
                    &v,
                    "one of cenc, cbcs, cens, cbc1",
                )
            })
        })
        .transpose()?;
    let depends_on_key = cur
        .attr("dependsOnKey")
        .map(|v| kid_value(uuids, v, E, "dependsOnKey"))
        .transpose()?;
    let mut value = None;
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        match classify(child) {
            Child::Cpix("Data") => {
                if let Some(data) = read_key_data(cur)? {
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
            Child::Cpix(_) => return Err(unknown(cur, child, E)),
            Child::Signature | Child::Foreign => {}
        }
    }
    let kid = kid.ok_or(CpixError::MissingAttribute {
        element: E,
        attribute: "kid",
    })?;
    Ok(ContentKeyEntry {
        id,
        kid: kid_value(uuids, kid, E, "kid")?,
        explicit_iv,
        common_encryption_scheme,
        content_id,
        depends_on_key,
        value,
    })
}

/// `Data` (pskc:KeyDataType): the first `pskc:Secret`, if any value is present.
fn read_key_data(cur: &mut Cursor<'_>) -> Result<Option<KeyValue>, CpixError> {
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        if child.is(Ns::PSKC, "Secret") {
            return read_secret(cur);
        }
    }
    Ok(None)
}

fn read_secret(cur: &mut Cursor<'_>) -> Result<Option<KeyValue>, CpixError> {
    let mut plain = None;
    let mut encrypted = None;
    let mut mac = None;
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        if child.is(Ns::PSKC, "PlainValue") {
            let bytes = secret_bytes(cur, "PlainValue")?;
            let key =
                ContentKeyValue::from_slice(&bytes).map_err(|_| CpixError::InvalidSecret {
                    element: "PlainValue",
                    reason: "must be base64 of exactly 16 bytes",
                })?;
            set_once(&mut plain, key, "PlainValue", "pskc:Secret")?;
        } else if child.is(Ns::PSKC, "EncryptedValue") {
            let cipher = read_encrypted(
                cur,
                "pskc:EncryptedValue",
                ns::ALG_AES256_CBC,
                "xmlenc#aes256-cbc",
            )?;
            set_once(&mut encrypted, cipher, "EncryptedValue", "pskc:Secret")?;
        } else if child.is(Ns::PSKC, "ValueMAC") {
            let bytes = secret_bytes(cur, "ValueMAC")?;
            set_once(&mut mac, bytes, "ValueMAC", "pskc:Secret")?;
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

fn read_drm_system<'i>(
    cur: &mut Cursor<'i>,
    uuids: &mut Uuids<'i>,
) -> Result<DrmSystemEntry, CpixError> {
    const E: &str = "DRMSystem";
    let system_id_text = required_attr(cur, E, "systemId")?;
    let system_id = uuids.system_ids.parse(&system_id_text).ok_or_else(|| {
        invalid(
            E,
            "systemId",
            &system_id_text,
            "a UUID such as edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
        )
    })?;
    let mut entry = DrmSystemEntry {
        id: attr(cur, "id"),
        system_id: SystemIdAttr {
            uuid: *system_id.as_bytes(),
            as_written: system_id_text.into_owned(),
        },
        kid: required_kid(cur, uuids, E)?,
        name: attr(cur, "name"),
        pssh: None,
        content_protection_data: None,
        uri_ext_x_key: None,
        hls_signaling: Vec::new(),
        smooth_streaming: None,
        hds_signaling: None,
        extensions: Vec::new(),
    };
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        match classify(child) {
            Child::Cpix("PSSH") => {
                let value = base64_text(cur, "PSSH")?;
                set_once(&mut entry.pssh, value, "PSSH", E)?;
            }
            Child::Cpix("ContentProtectionData") => {
                let value = base64_text(cur, "ContentProtectionData")?;
                set_once(
                    &mut entry.content_protection_data,
                    value,
                    "ContentProtectionData",
                    E,
                )?;
            }
            Child::Cpix("URIExtXKey") => {
                let value = base64_text(cur, "URIExtXKey")?;
                set_once(&mut entry.uri_ext_x_key, value, "URIExtXKey", E)?;
            }
            Child::Cpix("HLSSignalingData") => {
                let playlist = cur
                    .attr("playlist")
                    .map(|v| match v.trim() {
                        "media" => Ok(Playlist::Media),
                        "master" => Ok(Playlist::Master),
                        "multiVariant" => Ok(Playlist::MultiVariant),
                        _ => Err(invalid(
                            "HLSSignalingData",
                            "playlist",
                            &v,
                            "media, master or multiVariant",
                        )),
                    })
                    .transpose()?;
                entry.hls_signaling.push(HlsSignaling {
                    playlist,
                    value: base64_text(cur, "HLSSignalingData")?,
                });
            }
            Child::Cpix("SmoothStreamingProtectionHeaderData") => {
                let value = text(cur)?;
                set_once(
                    &mut entry.smooth_streaming,
                    value,
                    "SmoothStreamingProtectionHeaderData",
                    E,
                )?;
            }
            Child::Cpix("HDSSignalingData") => {
                let value = base64_text(cur, "HDSSignalingData")?;
                set_once(&mut entry.hds_signaling, value, "HDSSignalingData", E)?;
            }
            Child::Cpix(_) => return Err(unknown(cur, child, E)),
            Child::Signature => {}
            Child::Foreign => entry.extensions.push(ExtensionElement {
                namespace: cur.uri(child.ns).unwrap_or_default().to_owned(),
                local_name: child.local.to_owned(),
                prefix: match child.ns {
                    Ns::NONE => None,
                    ns => cur.lookup_prefix(ns).map(str::to_owned),
                },
                text: text(cur)?,
            }),
        }
    }
    Ok(entry)
}

// ---------------------------------------------------------------------------------------------
// ContentKeyPeriod and usage rules

fn read_period(cur: &mut Cursor<'_>) -> Result<ContentKeyPeriod, CpixError> {
    Ok(ContentKeyPeriod {
        id: attr(cur, "id"),
        index: u64_attr(cur, "ContentKeyPeriod", "index")?,
        start: attr(cur, "start"),
        end: attr(cur, "end"),
        label: attr(cur, "label"),
        start_offset: attr(cur, "startOffset"),
        end_offset: attr(cur, "endOffset"),
        duration: attr(cur, "duration"),
    })
}

fn read_usage_rule<'i>(
    cur: &mut Cursor<'i>,
    uuids: &mut Uuids<'i>,
) -> Result<UsageRule, CpixError> {
    let mut rule = UsageRule {
        id: attr(cur, "id"),
        kid: required_kid(cur, uuids, "ContentKeyUsageRule")?,
        intended_track_type: attr(cur, "intendedTrackType"),
        key_period_filters: Vec::new(),
        label_filters: Vec::new(),
        video_filters: Vec::new(),
        audio_filters: Vec::new(),
        bitrate_filters: Vec::new(),
        unknown_children: Vec::new(),
    };
    let mut children = cur.children();
    while let Some(child) = children.next(cur)? {
        match classify(child) {
            Child::Cpix("KeyPeriodFilter") => rule.key_period_filters.push(KeyPeriodFilter {
                period_id: required_attr(cur, "KeyPeriodFilter", "periodId")?.into_owned(),
            }),
            Child::Cpix("LabelFilter") => rule.label_filters.push(LabelFilter {
                label: required_attr(cur, "LabelFilter", "label")?.into_owned(),
            }),
            Child::Cpix("VideoFilter") => {
                const E: &str = "VideoFilter";
                rule.video_filters.push(VideoFilter {
                    min_pixels: u64_attr(cur, E, "minPixels")?,
                    max_pixels: u64_attr(cur, E, "maxPixels")?,
                    hdr: bool_attr(cur, E, "hdr")?,
                    wcg: bool_attr(cur, E, "wcg")?,
                    min_fps: attr(cur, "minFps"),
                    max_fps: attr(cur, "maxFps"),
                });
            }
            Child::Cpix("AudioFilter") => rule.audio_filters.push(AudioFilter {
                min_channels: u64_attr(cur, "AudioFilter", "minChannels")?,
                max_channels: u64_attr(cur, "AudioFilter", "maxChannels")?,
            }),
            Child::Cpix("BitrateFilter") => rule.bitrate_filters.push(BitrateFilter {
                min_bitrate: u64_attr(cur, "BitrateFilter", "minBitrate")?,
                max_bitrate: u64_attr(cur, "BitrateFilter", "maxBitrate")?,
            }),
            // A filter from a later CPIX version or a foreign extension: the rule becomes
            // unusable (CPIX "Usage Rules Filters"), which is for the caller to decide.
            Child::Cpix(_) | Child::Foreign => {
                let fragment = fragment_xml(cur, child)?;
                rule.unknown_children.push(fragment);
            }
            Child::Signature => {}
        }
    }
    Ok(rule)
}

// ---------------------------------------------------------------------------------------------
// Self-contained fragments

/// Serialises the element just started and its subtree as XML that declares every namespace
/// it uses on its root, so it can be pasted anywhere. Comments and processing instructions
/// are dropped.
///
/// Each namespace gets the prefix the document used for it where that prefix is free, else
/// `ns0`, `ns1`…, in the order the names using them appear; the declarations go on the root
/// element, so they are inserted there once the whole subtree has been read.
fn fragment_xml(cur: &mut Cursor<'_>, root: Name<'_>) -> Result<String, CpixError> {
    let mut fragment = Fragment::default();
    let mut out = String::new();
    fragment.start_tag(cur, root, &mut out);
    let declarations_at = 1 + fragment.qualified(root).len();
    // Open elements: the name and whether anything was written inside yet (`/>` if not).
    let mut open = vec![(root, false)];
    while let Some((name, has_content)) = open.last_mut() {
        let name = *name;
        match cur.event()? {
            Ev::Start(child) => {
                if !std::mem::replace(has_content, true) {
                    out.push('>');
                }
                fragment.start_tag(cur, child, &mut out);
                open.push((child, false));
            }
            Ev::Text(piece) => {
                if !std::mem::replace(has_content, true) {
                    out.push('>');
                }
                let mut text = Cow::Borrowed("");
                cursor::push_piece(&mut text, piece);
                out.push_str(&quick_xml::escape::escape(text.as_ref()));
            }
            Ev::End => {
                if *has_content {
                    out.push_str("</");
                    out.push_str(&fragment.qualified(name));
                    out.push('>');
                } else {
                    out.push_str("/>");
                }
                open.pop();
            }
            // The cursor refuses a document that ends inside an element.
            Ev::Eof => break,
        }
    }
    let mut declarations = String::new();
    for (ns, prefix) in &fragment.prefixes {
        declarations.push_str(&format!(
            " xmlns:{prefix}=\"{}\"",
            quick_xml::escape::escape(cur.uri(*ns).unwrap_or_default())
        ));
    }
    if out.is_char_boundary(declarations_at) {
        out.insert_str(declarations_at, &declarations);
    }
    Ok(out)
}

/// The prefixes a fragment gives its namespaces, in the order they were first used.
#[derive(Default)]
struct Fragment {
    prefixes: Vec<(Ns, String)>,
}

impl Fragment {
    /// Writes `<name attributes` (without the closing `>`), giving prefixes to the namespaces
    /// the element and its attributes use for the first time.
    fn start_tag(&mut self, cur: &Cursor<'_>, name: Name<'_>, out: &mut String) {
        self.assign(name.ns, cur.lookup_prefix(name.ns));
        for a in cur.attrs() {
            self.assign(a.ns, cur.lookup_prefix(a.ns));
        }
        out.push('<');
        out.push_str(&self.qualified(name));
        for a in cur.attrs() {
            out.push(' ');
            out.push_str(&self.qualified(Name {
                ns: a.ns,
                local: a.local,
            }));
            out.push_str("=\"");
            out.push_str(&quick_xml::escape::escape(a.value.as_ref()));
            out.push('"');
        }
    }

    /// Gives `ns` a prefix: `hint` (the document's) if it is free, else the first free
    /// `ns{i}`. No namespace and the `xml` namespace need none.
    fn assign(&mut self, ns: Ns, hint: Option<&str>) {
        if ns == Ns::NONE || ns == Ns::XML || self.prefixes.iter().any(|(n, _)| *n == ns) {
            return;
        }
        let taken = |p: &str| self.prefixes.iter().any(|(_, v)| v == p);
        let prefix =
            match hint.filter(|h| !h.is_empty() && *h != "xmlns" && *h != "xml" && !taken(h)) {
                Some(h) => h.to_owned(),
                None => (0..)
                    .map(|i| format!("ns{i}"))
                    .find(|p| !taken(p))
                    .unwrap_or_default(),
            };
        self.prefixes.push((ns, prefix));
    }

    fn qualified(&self, name: Name<'_>) -> String {
        match name.ns {
            Ns::NONE => name.local.to_owned(),
            Ns::XML => format!("xml:{}", name.local),
            ns => match self.prefixes.iter().find(|(n, _)| *n == ns) {
                Some((_, p)) => format!("{p}:{}", name.local),
                None => name.local.to_owned(),
            },
        }
    }
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
    fn the_first_repeated_kid_is_named_in_short_and_long_lists() {
        let kid = |i: usize| format!("{i:08x}-0000-4000-8000-000000000000");
        // Lengths each side of the one where the scan gives way to a set.
        for n in [2, 3, 16, 17, 40] {
            let pairs = [(0, 1), (0, n - 1), (n / 2, n - 1), (n - 2, n - 1)];
            for (first, second) in pairs.into_iter().filter(|(a, b)| a < b) {
                // A third copy after the first repeat: the second is the one named.
                let keys: String = (0..n)
                    .map(|i| {
                        let written = match i {
                            _ if i == second => kid(first).to_uppercase(),
                            _ if i == n - 1 && second < n - 1 => kid(first),
                            _ => kid(i),
                        };
                        format!(r#"<ContentKey kid="{written}"/>"#)
                    })
                    .collect();
                assert_eq!(
                    err(&with_keys(&keys)),
                    CpixError::DuplicateKid(kid(first).to_uppercase()),
                    "{n} keys, {first} repeated at {second}"
                );
            }
            let distinct: String = (0..n)
                .map(|i| format!(r#"<ContentKey kid="{}"/>"#, kid(i)))
                .collect();
            assert!(read_document(with_keys(&distinct).as_bytes()).is_ok());
        }
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
