//! [`CpixDocument`] → XML.
//!
//! The output follows the element order of the official schema of the version the document
//! claims, so a response validates against `cpix.xsd` 2.3 (documents claiming 2.3, no version,
//! or an unknown version) or 2.4 (documents claiming 2.4). Where the two schemas differ, the
//! writer adapts the model to the claimed version:
//!
//! | model item | 2.3 output | 2.4 output |
//! |---|---|---|
//! | `URIExtXKey`, `HDSSignalingData` | written | dropped (removed in 2.4) |
//! | `ContentKey@contentId`, `ContentKeyPeriod@label/startOffset/endOffset/duration` | dropped (2.4 only) | written |
//! | `HLSSignalingData@playlist` master / multiVariant | `master` | `multiVariant` |
//! | `DocumentKey@Algorithm` | written | dropped (not in the 2.4 `DocumentKeyType`) |
//! | an empty list (`Some(vec![])`) | written empty | omitted (2.4 lists need ≥ 1 child) |
//!
//! A `kid`/`systemId` is echoed as written when that spelling is the schema's 8-4-4-4-12 form,
//! otherwise written canonically. A `DeliveryData` without `wrapped` keys (request shape) has
//! no `DocumentKey` and so is not schema-valid; responses always carry them.
//!
//! The output is written straight into one `String`, pre-sized from the lengths of the
//! document's texts (`estimate_len`): no per-element allocation. Attribute values and texts
//! are escaped only when they hold a character that needs it; the escaping is quick-xml's, as
//! the writer used before (`writer/oracle.rs`, the test oracle it is checked against byte for
//! byte): an attribute value escapes `<`, `>`, `&`, `"` and `'`; a text is copied as is unless
//! it holds `<`, `>` or `&`, and is then escaped the same way (quotes included).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::model::{
    ContentKeyEntry, ContentKeyPeriod, CpixDocument, CpixVersion, DeliveryData, DrmSystemEntry,
    KeyValue, Kid, Playlist, UsageRule,
};
use crate::ns;

#[cfg(test)]
mod oracle;

/// Prefixes the writer declares on the root; extension namespaces may not reuse them.
const RESERVED_PREFIXES: [&str; 6] = ["cpix", "pskc", "enc", "ds", "xml", "xmlns"];

/// Writes `doc` as a UTF-8 CPIX document (with XML declaration, two-space indentation).
pub fn write_document(doc: &CpixDocument) -> String {
    let mut out = DocWriter {
        xml: String::with_capacity(estimate_len(doc)),
        depth: 0,
        v24: doc.version == Some(CpixVersion::V2_4),
        extension_prefixes: extension_prefixes(doc),
    };
    out.document(doc);
    out.xml
}

/// An upper bound of the output length for documents whose texts need no escaping (so one
/// allocation holds the whole document): the texts and base64 lengths, plus a generous
/// allowance for each element's tags, indentation and fixed attributes.
fn estimate_len(doc: &CpixDocument) -> usize {
    fn b64(bytes: &[u8]) -> usize {
        bytes.len().div_ceil(3) * 4
    }
    fn text(s: &Option<String>) -> usize {
        s.as_ref().map_or(0, |s| s.len() + 80)
    }
    fn sum<T>(items: &[T], len: impl Fn(&T) -> usize) -> usize {
        items.iter().map(len).sum()
    }
    // Declaration, root with its four namespaces, five list wrappers, the closing tag.
    let mut n = 768 + text(&doc.id) + text(&doc.content_id) + text(&doc.name);
    n += text(&doc.update_history_xml);
    for d in doc.delivery_data.iter().flatten() {
        n += 1280 + text(&d.id) + b64(&d.certificate_der);
        if let Some(w) = &d.wrapped {
            n += b64(&w.document_key_cipher) + b64(&w.mac_key_cipher);
        }
    }
    for k in doc.content_keys.iter().flatten() {
        n += 320 + text(&k.id) + text(&k.content_id);
        if let Some(KeyValue::Encrypted {
            cipher_value,
            value_mac,
        }) = &k.value
        {
            n += 384 + b64(cipher_value) + b64(value_mac);
        }
    }
    for d in doc.drm_systems.iter().flatten() {
        n += 192 + text(&d.id) + text(&d.name);
        n += text(&d.pssh) + text(&d.content_protection_data) + text(&d.uri_ext_x_key);
        n += text(&d.smooth_streaming) + text(&d.hds_signaling);
        n += sum(&d.hls_signaling, |h| h.value.len() + 96);
        n += sum(&d.extensions, |e| {
            e.text.len() + 2 * e.local_name.len() + 64
        });
    }
    for p in doc.periods.iter().flatten() {
        n += 320 + text(&p.id) + text(&p.start) + text(&p.end) + text(&p.label);
        n += text(&p.start_offset) + text(&p.end_offset) + text(&p.duration);
    }
    for r in doc.usage_rules.iter().flatten() {
        n += 192 + text(&r.id) + text(&r.intended_track_type);
        n += sum(&r.key_period_filters, |f| f.period_id.len() + 64);
        n += sum(&r.label_filters, |f| f.label.len() + 64);
        n += 192 * (r.video_filters.len() + r.audio_filters.len() + r.bitrate_filters.len());
        n += sum(&r.unknown_children, |c| c.len() + 16);
    }
    n
}

/// Assigns one prefix per extension namespace: `speke` for SPEKE, else the prefix the
/// document used when it is a free NCName, else `ext1`, `ext2`, …
fn extension_prefixes(doc: &CpixDocument) -> BTreeMap<&str, String> {
    let mut prefixes: BTreeMap<&str, String> = BTreeMap::new();
    let extensions = doc.drm_systems.iter().flatten().flat_map(|d| &d.extensions);
    for ext in extensions.filter(|e| !e.namespace.is_empty()) {
        if prefixes.contains_key(ext.namespace.as_str()) {
            continue;
        }
        let taken = |p: &str| RESERVED_PREFIXES.contains(&p) || prefixes.values().any(|v| v == p);
        let wanted = if ext.namespace == ns::SPEKE {
            Some("speke")
        } else {
            ext.prefix.as_deref()
        };
        let prefix = match wanted.filter(|p| is_ncname(p) && !taken(p)) {
            Some(p) => p.to_owned(),
            None => (1..)
                .map(|i| format!("ext{i}"))
                .find(|p| !taken(p))
                .unwrap_or_default(),
        };
        prefixes.insert(&ext.namespace, prefix);
    }
    prefixes
}

fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The eight lower-case hex digits of `x`, the first in the lowest byte (their order in
/// memory, read as a little-endian integer).
fn hex8(x: u32) -> u64 {
    // One nibble per byte, the first in the highest byte; then in memory order.
    let mut v = u64::from(x);
    v = (v | (v << 16)) & 0x0000_FFFF_0000_FFFF;
    v = (v | (v << 8)) & 0x00FF_00FF_00FF_00FF;
    v = (v | (v << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    v = v.swap_bytes();
    // 1 in each byte whose nibble is 10 or more: those become 'a'..'f' ('0' + 10 + 0x27).
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    v + 0x3030_3030_3030_3030 + letters * 0x27
}

/// The four lower-case hex digits of `x`, in memory order.
fn hex4(x: u16) -> u64 {
    hex8(u32::from(x)) >> 32
}

/// The canonical digits of `uuid` by group of its 8-4-4-4-12 spelling (the twelve in two):
/// where the group starts, its length, its digits as [`hex8`] gives them.
#[inline(always)]
fn uuid_groups(uuid: &[u8; 16]) -> [(usize, usize, u64); 6] {
    let v = u128::from_be_bytes(*uuid);
    [
        (0, 8, hex8((v >> 96) as u32)),
        (9, 4, hex4((v >> 80) as u16)),
        (14, 4, hex4((v >> 64) as u16)),
        (19, 4, hex4((v >> 48) as u16)),
        (24, 8, hex8((v >> 16) as u32)),
        (32, 4, hex4(v as u16)),
    ]
}

/// True when `s` is the schema's `UUIDType` / `KeyIdType` spelling (8-4-4-4-12 hex digits, any
/// case) of `uuid`. Compares whole groups of digits with the canonical ones: a byte-wise loop
/// branching on digits and letters cost more than the rest of a `DRMSystem`.
fn spells_uuid(s: &str, uuid: &[u8; 16]) -> bool {
    let Ok(s) = <&[u8; 36]>::try_from(s.as_bytes()) else {
        return false;
    };
    let written = |at: usize, len: usize| {
        let mut word = [0; 8];
        match (word.get_mut(..len), s.get(at..at + len)) {
            (Some(to), Some(from)) => to.copy_from_slice(from),
            _ => return 0,
        }
        u64::from_le_bytes(word)
    };
    // A digit must be the canonical one; a letter (bit 0x40 set) may also be upper case
    // (0x20 less).
    let same = |written: u64, canonical: u64| {
        let case = (canonical & 0x4040_4040_4040_4040) >> 1;
        (written ^ canonical) & !case == 0
    };
    [8, 13, 18, 23].iter().all(|&i| s.get(i) == Some(&b'-'))
        && (uuid_groups(uuid).iter()).all(|&(at, len, digits)| same(written(at, len), digits))
}

/// Appends `uuid` in lower-case 8-4-4-4-12, as `KeyId`'s `Display` writes it.
fn push_uuid(out: &mut String, uuid: &[u8; 16]) {
    let mut text = [b'-'; 36];
    for (at, len, digits) in uuid_groups(uuid) {
        let digits = digits.to_le_bytes();
        if let (Some(to), Some(from)) = (text.get_mut(at..at + len), digits.get(..len)) {
            to.copy_from_slice(from);
        }
    }
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Appends `s` with `<`, `>`, `&`, `"` and `'` escaped, as `quick_xml::escape::escape` does.
fn push_escaped(out: &mut String, s: &str) {
    let mut copied = 0;
    for (i, c) in s.match_indices(['<', '>', '&', '"', '\'']) {
        out.push_str(s.get(copied..i).unwrap_or_default());
        out.push_str(match c {
            "<" => "&lt;",
            ">" => "&gt;",
            "&" => "&amp;",
            "\"" => "&quot;",
            _ => "&apos;",
        });
        copied = i + c.len();
    }
    out.push_str(s.get(copied..).unwrap_or_default());
}

/// An attribute value: escaped when it holds a character that needs it.
fn push_attr_value(out: &mut String, value: &str) {
    if value
        .bytes()
        .any(|b| matches!(b, b'<' | b'>' | b'&' | b'"' | b'\''))
    {
        push_escaped(out, value);
    } else {
        out.push_str(value);
    }
}

/// Text content. Most texts are base64 (PSSH, signaling data), which never needs escaping:
/// one SIMD search, then a copy. A text holding `<`, `>` or `&` is escaped as an attribute
/// value is (the quotes too), as quick-xml's `BytesText::new` did.
fn push_text(out: &mut String, text: &str) {
    if memchr::memchr3(b'<', b'>', b'&', text.as_bytes()).is_none() {
        out.push_str(text);
    } else {
        push_escaped(out, text);
    }
}

/// A newline and the indentation of up to 32 levels.
const NEWLINE_INDENT: &str = "\n                                                                ";

struct DocWriter<'a> {
    xml: String,
    /// Nesting level of the next tag: each level indents by two spaces.
    depth: usize,
    v24: bool,
    extension_prefixes: BTreeMap<&'a str, String>,
}

// The per-tag helpers are inlined: with the element name a constant, their short copies
// become moves instead of calls to `memcpy` (~7 % fewer instructions for a SPEKE answer).
impl DocWriter<'_> {
    /// Every tag starts on a new line, except an end tag right after its text.
    #[inline(always)]
    fn newline(&mut self) {
        let indent = 2 * self.depth;
        match NEWLINE_INDENT.get(..1 + indent) {
            Some(newline_indent) => self.xml.push_str(newline_indent),
            None => {
                self.xml.push('\n');
                self.xml.extend(std::iter::repeat_n(' ', indent));
            }
        }
    }

    /// `<name` on a new line; attributes follow, then [`Self::open_end`],
    /// [`Self::empty_end`] or [`Self::text_end`].
    #[inline(always)]
    fn open(&mut self, name: &str) {
        self.newline();
        self.xml.push('<');
        self.xml.push_str(name);
    }

    /// ` name="value"`, the value escaped as needed.
    #[inline(always)]
    fn attr(&mut self, name: &str, value: &str) {
        self.xml.push(' ');
        self.xml.push_str(name);
        self.xml.push_str("=\"");
        push_attr_value(&mut self.xml, value);
        self.xml.push('"');
    }

    /// ` name="value"` when the value is present.
    fn opt_attr(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.attr(name, v);
        }
    }

    /// ` name="…"` for a kid or system id: echoed as written when that spelling is the
    /// schema's 8-4-4-4-12 form of the same UUID, otherwise written canonically.
    fn uuid_attr(&mut self, name: &str, as_written: &str, uuid: &[u8; 16]) {
        self.xml.push(' ');
        self.xml.push_str(name);
        self.xml.push_str("=\"");
        if spells_uuid(as_written, uuid) {
            self.xml.push_str(as_written);
        } else {
            push_uuid(&mut self.xml, uuid);
        }
        self.xml.push('"');
    }

    fn kid_attr(&mut self, name: &str, kid: &Kid) {
        self.uuid_attr(name, &kid.as_written, kid.id.as_bytes());
    }

    /// ` name="n"`.
    fn number_attr(&mut self, name: &str, value: Option<u64>) {
        if let Some(n) = value {
            self.xml.push(' ');
            self.xml.push_str(name);
            self.xml.push_str("=\"");
            // Writing into a String cannot fail.
            let _ = write!(self.xml, "{n}");
            self.xml.push('"');
        }
    }

    fn bool_attr(&mut self, name: &str, value: Option<bool>) {
        self.opt_attr(name, value.map(|b| if b { "true" } else { "false" }));
    }

    /// Closes a start tag whose children follow.
    #[inline(always)]
    fn open_end(&mut self) {
        self.xml.push('>');
        self.depth += 1;
    }

    /// Closes an element without content.
    #[inline(always)]
    fn empty_end(&mut self) {
        self.xml.push_str("/>");
    }

    /// `>text</name>`, or `/>` when `text` is empty (a request slot).
    #[inline(always)]
    fn text_end(&mut self, name: &str, text: &str) {
        if text.is_empty() {
            return self.empty_end();
        }
        self.xml.push('>');
        push_text(&mut self.xml, text);
        self.xml.push_str("</");
        self.xml.push_str(name);
        self.xml.push('>');
    }

    /// `<name>` and its children on the next level.
    #[inline(always)]
    fn start(&mut self, name: &str) {
        self.open(name);
        self.open_end();
    }

    #[inline(always)]
    fn end(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.newline();
        self.xml.push_str("</");
        self.xml.push_str(name);
        self.xml.push('>');
    }

    /// `<name>text</name>`, or `<name/>` when `text` is empty.
    #[inline(always)]
    fn leaf(&mut self, name: &str, text: &str) {
        self.open(name);
        self.text_end(name, text);
    }

    /// `<name>base64</name>`, or `<name/>` for no bytes; base64 needs no escaping.
    fn base64_leaf(&mut self, name: &str, bytes: &[u8]) {
        self.open(name);
        if bytes.is_empty() {
            return self.empty_end();
        }
        self.xml.push('>');
        B64.encode_string(bytes, &mut self.xml);
        self.xml.push_str("</");
        self.xml.push_str(name);
        self.xml.push('>');
    }

    /// A self-contained XML fragment kept from the input, written unchanged.
    fn raw(&mut self, fragment: &str) {
        self.newline();
        self.xml.push_str(fragment);
    }

    /// Whether a list is written: 2.4 lists need at least one child.
    fn writes_list<T>(&self, list: Option<&Vec<T>>) -> bool {
        list.is_some_and(|l| !(self.v24 && l.is_empty()))
    }

    fn document(&mut self, doc: &CpixDocument) {
        self.xml
            .push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        self.open("cpix:CPIX");
        self.attr("xmlns:cpix", ns::CPIX);
        self.attr("xmlns:pskc", ns::PSKC);
        self.attr("xmlns:enc", ns::ENC);
        self.attr("xmlns:ds", ns::DS);
        for (uri, prefix) in &self.extension_prefixes {
            self.xml.push_str(" xmlns:");
            self.xml.push_str(prefix);
            self.xml.push_str("=\"");
            push_attr_value(&mut self.xml, uri);
            self.xml.push('"');
        }
        self.opt_attr("id", doc.id.as_deref());
        self.opt_attr("contentId", doc.content_id.as_deref());
        self.opt_attr("name", doc.name.as_deref());
        let version = doc.version.as_ref().map(|v| match v {
            CpixVersion::V2_3 => "2.3",
            CpixVersion::V2_4 => "2.4",
            CpixVersion::Other(s) => s.as_str(),
        });
        self.opt_attr("version", version);
        self.open_end();

        if self.writes_list(doc.delivery_data.as_ref()) {
            self.start("cpix:DeliveryDataList");
            for d in doc.delivery_data.iter().flatten() {
                self.delivery_data(d);
            }
            self.end("cpix:DeliveryDataList");
        }
        if self.writes_list(doc.content_keys.as_ref()) {
            self.start("cpix:ContentKeyList");
            for k in doc.content_keys.iter().flatten() {
                self.content_key(k);
            }
            self.end("cpix:ContentKeyList");
        }
        if self.writes_list(doc.drm_systems.as_ref()) {
            self.start("cpix:DRMSystemList");
            for d in doc.drm_systems.iter().flatten() {
                self.drm_system(d);
            }
            self.end("cpix:DRMSystemList");
        }
        if self.writes_list(doc.periods.as_ref()) {
            self.start("cpix:ContentKeyPeriodList");
            for p in doc.periods.iter().flatten() {
                self.period(p);
            }
            self.end("cpix:ContentKeyPeriodList");
        }
        if self.writes_list(doc.usage_rules.as_ref()) {
            self.start("cpix:ContentKeyUsageRuleList");
            for r in doc.usage_rules.iter().flatten() {
                self.usage_rule(r);
            }
            self.end("cpix:ContentKeyUsageRuleList");
        }
        if let Some(history) = &doc.update_history_xml {
            self.raw(history);
        }
        self.end("cpix:CPIX");
    }

    fn delivery_data(&mut self, d: &DeliveryData) {
        self.open("cpix:DeliveryData");
        self.opt_attr("id", d.id.as_deref());
        self.open_end();
        self.start("cpix:DeliveryKey");
        self.start("ds:X509Data");
        self.base64_leaf("ds:X509Certificate", &d.certificate_der);
        self.end("ds:X509Data");
        self.end("cpix:DeliveryKey");
        if let Some(wrapped) = &d.wrapped {
            self.open("cpix:DocumentKey");
            if !self.v24 {
                self.attr("Algorithm", ns::ALG_AES256_CBC);
            }
            self.open_end();
            self.start("cpix:Data");
            self.start("pskc:Secret");
            self.start("pskc:EncryptedValue");
            self.encrypted_data(ns::ALG_RSA_OAEP_MGF1P, &wrapped.document_key_cipher);
            self.end("pskc:EncryptedValue");
            self.end("pskc:Secret");
            self.end("cpix:Data");
            self.end("cpix:DocumentKey");
            // `cpix:Key` directly holding EncryptionMethod + CipherData, as in the DASH-IF
            // test vectors (schema-valid through MACMethodType's ##other wildcard).
            self.open("cpix:MACMethod");
            self.attr("Algorithm", ns::ALG_HMAC_SHA512);
            self.open_end();
            self.start("cpix:Key");
            self.encrypted_data(ns::ALG_RSA_OAEP_MGF1P, &wrapped.mac_key_cipher);
            self.end("cpix:Key");
            self.end("cpix:MACMethod");
        }
        self.end("cpix:DeliveryData");
    }

    /// `enc:EncryptionMethod` + `enc:CipherData/enc:CipherValue`.
    fn encrypted_data(&mut self, algorithm: &str, cipher: &[u8]) {
        self.open("enc:EncryptionMethod");
        self.attr("Algorithm", algorithm);
        self.empty_end();
        self.start("enc:CipherData");
        self.base64_leaf("enc:CipherValue", cipher);
        self.end("enc:CipherData");
    }

    fn content_key(&mut self, k: &ContentKeyEntry) {
        self.open("cpix:ContentKey");
        self.opt_attr("id", k.id.as_deref());
        if self.v24 {
            self.opt_attr("contentId", k.content_id.as_deref());
        }
        self.kid_attr("kid", &k.kid);
        if let Some(iv) = &k.explicit_iv {
            // base64 needs no escaping.
            self.xml.push_str(" explicitIV=\"");
            B64.encode_string(iv.as_bytes(), &mut self.xml);
            self.xml.push('"');
        }
        if let Some(root) = &k.depends_on_key {
            self.kid_attr("dependsOnKey", root);
        }
        if let Some(scheme) = k.common_encryption_scheme {
            self.attr("commonEncryptionScheme", scheme.as_str());
        }
        let Some(value) = &k.value else {
            return self.empty_end();
        };
        self.open_end();
        self.start("cpix:Data");
        self.start("pskc:Secret");
        match value {
            KeyValue::Plain(key) => self.base64_leaf("pskc:PlainValue", key.expose()),
            KeyValue::Encrypted {
                cipher_value,
                value_mac,
            } => {
                self.start("pskc:EncryptedValue");
                self.encrypted_data(ns::ALG_AES256_CBC, cipher_value);
                self.end("pskc:EncryptedValue");
                self.base64_leaf("pskc:ValueMAC", value_mac);
            }
        }
        self.end("pskc:Secret");
        self.end("cpix:Data");
        self.end("cpix:ContentKey");
    }

    fn drm_system(&mut self, d: &DrmSystemEntry) {
        self.open("cpix:DRMSystem");
        self.opt_attr("id", d.id.as_deref());
        self.uuid_attr("systemId", &d.system_id.as_written, &d.system_id.uuid);
        self.kid_attr("kid", &d.kid);
        self.opt_attr("name", d.name.as_deref());
        self.open_end();
        if let Some(v) = &d.pssh {
            self.leaf("cpix:PSSH", v);
        }
        if let Some(v) = &d.content_protection_data {
            self.leaf("cpix:ContentProtectionData", v);
        }
        if let (Some(v), false) = (&d.uri_ext_x_key, self.v24) {
            self.leaf("cpix:URIExtXKey", v);
        }
        for hls in &d.hls_signaling {
            let playlist = hls.playlist.map(|p| match (p, self.v24) {
                (Playlist::Media, _) => "media",
                (Playlist::Master | Playlist::MultiVariant, false) => "master",
                (Playlist::Master | Playlist::MultiVariant, true) => "multiVariant",
            });
            self.open("cpix:HLSSignalingData");
            self.opt_attr("playlist", playlist);
            self.text_end("cpix:HLSSignalingData", &hls.value);
        }
        if let Some(v) = &d.smooth_streaming {
            self.leaf("cpix:SmoothStreamingProtectionHeaderData", v);
        }
        if let (Some(v), false) = (&d.hds_signaling, self.v24) {
            self.leaf("cpix:HDSSignalingData", v);
        }
        for ext in &d.extensions {
            self.newline();
            self.xml.push('<');
            // `prefix:localName`, or the bare local name outside any namespace.
            let prefix = self.extension_prefixes.get(ext.namespace.as_str());
            let qualified = |xml: &mut String| {
                if let Some(prefix) = prefix {
                    xml.push_str(prefix);
                    xml.push(':');
                }
                xml.push_str(&ext.local_name);
            };
            qualified(&mut self.xml);
            if ext.text.is_empty() {
                self.xml.push_str("/>");
            } else {
                self.xml.push('>');
                push_text(&mut self.xml, &ext.text);
                self.xml.push_str("</");
                qualified(&mut self.xml);
                self.xml.push('>');
            }
        }
        self.end("cpix:DRMSystem");
    }

    fn period(&mut self, p: &ContentKeyPeriod) {
        self.open("cpix:ContentKeyPeriod");
        self.opt_attr("id", p.id.as_deref());
        self.number_attr("index", p.index);
        self.opt_attr("start", p.start.as_deref());
        self.opt_attr("end", p.end.as_deref());
        if self.v24 {
            self.opt_attr("label", p.label.as_deref());
            self.opt_attr("startOffset", p.start_offset.as_deref());
            self.opt_attr("endOffset", p.end_offset.as_deref());
            self.opt_attr("duration", p.duration.as_deref());
        }
        self.empty_end();
    }

    fn usage_rule(&mut self, r: &UsageRule) {
        self.open("cpix:ContentKeyUsageRule");
        self.opt_attr("id", r.id.as_deref());
        self.kid_attr("kid", &r.kid);
        self.opt_attr("intendedTrackType", r.intended_track_type.as_deref());
        let has_children = !(r.key_period_filters.is_empty()
            && r.label_filters.is_empty()
            && r.video_filters.is_empty()
            && r.audio_filters.is_empty()
            && r.bitrate_filters.is_empty()
            && r.unknown_children.is_empty());
        if !has_children {
            return self.empty_end();
        }
        self.open_end();
        for f in &r.key_period_filters {
            self.open("cpix:KeyPeriodFilter");
            self.attr("periodId", &f.period_id);
            self.empty_end();
        }
        for f in &r.label_filters {
            self.open("cpix:LabelFilter");
            self.attr("label", &f.label);
            self.empty_end();
        }
        for f in &r.video_filters {
            self.open("cpix:VideoFilter");
            self.number_attr("minPixels", f.min_pixels);
            self.number_attr("maxPixels", f.max_pixels);
            self.bool_attr("hdr", f.hdr);
            self.bool_attr("wcg", f.wcg);
            self.opt_attr("minFps", f.min_fps.as_deref());
            self.opt_attr("maxFps", f.max_fps.as_deref());
            self.empty_end();
        }
        for f in &r.audio_filters {
            self.open("cpix:AudioFilter");
            self.number_attr("minChannels", f.min_channels);
            self.number_attr("maxChannels", f.max_channels);
            self.empty_end();
        }
        for f in &r.bitrate_filters {
            self.open("cpix:BitrateFilter");
            self.number_attr("minBitrate", f.min_bitrate);
            self.number_attr("maxBitrate", f.max_bitrate);
            self.empty_end();
        }
        for fragment in &r.unknown_children {
            self.raw(fragment);
        }
        self.end("cpix:ContentKeyUsageRule");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::path::{Path, PathBuf};

    use keyplex_crypto::delivery::{DocumentKeys, RecipientKey, RecipientPrivateKey, WrappedKeys};
    use keyplex_types::{ContentKeyValue, Iv};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    use super::*;
    use crate::model::*;
    use crate::read_document;
    use crate::testing::{DASHIF, SPEKE, any_document, document, read_vector, xml_files};
    use keyplex_types::KeyId;

    const CERT1_PKCS8: &[u8] =
        include_bytes!("../../keyplex-crypto/testdata/cert1_private_key.pk8.der");

    fn round_trip(doc: &CpixDocument) -> CpixDocument {
        let xml = write_document(doc);
        assert_same_as_oracle("round trip", doc, &xml);
        read_document(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"))
    }

    /// The vectors keyplex can read (the KeyRotation files are rejected on purpose).
    fn readable_vectors() -> Vec<(PathBuf, CpixDocument)> {
        xml_files(DASHIF)
            .into_iter()
            .chain(xml_files(SPEKE))
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("KeyRotation")
            })
            .map(|p| {
                let doc = read_document(&read_vector(p.to_str().unwrap())).unwrap();
                (p, doc)
            })
            .collect()
    }

    /// What a response to `request` looks like: keys, signaling slots and delivery filled in
    /// (with fake but well-formed values; the cryptography is tested separately).
    fn answered(mut doc: CpixDocument) -> CpixDocument {
        for (i, key) in doc.content_keys.iter_mut().flatten().enumerate() {
            key.value
                .get_or_insert(KeyValue::Plain(ContentKeyValue::from_bytes(
                    [u8::try_from(i).unwrap(); 16],
                )));
            key.explicit_iv.get_or_insert(Iv::from_bytes([9; 16]));
        }
        let filled = |slot: &mut Option<String>| {
            if let Some(v) = slot.as_mut().filter(|v| v.is_empty()) {
                *v = "AAAAIHBzc2gAAAAAEHfv7MCyTQKs4zweUuL7SwAAAAA=".to_owned();
            }
        };
        for drm in doc.drm_systems.iter_mut().flatten() {
            filled(&mut drm.pssh);
            filled(&mut drm.content_protection_data);
            filled(&mut drm.uri_ext_x_key);
            filled(&mut drm.smooth_streaming);
            for hls in &mut drm.hls_signaling {
                hls.value = "I0VYVC1YLUtFWTpNRVRIT0Q9U0FNUExFLUFFUw==".to_owned();
            }
            for ext in &mut drm.extensions {
                ext.text = "MQ==".to_owned();
            }
        }
        for d in doc.delivery_data.iter_mut().flatten() {
            d.wrapped.get_or_insert(WrappedDeliveryKeys {
                document_key_cipher: vec![1; 512],
                mac_key_cipher: vec![2; 512],
            });
        }
        doc
    }

    /// The writer's output is the quick-xml oracle's, byte for byte.
    fn assert_same_as_oracle(label: &str, doc: &CpixDocument, xml: &str) {
        let expected = oracle::write_document(doc);
        if xml != expected {
            let at = xml
                .bytes()
                .zip(expected.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| xml.len().min(expected.len()));
            let around = |s: &str| {
                let from = (0..=at.saturating_sub(120))
                    .rev()
                    .find(|&i| s.is_char_boundary(i));
                s.get(from.unwrap_or(0)..)
                    .unwrap_or(s)
                    .chars()
                    .take(240)
                    .collect::<String>()
            };
            panic!(
                "{label}: differs from the oracle at byte {at}\n--- new:\n{}\n--- oracle:\n{}",
                around(xml),
                around(&expected)
            );
        }
    }

    /// The request bodies of `bench/run.sh`: CPIX for existing content (placeholders as
    /// `bench/lib.sh` fills them) and SPEKE v2 live.
    fn bench_requests() -> Vec<(String, CpixDocument)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench");
        let cpix = std::fs::read_to_string(dir.join("cpix-request.xml"))
            .unwrap()
            .replace("@CONTENT_ID@", "bench-existing")
            .replace("@KID@", "0b1e5c4a-2f6d-4e8b-9a07-5c3d2e1f0a9b");
        let live = std::fs::read(dir.join("speke-live-request.xml")).unwrap();
        vec![
            (
                "bench/cpix-request.xml".to_owned(),
                read_document(cpix.as_bytes()).unwrap(),
            ),
            (
                "bench/speke-live-request.xml".to_owned(),
                read_document(&live).unwrap(),
            ),
        ]
    }

    /// Documents the tests read: the readable vectors, the server's tenant-defined-system
    /// fixture, the bench requests, and every fuzz regression input that reads.
    fn documents_read() -> Vec<(String, CpixDocument)> {
        let mut docs: Vec<(String, CpixDocument)> = readable_vectors()
            .into_iter()
            .map(|(p, d)| (p.display().to_string(), d))
            .collect();
        let defined = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../keyplex-server/tests/it/fixtures/speke_v2_widevine_playready_irdeto.xml");
        docs.push((
            defined.display().to_string(),
            read_document(&std::fs::read(&defined).unwrap()).unwrap(),
        ));
        docs.extend(bench_requests());
        let fuzz =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/cpix_document");
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&fuzz)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        for path in inputs {
            if let Ok(doc) = read_document(&std::fs::read(&path).unwrap()) {
                docs.push((path.display().to_string(), doc));
            }
        }
        docs
    }

    /// Every document read, as read and answered, in its own version and relabelled with each
    /// version the writer distinguishes: the same bytes as the oracle.
    #[test]
    fn same_output_as_the_quick_xml_writer() {
        let mut count = 0;
        for (name, doc) in documents_read() {
            let answer = answered(doc.clone());
            for (shape, doc) in [("as read", doc), ("answered", answer)] {
                let versions = [
                    doc.version.clone(),
                    Some(CpixVersion::V2_3),
                    Some(CpixVersion::V2_4),
                    None,
                    Some(CpixVersion::Other("2.2".to_owned())),
                ];
                for version in versions {
                    let doc = CpixDocument {
                        version,
                        ..doc.clone()
                    };
                    let label = format!("{name} ({shape}, {:?})", doc.version);
                    assert_same_as_oracle(&label, &doc, &write_document(&doc));
                    count += 1;
                }
            }
        }
        assert!(count > 300, "{count}");
    }

    /// One allocation: the estimate covers what is written for the documents read and
    /// answered (their texts need no escaping), without being far above it for answers.
    #[test]
    fn estimate_covers_the_output() {
        for (name, doc) in documents_read() {
            let answer = answered(doc.clone());
            for doc in [doc, answer] {
                let xml = write_document(&doc);
                let estimate = estimate_len(&doc);
                assert!(xml.len() <= estimate, "{name}: {} > {estimate}", xml.len());
            }
        }
        for (name, doc) in bench_requests() {
            let answer = answered(doc);
            let (written, estimate) = (write_document(&answer).len(), estimate_len(&answer));
            assert!(
                written <= estimate && estimate < 2 * written,
                "{name}: {written} written, {estimate} estimated"
            );
        }
    }

    /// Texts for every string of the model: markup characters, quotes, whitespace, non-ASCII,
    /// and any string at all.
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[<>&\"' a-zA-Z0-9=+/\t\n\ré€😀]{0,12}",
            "[A-Za-z0-9+/]{0,16}={0,2}",
            any::<String>(),
        ]
    }

    /// `doc` with `texts` put into every text, attribute value, kid spelling, namespace and
    /// verbatim fragment it has (cycling through them), plus an extension element outside any
    /// namespace. Not schema-valid, nor meant to read back: only the two writers are compared.
    fn with_texts(mut doc: CpixDocument, texts: &[String]) -> CpixDocument {
        let mut texts = texts.iter().cycle().cloned();
        let mut next = move || texts.next().unwrap_or_default();
        let replace = |slot: &mut Option<String>, next: &mut dyn FnMut() -> String| {
            if slot.is_some() {
                *slot = Some(next());
            }
        };
        doc.id = Some(next());
        doc.content_id = Some(next());
        doc.name = Some(next());
        if let Some(CpixVersion::Other(v)) = &mut doc.version {
            *v = next();
        }
        replace(&mut doc.update_history_xml, &mut next);
        for d in doc.delivery_data.iter_mut().flatten() {
            d.id = Some(next());
        }
        for k in doc.content_keys.iter_mut().flatten() {
            k.id = Some(next());
            k.content_id = Some(next());
            let spelling = next();
            if spelling.len() % 2 == 1 {
                k.kid.as_written = spelling;
            }
            if let Some(root) = &mut k.depends_on_key {
                root.as_written = next();
            }
        }
        for d in doc.drm_systems.iter_mut().flatten() {
            d.id = Some(next());
            d.name = Some(next());
            let spelling = next();
            if spelling.len() % 2 == 1 {
                d.system_id.as_written = spelling;
            }
            replace(&mut d.pssh, &mut next);
            replace(&mut d.content_protection_data, &mut next);
            replace(&mut d.uri_ext_x_key, &mut next);
            replace(&mut d.smooth_streaming, &mut next);
            replace(&mut d.hds_signaling, &mut next);
            for hls in &mut d.hls_signaling {
                hls.value = next();
            }
            for ext in &mut d.extensions {
                ext.text = next();
            }
            if let Some(ext) = d.extensions.first_mut() {
                ext.namespace = next();
                ext.prefix = Some(next());
            }
            d.extensions.push(ExtensionElement {
                namespace: String::new(),
                local_name: "Bare".to_owned(),
                prefix: None,
                text: next(),
            });
        }
        for p in doc.periods.iter_mut().flatten() {
            for slot in [
                &mut p.id,
                &mut p.start,
                &mut p.end,
                &mut p.label,
                &mut p.start_offset,
                &mut p.end_offset,
                &mut p.duration,
            ] {
                *slot = Some(next());
            }
        }
        for r in doc.usage_rules.iter_mut().flatten() {
            r.id = Some(next());
            r.intended_track_type = Some(next());
            for f in &mut r.key_period_filters {
                f.period_id = next();
            }
            for f in &mut r.label_filters {
                f.label = next();
            }
            for f in &mut r.video_filters {
                f.min_fps = Some(next());
                f.max_fps = Some(next());
            }
            for c in &mut r.unknown_children {
                *c = next();
            }
        }
        doc
    }

    /// What the quick-xml writer echoed: a kid or system id as written when it is the
    /// schema's 8-4-4-4-12 spelling and parses to the same UUID.
    fn reference_spells_uuid(s: &str, uuid: &[u8; 16]) -> bool {
        let shape = s.len() == 36
            && s.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        shape && s.parse::<KeyId>().ok() == Some(KeyId::from_bytes(*uuid))
    }

    #[test]
    fn uuid_spellings() {
        let uuid = *"0f083e4e-b831-4a3d-917e-ce78076e54aa"
            .parse::<KeyId>()
            .unwrap()
            .as_bytes();
        for (s, echoed) in [
            ("0f083e4e-b831-4a3d-917e-ce78076e54aa", true),
            ("0F083E4E-B831-4A3D-917E-CE78076E54AA", true),
            ("0f083E4e-b831-4A3d-917e-Ce78076e54aA", true),
            ("0f083e4eb8314a3d917ece78076e54aa", false),
            ("0f083e4e-b831-4a3d-917e-ce78076e54ab", false),
            ("1f083e4e-b831-4a3d-917e-ce78076e54aa", false),
            ("0f083e4e-b831-4a3d-917e-ce78076e54a", false),
            ("0f083e4e-b831-4a3d-917e-ce78076e54aa ", false),
            ("0f083e4e_b831-4a3d-917e-ce78076e54aa", false),
            // A control character one bit from a digit, and '@'/'`' one bit from letters.
            ("\u{10}f083e4e-b831-4a3d-917e-ce78076e54aa", false),
            ("0f083e4e-b831-4a3d-917e-ce78076e54`a", false),
            ("0f083e4e-b831-4a3d-917e-ce78076e54@a", false),
            ("0f083e4e-b831-4a3d-917e-ce78076e54éa", false),
            ("", false),
        ] {
            assert_eq!(spells_uuid(s, &uuid), echoed, "{s:?}");
            assert_eq!(reference_spells_uuid(s, &uuid), echoed, "{s:?}");
        }
        let mut canonical = String::new();
        push_uuid(&mut canonical, &uuid);
        assert_eq!(canonical, "0f083e4e-b831-4a3d-917e-ce78076e54aa");
    }

    #[test]
    fn output_shape_and_namespaces() {
        let kid = Kid {
            id: "40d02dd1-61a3-4787-a155-572325d47b80".parse().unwrap(),
            as_written: "40D02DD1-61A3-4787-A155-572325D47B80".to_owned(),
        };
        let doc = CpixDocument {
            version: Some(CpixVersion::V2_3),
            content_id: Some("a&b".to_owned()),
            content_keys: Some(vec![ContentKeyEntry {
                id: None,
                kid: kid.clone(),
                explicit_iv: Some(Iv::from_bytes([0; 16])),
                common_encryption_scheme: Some(keyplex_types::EncryptionScheme::Cbcs),
                content_id: None,
                depends_on_key: None,
                value: Some(KeyValue::Plain(ContentKeyValue::from_bytes([0xAB; 16]))),
            }]),
            ..CpixDocument::default()
        };
        let xml = write_document(&doc);
        assert!(
            xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
            "{xml}"
        );
        assert!(xml.contains(r#"<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" xmlns:enc="http://www.w3.org/2001/04/xmlenc#" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" contentId="a&amp;b" version="2.3">"#), "{xml}");
        assert!(xml.contains(r#"<cpix:ContentKey kid="40D02DD1-61A3-4787-A155-572325D47B80" explicitIV="AAAAAAAAAAAAAAAAAAAAAA==" commonEncryptionScheme="cbcs">"#), "{xml}");
        assert!(
            xml.contains("<pskc:PlainValue>q6urq6urq6urq6urq6urqw==</pskc:PlainValue>"),
            "{xml}"
        );
        assert!(!xml.contains("speke"));
        assert_eq!(round_trip(&doc), doc);

        // A kid spelled without dashes is echoed canonically (the schema wants 8-4-4-4-12).
        let mut bare = doc.clone();
        bare.content_keys.as_mut().unwrap()[0].kid.as_written =
            "40d02dd161a34787a155572325d47b80".to_owned();
        assert!(write_document(&bare).contains(r#"kid="40d02dd1-61a3-4787-a155-572325d47b80""#));
    }

    #[test]
    fn version_specific_output() {
        let v1 = read_document(&read_vector(&format!(
            "{SPEKE}/aws-speke-v1-docs/live_response.xml"
        )))
        .unwrap();
        let xml23 = write_document(&v1);
        assert!(xml23.contains(r#"xmlns:speke="urn:aws:amazon:com:speke""#));
        assert!(xml23.contains("<speke:KeyFormat>aWRlbnRpdHk=</speke:KeyFormat>"));
        assert!(xml23.contains("<cpix:URIExtXKey>"));
        assert_eq!(round_trip(&v1), v1);

        let mut v24 = v1.clone();
        v24.version = Some(CpixVersion::V2_4);
        v24.usage_rules = Some(vec![]);
        let xml24 = write_document(&v24);
        assert!(!xml24.contains("URIExtXKey"));
        assert!(
            !xml24.contains("ContentKeyUsageRuleList"),
            "empty lists are omitted in 2.4"
        );

        let complex = read_document(&read_vector(&format!("{DASHIF}/Complex.xml"))).unwrap();
        let xml = write_document(&complex);
        assert!(xml.contains(r#"<cpix:HLSSignalingData playlist="master">"#));
        assert!(xml.contains(
            r#"<cpix:DocumentKey Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc">"#
        ));
        assert!(xml.contains(
            r#"<cpix:MACMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha512">"#
        ));
        let mut complex24 = complex;
        complex24.version = Some(CpixVersion::V2_4);
        let xml = write_document(&complex24);
        assert!(xml.contains(r#"<cpix:HLSSignalingData playlist="multiVariant">"#));
        assert!(xml.contains("<cpix:DocumentKey>"));
    }

    #[test]
    fn every_readable_vector_round_trips() {
        for (path, doc) in readable_vectors() {
            assert_eq!(round_trip(&doc), doc, "{}", path.display());
            let answer = answered(doc);
            assert_eq!(round_trip(&answer), answer, "{} (answered)", path.display());
        }
    }

    #[test]
    fn encrypted_response_for_cert1_decrypts_back() {
        let cert = read_vector(&format!("{DASHIF}/Cert1.cer"));
        let recipient = RecipientKey::from_certificate_der(&cert).unwrap();
        let document_keys = DocumentKeys::generate().unwrap();
        let wrapped = document_keys.wrap_for(&recipient).unwrap();
        let key = ContentKeyValue::from_bytes(*b"keyplex-test-key");
        let encrypted = document_keys.encrypt_content_key(&key).unwrap();
        let kid = Kid::new("0f083e4e-b831-4a3d-917e-ce78076e54aa".parse().unwrap());
        let doc = CpixDocument {
            version: Some(CpixVersion::V2_3),
            delivery_data: Some(vec![DeliveryData {
                id: None,
                certificate_der: cert,
                wrapped: Some(WrappedDeliveryKeys {
                    document_key_cipher: wrapped.document_key_cipher,
                    mac_key_cipher: wrapped.mac_key_cipher,
                }),
            }]),
            content_keys: Some(vec![ContentKeyEntry {
                id: None,
                kid,
                explicit_iv: None,
                common_encryption_scheme: None,
                content_id: None,
                depends_on_key: None,
                value: Some(KeyValue::Encrypted {
                    cipher_value: encrypted.cipher_value,
                    value_mac: encrypted.value_mac,
                }),
            }]),
            ..CpixDocument::default()
        };
        let back = read_document(write_document(&doc).as_bytes()).unwrap();
        let delivered = back.delivery_data.unwrap().remove(0).wrapped.unwrap();
        let private = RecipientPrivateKey::from_pkcs8_der(CERT1_PKCS8).unwrap();
        let unwrapped = DocumentKeys::unwrap_with(
            &private,
            &WrappedKeys {
                document_key_cipher: delivered.document_key_cipher,
                mac_key_cipher: delivered.mac_key_cipher,
            },
        )
        .unwrap();
        let Some(KeyValue::Encrypted {
            cipher_value,
            value_mac,
        }) = back.content_keys.unwrap().remove(0).value
        else {
            panic!("expected an encrypted key");
        };
        assert_eq!(
            unwrapped
                .decrypt_content_key(&cipher_value, &value_mac)
                .unwrap(),
            key
        );
    }

    #[test]
    fn leaf_text_is_escaped_only_when_it_holds_markup() {
        let mut out = DocWriter {
            xml: String::new(),
            depth: 0,
            v24: false,
            extension_prefixes: BTreeMap::new(),
        };
        out.leaf("a", "QUJD+/=");
        out.leaf("b", "x<y & z>\"'");
        // Each tag starts on a new line (the quick-xml version of this test wrote without
        // indentation); the text is what this test is about.
        assert_eq!(
            out.xml.replace('\n', ""),
            "<a>QUJD+/=</a><b>x&lt;y &amp; z&gt;&quot;&apos;</b>"
        );
        // Quotes alone are no markup in text: copied, as quick-xml's writer did.
        out.xml.clear();
        out.leaf("c", "say \"hi\", it's");
        assert_eq!(out.xml, "\n<c>say \"hi\", it's</c>");
        // In attribute values they are escaped.
        out.xml.clear();
        out.open("d");
        out.attr("v", "it's \"a\" <b> & c");
        out.empty_end();
        assert_eq!(
            out.xml,
            "\n<d v=\"it&apos;s &quot;a&quot; &lt;b&gt; &amp; c\"/>"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn generated_models_round_trip(doc in any_document()) {
            let xml = write_document(&doc);
            let back = read_document(xml.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
            prop_assert_eq!(&back, &doc);
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_document(&bytes);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn generated_models_write_as_the_oracle(doc in any_document()) {
            prop_assert_eq!(write_document(&doc), oracle::write_document(&doc));
        }

        #[test]
        fn uuid_spellings_as_the_reference(
            uuid in any::<[u8; 16]>(),
            flips in proptest::collection::vec((0..36usize, any::<u8>()), 0..3),
            upper in any::<[bool; 36]>(),
        ) {
            let mut canonical = String::new();
            push_uuid(&mut canonical, &uuid);
            prop_assert_eq!(&canonical, &KeyId::from_bytes(uuid).to_string());
            // The canonical spelling with letters in random case, then a few bytes changed
            // to anything (kept when still UTF-8).
            let mut bytes: Vec<u8> = canonical
                .bytes()
                .zip(upper)
                .map(|(b, up)| if up { b.to_ascii_uppercase() } else { b })
                .collect();
            for (at, byte) in flips {
                bytes[at] = byte;
            }
            let s = String::from_utf8(bytes).unwrap_or(canonical);
            prop_assert_eq!(spells_uuid(&s, &uuid), reference_spells_uuid(&s, &uuid), "{:?}", s);
        }

        #[test]
        fn any_texts_write_as_the_oracle(
            doc in any_document(),
            texts in proptest::collection::vec(any_text(), 1..24),
        ) {
            let doc = with_texts(doc, &texts);
            prop_assert_eq!(write_document(&doc), oracle::write_document(&doc));
        }
    }

    /// Writes sample outputs for the XSD check: every readable vector as read and as answered
    /// (in its own version and re-labelled 2.4), plus generated models of every version. The
    /// directory is `$KEYPLEX_CPIX_SAMPLES_DIR` (default: `<tmp>/keyplex-cpix-samples`); then
    /// run `crates/keyplex-cpix/tests/validate_xsd.py <dir>`.
    #[test]
    fn writes_schema_samples() {
        let dir = std::env::var_os("KEYPLEX_CPIX_SAMPLES_DIR").map_or_else(
            || std::env::temp_dir().join("keyplex-cpix-samples"),
            PathBuf::from,
        );
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: String, doc: &CpixDocument| {
            let xml = write_document(doc);
            assert_same_as_oracle(&name, doc, &xml);
            assert_eq!(&read_document(xml.as_bytes()).unwrap(), doc, "{name}");
            std::fs::write(Path::new(&dir).join(name), xml).unwrap();
        };
        let mut count = 0;
        for (path, doc) in readable_vectors() {
            // CPIX@id must be an xs:ID (NCName); this SPEKE v1 sample starts with a digit.
            if doc.id.as_deref().is_some_and(|id| !is_ncname(id)) {
                continue;
            }
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let answer = answered(doc.clone());
            write(format!("vector-{stem}.xml"), &doc);
            write(format!("answered-{stem}.xml"), &answer);
            let mut v24 = answer;
            v24.version = Some(CpixVersion::V2_4);
            // 2.4 drops what it removed; read back compares against the 2.4 view of the model.
            let v24 = read_document(write_document(&v24).as_bytes()).unwrap();
            write(format!("answered24-{stem}.xml"), &v24);
            count += 3;
        }
        // A SPEKE v2 request naming a DRM system a tenant defines (Irdeto) beside Widevine and
        // PlayReady: the server's fixture for tenant-defined systems, answered.
        let defined = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../keyplex-server/tests/it/fixtures/speke_v2_widevine_playready_irdeto.xml");
        let request = read_document(&std::fs::read(&defined).unwrap()).unwrap();
        write(
            "answered-speke_v2_widevine_playready_irdeto.xml".to_owned(),
            &answered(request),
        );
        count += 1;
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
        );
        for (label, version) in [
            ("23", Some(CpixVersion::V2_3)),
            ("24", Some(CpixVersion::V2_4)),
            ("none", None),
        ] {
            let strategy = document(version);
            for i in 0..40 {
                let doc = strategy.new_tree(&mut runner).unwrap().current();
                write(format!("generated{label}-{i:02}.xml"), &doc);
                count += 1;
            }
        }
        assert!(count > 100, "{count}");
    }
}
