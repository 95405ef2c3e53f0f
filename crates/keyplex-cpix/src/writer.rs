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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::KeyId;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::model::{
    ContentKeyEntry, ContentKeyPeriod, CpixDocument, CpixVersion, DeliveryData, DrmSystemEntry,
    KeyValue, Kid, Playlist, SystemIdAttr, UsageRule,
};
use crate::ns;

/// Prefixes the writer declares on the root; extension namespaces may not reuse them.
const RESERVED_PREFIXES: [&str; 6] = ["cpix", "pskc", "enc", "ds", "xml", "xmlns"];

/// Writes `doc` as a UTF-8 CPIX document (with XML declaration, two-space indentation).
pub fn write_document(doc: &CpixDocument) -> String {
    let mut out = DocWriter {
        xml: Writer::new_with_indent(Vec::new(), b' ', 2),
        v24: doc.version == Some(CpixVersion::V2_4),
        extension_prefixes: extension_prefixes(doc),
    };
    // Writing into a Vec<u8> cannot fail, and every piece written is a &str, so the fallbacks
    // below only keep the function total.
    match out.document(doc) {
        Ok(()) => String::from_utf8(out.xml.into_inner())
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Err(_) => String::new(),
    }
}

/// Assigns one prefix per extension namespace: `speke` for SPEKE, else the prefix the
/// document used when it is a free NCName, else `ext1`, `ext2`, …
fn extension_prefixes(doc: &CpixDocument) -> BTreeMap<String, String> {
    let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
    let extensions = doc.drm_systems.iter().flatten().flat_map(|d| &d.extensions);
    for ext in extensions.filter(|e| !e.namespace.is_empty()) {
        if prefixes.contains_key(&ext.namespace) {
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
        prefixes.insert(ext.namespace.clone(), prefix);
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

/// True for the schema's `UUIDType` / `KeyIdType` spelling.
fn is_schema_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn kid_text(kid: &Kid) -> Cow<'_, str> {
    if is_schema_uuid(&kid.as_written) && kid.as_written.parse::<KeyId>().ok() == Some(kid.id) {
        Cow::Borrowed(&kid.as_written)
    } else {
        Cow::Owned(kid.id.to_string())
    }
}

fn system_id_text(system_id: &SystemIdAttr) -> Cow<'_, str> {
    let canonical = KeyId::from_bytes(system_id.uuid);
    if is_schema_uuid(&system_id.as_written)
        && system_id.as_written.parse::<KeyId>().ok() == Some(canonical)
    {
        Cow::Borrowed(&system_id.as_written)
    } else {
        Cow::Owned(canonical.to_string())
    }
}

type Attrs<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Adds `name="value"` when the value is present.
fn opt<'a>(attrs: &mut Attrs<'a>, name: &'static str, value: Option<&'a str>) {
    if let Some(v) = value {
        attrs.push((name, Cow::Borrowed(v)));
    }
}

struct DocWriter {
    xml: Writer<Vec<u8>>,
    v24: bool,
    extension_prefixes: BTreeMap<String, String>,
}

impl DocWriter {
    fn start(&mut self, name: &str, attrs: &[(&str, Cow<'_, str>)]) -> io::Result<()> {
        let mut tag = BytesStart::new(name);
        for (k, v) in attrs {
            tag.push_attribute((*k, v.as_ref()));
        }
        self.xml.write_event(Event::Start(tag))
    }

    fn end(&mut self, name: &str) -> io::Result<()> {
        self.xml.write_event(Event::End(BytesEnd::new(name)))
    }

    /// `<name attrs>text</name>`, or `<name attrs/>` when `text` is empty (a request slot).
    fn leaf(&mut self, name: &str, attrs: &[(&str, Cow<'_, str>)], text: &str) -> io::Result<()> {
        let mut tag = BytesStart::new(name);
        for (k, v) in attrs {
            tag.push_attribute((*k, v.as_ref()));
        }
        if text.is_empty() {
            return self.xml.write_event(Event::Empty(tag));
        }
        self.xml.write_event(Event::Start(tag))?;
        // Most texts are base64 (keys, PSSH, signaling data), which never needs escaping:
        // one SIMD search instead of quick-xml's byte-by-byte escape pass, which was ~4 % of
        // the CPU of a served-from-store CPIX request. Text content only needs `<`, `>` and
        // `&` escaped (quotes matter in attributes alone).
        let event = if memchr::memchr3(b'<', b'>', b'&', text.as_bytes()).is_none() {
            BytesText::from_escaped(text)
        } else {
            BytesText::new(text)
        };
        self.xml.write_event(Event::Text(event))?;
        self.end(name)
    }

    /// A self-contained XML fragment kept from the input, written unchanged.
    fn raw(&mut self, fragment: &str) -> io::Result<()> {
        self.xml.write_indent()?;
        self.xml.get_mut().write_all(fragment.as_bytes())
    }

    /// Whether a list is written: 2.4 lists need at least one child.
    fn writes_list<T>(&self, list: Option<&Vec<T>>) -> bool {
        list.is_some_and(|l| !(self.v24 && l.is_empty()))
    }

    fn document(&mut self, doc: &CpixDocument) -> io::Result<()> {
        self.xml
            .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let mut attrs: Attrs<'_> = vec![
            ("xmlns:cpix", Cow::Borrowed(ns::CPIX)),
            ("xmlns:pskc", Cow::Borrowed(ns::PSKC)),
            ("xmlns:enc", Cow::Borrowed(ns::ENC)),
            ("xmlns:ds", Cow::Borrowed(ns::DS)),
        ];
        let declarations: Vec<(String, String)> = self
            .extension_prefixes
            .iter()
            .map(|(uri, prefix)| (format!("xmlns:{prefix}"), uri.clone()))
            .collect();
        let mut tag = BytesStart::new("cpix:CPIX");
        for (k, v) in &attrs {
            tag.push_attribute((*k, v.as_ref()));
        }
        for (k, v) in &declarations {
            tag.push_attribute((k.as_str(), v.as_str()));
        }
        attrs.clear();
        opt(&mut attrs, "id", doc.id.as_deref());
        opt(&mut attrs, "contentId", doc.content_id.as_deref());
        opt(&mut attrs, "name", doc.name.as_deref());
        let version = doc.version.as_ref().map(|v| match v {
            CpixVersion::V2_3 => "2.3",
            CpixVersion::V2_4 => "2.4",
            CpixVersion::Other(s) => s.as_str(),
        });
        opt(&mut attrs, "version", version);
        for (k, v) in &attrs {
            tag.push_attribute((*k, v.as_ref()));
        }
        self.xml.write_event(Event::Start(tag))?;

        if self.writes_list(doc.delivery_data.as_ref()) {
            self.start("cpix:DeliveryDataList", &[])?;
            for d in doc.delivery_data.iter().flatten() {
                self.delivery_data(d)?;
            }
            self.end("cpix:DeliveryDataList")?;
        }
        if self.writes_list(doc.content_keys.as_ref()) {
            self.start("cpix:ContentKeyList", &[])?;
            for k in doc.content_keys.iter().flatten() {
                self.content_key(k)?;
            }
            self.end("cpix:ContentKeyList")?;
        }
        if self.writes_list(doc.drm_systems.as_ref()) {
            self.start("cpix:DRMSystemList", &[])?;
            for d in doc.drm_systems.iter().flatten() {
                self.drm_system(d)?;
            }
            self.end("cpix:DRMSystemList")?;
        }
        if self.writes_list(doc.periods.as_ref()) {
            self.start("cpix:ContentKeyPeriodList", &[])?;
            for p in doc.periods.iter().flatten() {
                self.period(p)?;
            }
            self.end("cpix:ContentKeyPeriodList")?;
        }
        if self.writes_list(doc.usage_rules.as_ref()) {
            self.start("cpix:ContentKeyUsageRuleList", &[])?;
            for r in doc.usage_rules.iter().flatten() {
                self.usage_rule(r)?;
            }
            self.end("cpix:ContentKeyUsageRuleList")?;
        }
        if let Some(history) = &doc.update_history_xml {
            self.raw(history)?;
        }
        self.end("cpix:CPIX")
    }

    fn delivery_data(&mut self, d: &DeliveryData) -> io::Result<()> {
        let mut attrs = Attrs::new();
        opt(&mut attrs, "id", d.id.as_deref());
        self.start("cpix:DeliveryData", &attrs)?;
        self.start("cpix:DeliveryKey", &[])?;
        self.start("ds:X509Data", &[])?;
        self.leaf("ds:X509Certificate", &[], &B64.encode(&d.certificate_der))?;
        self.end("ds:X509Data")?;
        self.end("cpix:DeliveryKey")?;
        if let Some(wrapped) = &d.wrapped {
            let algorithm: Attrs<'_> = if self.v24 {
                Vec::new()
            } else {
                vec![("Algorithm", Cow::Borrowed(ns::ALG_AES256_CBC))]
            };
            self.start("cpix:DocumentKey", &algorithm)?;
            self.start("cpix:Data", &[])?;
            self.start("pskc:Secret", &[])?;
            self.start("pskc:EncryptedValue", &[])?;
            self.encrypted_data(ns::ALG_RSA_OAEP_MGF1P, &wrapped.document_key_cipher)?;
            self.end("pskc:EncryptedValue")?;
            self.end("pskc:Secret")?;
            self.end("cpix:Data")?;
            self.end("cpix:DocumentKey")?;
            // `cpix:Key` directly holding EncryptionMethod + CipherData, as in the DASH-IF
            // test vectors (schema-valid through MACMethodType's ##other wildcard).
            self.start(
                "cpix:MACMethod",
                &[("Algorithm", Cow::Borrowed(ns::ALG_HMAC_SHA512))],
            )?;
            self.start("cpix:Key", &[])?;
            self.encrypted_data(ns::ALG_RSA_OAEP_MGF1P, &wrapped.mac_key_cipher)?;
            self.end("cpix:Key")?;
            self.end("cpix:MACMethod")?;
        }
        self.end("cpix:DeliveryData")
    }

    /// `enc:EncryptionMethod` + `enc:CipherData/enc:CipherValue`.
    fn encrypted_data(&mut self, algorithm: &str, cipher: &[u8]) -> io::Result<()> {
        self.leaf(
            "enc:EncryptionMethod",
            &[("Algorithm", Cow::Borrowed(algorithm))],
            "",
        )?;
        self.start("enc:CipherData", &[])?;
        self.leaf("enc:CipherValue", &[], &B64.encode(cipher))?;
        self.end("enc:CipherData")
    }

    fn content_key(&mut self, k: &ContentKeyEntry) -> io::Result<()> {
        let mut attrs = Attrs::new();
        opt(&mut attrs, "id", k.id.as_deref());
        if self.v24 {
            opt(&mut attrs, "contentId", k.content_id.as_deref());
        }
        attrs.push(("kid", kid_text(&k.kid)));
        if let Some(iv) = &k.explicit_iv {
            attrs.push(("explicitIV", Cow::Owned(iv.to_base64())));
        }
        if let Some(root) = &k.depends_on_key {
            attrs.push(("dependsOnKey", kid_text(root)));
        }
        if let Some(scheme) = k.common_encryption_scheme {
            attrs.push(("commonEncryptionScheme", Cow::Borrowed(scheme.as_str())));
        }
        let Some(value) = &k.value else {
            return self.leaf("cpix:ContentKey", &attrs, "");
        };
        self.start("cpix:ContentKey", &attrs)?;
        self.start("cpix:Data", &[])?;
        self.start("pskc:Secret", &[])?;
        match value {
            KeyValue::Plain(key) => self.leaf("pskc:PlainValue", &[], &B64.encode(key.expose()))?,
            KeyValue::Encrypted {
                cipher_value,
                value_mac,
            } => {
                self.start("pskc:EncryptedValue", &[])?;
                self.encrypted_data(ns::ALG_AES256_CBC, cipher_value)?;
                self.end("pskc:EncryptedValue")?;
                self.leaf("pskc:ValueMAC", &[], &B64.encode(value_mac))?;
            }
        }
        self.end("pskc:Secret")?;
        self.end("cpix:Data")?;
        self.end("cpix:ContentKey")
    }

    fn drm_system(&mut self, d: &DrmSystemEntry) -> io::Result<()> {
        let mut attrs = Attrs::new();
        opt(&mut attrs, "id", d.id.as_deref());
        attrs.push(("systemId", system_id_text(&d.system_id)));
        attrs.push(("kid", kid_text(&d.kid)));
        opt(&mut attrs, "name", d.name.as_deref());
        self.start("cpix:DRMSystem", &attrs)?;
        if let Some(v) = &d.pssh {
            self.leaf("cpix:PSSH", &[], v)?;
        }
        if let Some(v) = &d.content_protection_data {
            self.leaf("cpix:ContentProtectionData", &[], v)?;
        }
        if let (Some(v), false) = (&d.uri_ext_x_key, self.v24) {
            self.leaf("cpix:URIExtXKey", &[], v)?;
        }
        for hls in &d.hls_signaling {
            let playlist = hls.playlist.map(|p| match (p, self.v24) {
                (Playlist::Media, _) => "media",
                (Playlist::Master | Playlist::MultiVariant, false) => "master",
                (Playlist::Master | Playlist::MultiVariant, true) => "multiVariant",
            });
            let mut attrs = Attrs::new();
            opt(&mut attrs, "playlist", playlist);
            self.leaf("cpix:HLSSignalingData", &attrs, &hls.value)?;
        }
        if let Some(v) = &d.smooth_streaming {
            self.leaf("cpix:SmoothStreamingProtectionHeaderData", &[], v)?;
        }
        if let (Some(v), false) = (&d.hds_signaling, self.v24) {
            self.leaf("cpix:HDSSignalingData", &[], v)?;
        }
        for ext in &d.extensions {
            let name = match self.extension_prefixes.get(&ext.namespace) {
                Some(prefix) => format!("{prefix}:{}", ext.local_name),
                None => ext.local_name.clone(),
            };
            self.leaf(&name, &[], &ext.text)?;
        }
        self.end("cpix:DRMSystem")
    }

    fn period(&mut self, p: &ContentKeyPeriod) -> io::Result<()> {
        let mut attrs = Attrs::new();
        opt(&mut attrs, "id", p.id.as_deref());
        if let Some(index) = p.index {
            attrs.push(("index", Cow::Owned(index.to_string())));
        }
        opt(&mut attrs, "start", p.start.as_deref());
        opt(&mut attrs, "end", p.end.as_deref());
        if self.v24 {
            opt(&mut attrs, "label", p.label.as_deref());
            opt(&mut attrs, "startOffset", p.start_offset.as_deref());
            opt(&mut attrs, "endOffset", p.end_offset.as_deref());
            opt(&mut attrs, "duration", p.duration.as_deref());
        }
        self.leaf("cpix:ContentKeyPeriod", &attrs, "")
    }

    fn usage_rule(&mut self, r: &UsageRule) -> io::Result<()> {
        let mut attrs = Attrs::new();
        opt(&mut attrs, "id", r.id.as_deref());
        attrs.push(("kid", kid_text(&r.kid)));
        opt(
            &mut attrs,
            "intendedTrackType",
            r.intended_track_type.as_deref(),
        );
        let has_children = !(r.key_period_filters.is_empty()
            && r.label_filters.is_empty()
            && r.video_filters.is_empty()
            && r.audio_filters.is_empty()
            && r.bitrate_filters.is_empty()
            && r.unknown_children.is_empty());
        if !has_children {
            return self.leaf("cpix:ContentKeyUsageRule", &attrs, "");
        }
        self.start("cpix:ContentKeyUsageRule", &attrs)?;
        for f in &r.key_period_filters {
            self.leaf(
                "cpix:KeyPeriodFilter",
                &[("periodId", Cow::Borrowed(f.period_id.as_str()))],
                "",
            )?;
        }
        for f in &r.label_filters {
            self.leaf(
                "cpix:LabelFilter",
                &[("label", Cow::Borrowed(f.label.as_str()))],
                "",
            )?;
        }
        let number = |n: Option<u64>| n.map(|n| n.to_string());
        let boolean = |b: Option<bool>| b.map(|b| if b { "true" } else { "false" });
        for f in &r.video_filters {
            let (min_pixels, max_pixels) = (number(f.min_pixels), number(f.max_pixels));
            let mut attrs = Attrs::new();
            opt(&mut attrs, "minPixels", min_pixels.as_deref());
            opt(&mut attrs, "maxPixels", max_pixels.as_deref());
            opt(&mut attrs, "hdr", boolean(f.hdr));
            opt(&mut attrs, "wcg", boolean(f.wcg));
            opt(&mut attrs, "minFps", f.min_fps.as_deref());
            opt(&mut attrs, "maxFps", f.max_fps.as_deref());
            self.leaf("cpix:VideoFilter", &attrs, "")?;
        }
        for f in &r.audio_filters {
            let (min, max) = (number(f.min_channels), number(f.max_channels));
            let mut attrs = Attrs::new();
            opt(&mut attrs, "minChannels", min.as_deref());
            opt(&mut attrs, "maxChannels", max.as_deref());
            self.leaf("cpix:AudioFilter", &attrs, "")?;
        }
        for f in &r.bitrate_filters {
            let (min, max) = (number(f.min_bitrate), number(f.max_bitrate));
            let mut attrs = Attrs::new();
            opt(&mut attrs, "minBitrate", min.as_deref());
            opt(&mut attrs, "maxBitrate", max.as_deref());
            self.leaf("cpix:BitrateFilter", &attrs, "")?;
        }
        for fragment in &r.unknown_children {
            self.raw(fragment)?;
        }
        self.end("cpix:ContentKeyUsageRule")
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

    const CERT1_PKCS8: &[u8] =
        include_bytes!("../../keyplex-crypto/testdata/cert1_private_key.pk8.der");

    fn round_trip(doc: &CpixDocument) -> CpixDocument {
        let xml = write_document(doc);
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
            xml: Writer::new(Vec::new()),
            v24: false,
            extension_prefixes: BTreeMap::new(),
        };
        out.leaf("a", &[], "QUJD+/=").unwrap();
        out.leaf("b", &[], "x<y & z>\"'").unwrap();
        assert_eq!(
            String::from_utf8(out.xml.into_inner()).unwrap(),
            "<a>QUJD+/=</a><b>x&lt;y &amp; z&gt;&quot;&apos;</b>"
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
