//! The quick-xml writer keyplex used before the direct `String` writer of `writer.rs`, kept
//! as it was (only this comment and the `pub(super)` on `write_document` differ) as the test
//! oracle: the differential tests in `writer.rs` check that both write every document byte
//! for byte the same. Test-only; not compiled into the library.

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
pub(super) fn write_document(doc: &CpixDocument) -> String {
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
