//! PlayReady signaling: the WRMHEADER XML (versions 4.0–4.3), the PlayReady Object (PRO) that
//! wraps it, the key checksum, and PlayReady pssh boxes (Microsoft's "PlayReady Header Specification").
//!
//! PlayReady writes key ids as GUIDs: base64 of the 16 bytes with the first three fields
//! little-endian. [`KeyId`] is always in UUID order; the conversion happens only here.
//!
//! [`PlayReadyHeader::to_xml`] writes Microsoft's canonical form (header spec §3.2): no XML
//! declaration, explicit closing tags, attributes in alphabetical order. Players and
//! licence servers compare headers byte for byte, so this matters.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{ContentKeyValue, EncryptionScheme, KeyId};

use crate::pssh::Reader;
use crate::xml::escape_text;
use crate::{DrmError, DrmSystem, PsshBox};

/// The WRMHEADER XML namespace.
pub const WRMHEADER_NAMESPACE: &str = "http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader";

/// WRMHEADER versions. Older clients only understand older versions: PlayReady 1.x reads
/// 4.0 only, 2.x up to 4.1, 3.x up to 4.2, 4.x all.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum PlayReadyHeaderVersion {
    /// One key, `DATA/KID` and `DATA/CHECKSUM` elements.
    V4_0,
    /// At most one key, as `PROTECTINFO/KID` attributes; adds `DECRYPTORSETUP`.
    V4_1,
    /// Several keys under `PROTECTINFO/KIDS`.
    V4_2,
    /// Adds `ALGID="AESCBC"` (cbcs), whose keys carry no checksum.
    V4_3,
}

impl PlayReadyHeaderVersion {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V4_0 => "4.0.0.0",
            Self::V4_1 => "4.1.0.0",
            Self::V4_2 => "4.2.0.0",
            Self::V4_3 => "4.3.0.0",
        }
    }

    /// Accepts the four-part form (`4.2.0.0`) and, tolerantly, `4.2`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let (major, minor) = (parts.next()?, parts.next()?);
        if major != "4" || !parts.all(|p| p == "0") {
            return None;
        }
        match minor {
            "0" => Some(Self::V4_0),
            "1" => Some(Self::V4_1),
            "2" => Some(Self::V4_2),
            "3" => Some(Self::V4_3),
            _ => None,
        }
    }
}

/// The content encryption algorithm of a key (`ALGID`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AlgId {
    /// AES-CTR: the `cenc` (and `cens`) schemes.
    AesCtr,
    /// AES-CBC: the `cbcs` (and `cbc1`) schemes, header 4.3 only.
    AesCbc,
    /// The legacy PlayReady "cocktail" algorithm.
    Cocktail,
}

impl AlgId {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AesCtr => "AESCTR",
            Self::AesCbc => "AESCBC",
            Self::Cocktail => "COCKTAIL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "AESCTR" => Some(Self::AesCtr),
            "AESCBC" => Some(Self::AesCbc),
            "COCKTAIL" => Some(Self::Cocktail),
            _ => None,
        }
    }
}

/// One key of a PlayReady header.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PlayReadyKid {
    pub kid: KeyId,
    pub algid: Option<AlgId>,
    /// See [`key_checksum`]. Absent for AESCBC keys.
    pub checksum: Option<[u8; 8]>,
}

/// A PlayReady header (WRMHEADER).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PlayReadyHeader {
    pub version: PlayReadyHeaderVersion,
    pub kids: Vec<PlayReadyKid>,
    /// The licence acquisition URL; players use it unless the application overrides it.
    pub la_url: Option<String>,
    /// The licence UI URL (non-silent acquisition).
    pub lui_url: Option<String>,
    /// The service id (base64 GUID) of the licence server's domain.
    pub ds_id: Option<String>,
    /// The inner XML of `CUSTOMATTRIBUTES`, written and read verbatim.
    pub custom_attributes_xml: Option<String>,
    /// `DECRYPTORSETUP=ONDEMAND` (4.1+): the player may start before a licence is present.
    pub decryptor_setup_ondemand: bool,
}

/// base64 of the key id in GUID (little-endian) byte order: the `KID`/`VALUE` text.
pub fn kid_value(kid: &KeyId) -> String {
    B64.encode(kid.to_guid_le_bytes())
}

/// The inverse of [`kid_value`].
pub fn kid_from_value(value: &str) -> Result<KeyId, DrmError> {
    let bytes = B64
        .decode(strip_ascii_whitespace(value))
        .map_err(|_| DrmError::PlayReadyHeader(format!("KID {value:?} is not base64")))?;
    let le: [u8; 16] = bytes.try_into().map_err(|b: Vec<u8>| {
        DrmError::PlayReadyHeader(format!("KID {value:?} has {} bytes, not 16", b.len()))
    })?;
    Ok(KeyId::from_guid_le_bytes(le))
}

/// The PlayReady key checksum for AESCTR keys (header spec §5): AES-128-ECB-encrypt the key
/// id, in GUID byte order, with the content key and keep the first 8 bytes. Clients use it
/// to detect a licence whose key does not match the header.
pub fn key_checksum(kid: &KeyId, key: &ContentKeyValue) -> [u8; 8] {
    let block =
        keyplex_crypto::block::aes128_ecb_encrypt_block(key.expose(), &kid.to_guid_le_bytes());
    let [a, b, c, d, e, f, g, h, ..] = block;
    [a, b, c, d, e, f, g, h]
}

impl PlayReadyHeader {
    /// The key ids, in header order.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.kids.iter().map(|k| k.kid).collect()
    }

    /// The canonical XML text (without a byte-order mark or XML declaration).
    ///
    /// The writer is faithful rather than corrective: it writes every field as given, even
    /// combinations the version does not allow (see [`PlayReadyHeader::validate`]). Empty
    /// URL/DS_ID strings are treated as absent, since the spec forbids empty elements.
    pub fn to_xml(&self) -> String {
        let mut x = String::with_capacity(512);
        x.push_str("<WRMHEADER xmlns=\"");
        x.push_str(WRMHEADER_NAMESPACE);
        x.push_str("\" version=\"");
        x.push_str(self.version.as_str());
        x.push_str("\"><DATA>");
        match self.version {
            PlayReadyHeaderVersion::V4_0 => {
                // 4.0 has one algorithm for the whole header.
                let algid = self
                    .kids
                    .first()
                    .and_then(|k| k.algid)
                    .unwrap_or(AlgId::AesCtr);
                let keylen = if algid == AlgId::Cocktail { 7 } else { 16 };
                x.push_str(&format!(
                    "<PROTECTINFO><KEYLEN>{keylen}</KEYLEN><ALGID>{}</ALGID></PROTECTINFO>",
                    algid.as_str()
                ));
                for k in &self.kids {
                    x.push_str(&format!("<KID>{}</KID>", kid_value(&k.kid)));
                    if let Some(sum) = &k.checksum {
                        x.push_str(&format!("<CHECKSUM>{}</CHECKSUM>", B64.encode(sum)));
                    }
                }
            }
            PlayReadyHeaderVersion::V4_1 if !self.kids.is_empty() => {
                x.push_str("<PROTECTINFO>");
                self.kids.iter().for_each(|k| push_kid_element(&mut x, k));
                x.push_str("</PROTECTINFO>");
            }
            PlayReadyHeaderVersion::V4_2 | PlayReadyHeaderVersion::V4_3
                if !self.kids.is_empty() =>
            {
                x.push_str("<PROTECTINFO><KIDS>");
                self.kids.iter().for_each(|k| push_kid_element(&mut x, k));
                x.push_str("</KIDS></PROTECTINFO>");
            }
            _ => {}
        }
        for (name, value) in [
            ("LA_URL", &self.la_url),
            ("LUI_URL", &self.lui_url),
            ("DS_ID", &self.ds_id),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                x.push_str(&format!("<{name}>{}</{name}>", escape_text(v)));
            }
        }
        if let Some(custom) = &self.custom_attributes_xml {
            x.push_str(&format!("<CUSTOMATTRIBUTES>{custom}</CUSTOMATTRIBUTES>"));
        }
        if self.decryptor_setup_ondemand {
            x.push_str("<DECRYPTORSETUP>ONDEMAND</DECRYPTORSETUP>");
        }
        x.push_str("</DATA></WRMHEADER>");
        x
    }

    /// Checks the rules of the header's version (header spec §3): key count, which `ALGID`s
    /// are allowed, checksums, `DECRYPTORSETUP`. Headers keyplex builds always pass.
    pub fn validate(&self) -> Result<(), DrmError> {
        let fail = |msg: String| Err(DrmError::PlayReadyHeader(msg));
        let v = self.version.as_str();
        match self.version {
            PlayReadyHeaderVersion::V4_0 if self.kids.len() != 1 => {
                return fail(format!(
                    "version {v} needs exactly one KID, found {}",
                    self.kids.len()
                ));
            }
            PlayReadyHeaderVersion::V4_1 if self.kids.len() > 1 => {
                return fail(format!(
                    "version {v} allows at most one KID, found {}",
                    self.kids.len()
                ));
            }
            _ => {}
        }
        if self.version == PlayReadyHeaderVersion::V4_0 && self.decryptor_setup_ondemand {
            return fail(format!(
                "DECRYPTORSETUP needs version 4.1 or later, not {v}"
            ));
        }
        for k in &self.kids {
            match (self.version, k.algid) {
                (PlayReadyHeaderVersion::V4_3, _) => {}
                (_, None) => return fail(format!("version {v} requires ALGID on KID {}", k.kid)),
                (_, Some(AlgId::AesCbc)) => {
                    return fail(format!("ALGID AESCBC needs version 4.3, not {v}"));
                }
                _ => {}
            }
            if k.algid == Some(AlgId::AesCbc) && k.checksum.is_some() {
                return fail(format!("AESCBC key {} must not have a CHECKSUM", k.kid));
            }
        }
        if self.version == PlayReadyHeaderVersion::V4_3 {
            let first = self.kids.first().map(|k| k.algid);
            if self.kids.iter().any(|k| Some(k.algid) != first) {
                return fail("version 4.3 needs the same ALGID (or none) on every KID".to_owned());
            }
        }
        if [&self.la_url, &self.lui_url, &self.ds_id]
            .into_iter()
            .any(|u| u.as_deref() == Some(""))
        {
            return fail("LA_URL, LUI_URL and DS_ID must not be empty".to_owned());
        }
        Ok(())
    }

    /// Parses a WRMHEADER of any version 4.0–4.3. Tolerant of forms real packagers write:
    /// key ids are collected from `DATA/KID` (4.0), `PROTECTINFO/KID` (4.1) and
    /// `PROTECTINFO/KIDS/KID` (4.2/4.3) whatever the version says, a BOM, XML declaration
    /// and surrounding whitespace are ignored, and unknown elements are skipped.
    pub fn parse_xml(xml: &str) -> Result<Self, DrmError> {
        let text = xml.trim_start_matches('\u{feff}');
        let doc = roxmltree::Document::parse(text)
            .map_err(|e| DrmError::PlayReadyHeader(format!("not XML: {e}")))?;
        let root = doc.root_element();
        if root.tag_name().name() != "WRMHEADER" {
            return Err(DrmError::PlayReadyHeader(format!(
                "root element is {}, not WRMHEADER",
                root.tag_name().name()
            )));
        }
        let version_text = root.attribute("version").ok_or_else(|| {
            DrmError::PlayReadyHeader("WRMHEADER has no version attribute".to_owned())
        })?;
        let version = PlayReadyHeaderVersion::parse(version_text).ok_or_else(|| {
            DrmError::PlayReadyHeader(format!("unsupported WRMHEADER version {version_text:?}"))
        })?;
        let data = child(root, "DATA")
            .ok_or_else(|| DrmError::PlayReadyHeader("WRMHEADER has no DATA".to_owned()))?;

        let mut header = Self {
            version,
            kids: Vec::new(),
            la_url: None,
            lui_url: None,
            ds_id: None,
            custom_attributes_xml: None,
            decryptor_setup_ondemand: false,
        };
        // 4.0 states the algorithm once, in PROTECTINFO/ALGID, for its DATA/KID key.
        let mut header_algid = None;
        let mut element_kids = Vec::new();
        for node in data.children().filter(roxmltree::Node::is_element) {
            match node.tag_name().name() {
                "PROTECTINFO" => {
                    for p in node.children().filter(roxmltree::Node::is_element) {
                        match p.tag_name().name() {
                            "ALGID" => header_algid = Some(parse_algid(&element_text(p))?),
                            "KID" => header.kids.push(parse_kid_element(p)?),
                            "KIDS" => {
                                for k in p
                                    .children()
                                    .filter(|k| k.is_element() && k.tag_name().name() == "KID")
                                {
                                    header.kids.push(parse_kid_element(k)?);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                "KID" => element_kids.push(PlayReadyKid {
                    kid: kid_from_value(&element_text(node))?,
                    algid: None,
                    checksum: None,
                }),
                "CHECKSUM" => {
                    let sum = parse_checksum(&element_text(node))?;
                    let last = element_kids.last_mut().ok_or_else(|| {
                        DrmError::PlayReadyHeader("CHECKSUM without a preceding KID".to_owned())
                    })?;
                    last.checksum = Some(sum);
                }
                "LA_URL" => header.la_url = non_empty(element_text(node)),
                "LUI_URL" => header.lui_url = non_empty(element_text(node)),
                "DS_ID" => header.ds_id = non_empty(element_text(node)),
                "CUSTOMATTRIBUTES" => header.custom_attributes_xml = Some(inner_xml(text, node)),
                "DECRYPTORSETUP" => {
                    header.decryptor_setup_ondemand = element_text(node) == "ONDEMAND"
                }
                _ => {}
            }
        }
        for mut k in element_kids {
            k.algid = header_algid;
            header.kids.push(k);
        }
        Ok(header)
    }
}

fn push_kid_element(x: &mut String, k: &PlayReadyKid) {
    x.push_str("<KID");
    if let Some(algid) = k.algid {
        x.push_str(&format!(" ALGID=\"{}\"", algid.as_str()));
    }
    if let Some(sum) = &k.checksum {
        x.push_str(&format!(" CHECKSUM=\"{}\"", B64.encode(sum)));
    }
    x.push_str(&format!(" VALUE=\"{}\"></KID>", kid_value(&k.kid)));
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// All text inside an element, trimmed (PlayReady values never carry meaningful edge spaces).
fn element_text(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(roxmltree::Node::is_text)
        .filter_map(|t| t.text())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The source text between an element's start and end tags, so custom XML survives verbatim.
fn inner_xml(source: &str, node: roxmltree::Node<'_, '_>) -> String {
    match (node.first_child(), node.last_child()) {
        (Some(first), Some(last)) => source
            .get(first.range().start..last.range().end)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn strip_ascii_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

fn parse_algid(s: &str) -> Result<AlgId, DrmError> {
    AlgId::parse(s).ok_or_else(|| DrmError::PlayReadyHeader(format!("unknown ALGID {s:?}")))
}

fn parse_checksum(s: &str) -> Result<[u8; 8], DrmError> {
    let bytes = B64
        .decode(strip_ascii_whitespace(s))
        .map_err(|_| DrmError::PlayReadyHeader(format!("CHECKSUM {s:?} is not base64")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        DrmError::PlayReadyHeader(format!(
            "CHECKSUM has {} bytes; only 8-byte (AESCTR) checksums are supported",
            b.len()
        ))
    })
}

/// A 4.1+ `KID` element: `VALUE`, `ALGID` and `CHECKSUM` attributes (the value is also
/// accepted as element text, which some writers use).
fn parse_kid_element(node: roxmltree::Node<'_, '_>) -> Result<PlayReadyKid, DrmError> {
    let value = match node.attribute("VALUE") {
        Some(v) => v.to_owned(),
        None => element_text(node),
    };
    Ok(PlayReadyKid {
        kid: kid_from_value(&value)?,
        algid: node.attribute("ALGID").map(parse_algid).transpose()?,
        checksum: node.attribute("CHECKSUM").map(parse_checksum).transpose()?,
    })
}

// ---------------------------------------------------------------------------------------------
// PlayReady Object

/// One record of a PlayReady Object.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PlayReadyRecord {
    /// 1 = PlayReady header, 3 = embedded licence store.
    pub record_type: u16,
    pub value: Vec<u8>,
}

/// The PlayReady Object: the binary container of a PlayReady header, found in the `Data` of
/// a PlayReady pssh box, in `<mspr:pro>`, in HLS `data:` URIs and in Smooth Streaming
/// manifests. All integers little-endian:
/// `u32 length (whole object) | u16 count | count × (u16 type | u16 length | value)`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PlayReadyObject {
    pub records: Vec<PlayReadyRecord>,
}

impl PlayReadyObject {
    pub const RECORD_TYPE_HEADER: u16 = 1;
    pub const RECORD_TYPE_EMBEDDED_LICENSE_STORE: u16 = 3;

    /// An object with one header record: the XML in UTF-16LE without a byte-order mark.
    pub fn from_header(header: &PlayReadyHeader) -> Self {
        let xml = header.to_xml();
        let mut value = Vec::with_capacity(xml.len() * 2);
        for unit in xml.encode_utf16() {
            value.extend_from_slice(&unit.to_le_bytes());
        }
        Self {
            records: vec![PlayReadyRecord {
                record_type: Self::RECORD_TYPE_HEADER,
                value,
            }],
        }
    }

    /// The wire form. Fails only if a record exceeds 64 KiB or there are more than 65535
    /// records, which the format cannot express.
    pub fn to_bytes(&self) -> Result<Vec<u8>, DrmError> {
        let count = u16::try_from(self.records.len()).map_err(|_| DrmError::TooLarge {
            what: "PlayReady record count",
            len: self.records.len(),
            max: usize::from(u16::MAX),
        })?;
        let total: usize = 6 + self
            .records
            .iter()
            .map(|r| 4 + r.value.len())
            .sum::<usize>();
        let total32 = u32::try_from(total).map_err(|_| DrmError::TooLarge {
            what: "PlayReady Object",
            len: total,
            max: u32::MAX as usize,
        })?;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&total32.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for r in &self.records {
            let len = u16::try_from(r.value.len()).map_err(|_| DrmError::TooLarge {
                what: "PlayReady record",
                len: r.value.len(),
                max: usize::from(u16::MAX),
            })?;
            out.extend_from_slice(&r.record_type.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&r.value);
        }
        Ok(out)
    }

    /// Parses an object that spans exactly `bytes`: the length field, the record count and
    /// every record length must agree with the input.
    pub fn parse(bytes: &[u8]) -> Result<Self, DrmError> {
        let mut r = Reader::new(bytes, "PlayReady Object");
        let length = r.u32_le()?;
        if u64::from(length) != bytes.len() as u64 {
            return Err(DrmError::PlayReadyObject(format!(
                "length field says {length} bytes, input has {}",
                bytes.len()
            )));
        }
        let count = r.u16_le()?;
        let mut records = Vec::with_capacity(usize::from(count).min(r.remaining() / 4));
        for _ in 0..count {
            let record_type = r.u16_le()?;
            let len = r.u16_le()?;
            records.push(PlayReadyRecord {
                record_type,
                value: r.take(usize::from(len))?.to_vec(),
            });
        }
        if r.remaining() != 0 {
            return Err(DrmError::PlayReadyObject(format!(
                "{} bytes after the last record",
                r.remaining()
            )));
        }
        Ok(Self { records })
    }

    /// The XML text of the first header record, if there is one.
    pub fn header_xml(&self) -> Option<Result<String, DrmError>> {
        let record = self
            .records
            .iter()
            .find(|r| r.record_type == Self::RECORD_TYPE_HEADER)?;
        Some(decode_utf16le(&record.value))
    }

    /// The parsed first header record, if there is one.
    pub fn header(&self) -> Option<Result<PlayReadyHeader, DrmError>> {
        self.header_xml()
            .map(|xml| xml.and_then(|x| PlayReadyHeader::parse_xml(&x)))
    }
}

fn decode_utf16le(bytes: &[u8]) -> Result<String, DrmError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(DrmError::PlayReadyHeader(format!(
            "UTF-16 header has an odd length ({} bytes)",
            bytes.len()
        )));
    }
    let units = bytes
        .iter()
        .step_by(2)
        .zip(bytes.iter().skip(1).step_by(2))
        .map(|(&lo, &hi)| u16::from_le_bytes([lo, hi]));
    let text: String = char::decode_utf16(units)
        .collect::<Result<_, _>>()
        .map_err(|_| DrmError::PlayReadyHeader("header is not valid UTF-16".to_owned()))?;
    Ok(text.trim_start_matches('\u{feff}').to_owned())
}

// ---------------------------------------------------------------------------------------------
// Builders

/// The header Shaka Packager would write for these keys:
/// * `cenc`/`cens` with one key: 4.0 with `AESCTR` and the checksum (readable by every
///   PlayReady client);
/// * `cenc`/`cens` with several keys: 4.2 with `AESCTR` and a checksum per key;
/// * `cbcs`/`cbc1`: 4.3 with `ALGID="AESCBC"` and no checksums.
pub fn playready_header_for(
    kids_with_keys: &[(KeyId, &ContentKeyValue)],
    scheme: EncryptionScheme,
    la_url: Option<&str>,
) -> PlayReadyHeader {
    let (version, algid) = if scheme.is_cbc() {
        (PlayReadyHeaderVersion::V4_3, AlgId::AesCbc)
    } else if kids_with_keys.len() == 1 {
        (PlayReadyHeaderVersion::V4_0, AlgId::AesCtr)
    } else {
        (PlayReadyHeaderVersion::V4_2, AlgId::AesCtr)
    };
    let kids = kids_with_keys
        .iter()
        .map(|(kid, key)| PlayReadyKid {
            kid: *kid,
            algid: Some(algid),
            checksum: (algid == AlgId::AesCtr).then(|| key_checksum(kid, key)),
        })
        .collect();
    PlayReadyHeader {
        version,
        kids,
        la_url: la_url.filter(|u| !u.is_empty()).map(str::to_owned),
        lui_url: None,
        ds_id: None,
        custom_attributes_xml: None,
        decryptor_setup_ondemand: false,
    }
}

/// A PlayReady pssh box carrying the header's PlayReady Object. Version 0 is what Shaka
/// Packager writes; version 1 additionally lists the key ids (UUID byte order) in the box.
/// Fails if the header breaks its version's rules or is too large for a PlayReady Object.
pub fn playready_pssh(
    header: &PlayReadyHeader,
    with_key_ids_v1: bool,
) -> Result<PsshBox, DrmError> {
    header.validate()?;
    let pro = PlayReadyObject::from_header(header).to_bytes()?;
    let system_id = DrmSystem::PlayReady.system_id();
    Ok(if with_key_ids_v1 {
        PsshBox::v1(system_id, header.key_ids(), pro)
    } else {
        PsshBox::v0(system_id, pro)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(hex_text: &str) -> ContentKeyValue {
        ContentKeyValue::from_slice(&hex::decode(hex_text).unwrap()).unwrap()
    }
    fn kid(text: &str) -> KeyId {
        text.parse().unwrap()
    }

    const P2_XML: &str = r#"<WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.2.0.0"><DATA><PROTECTINFO><KIDS><KID ALGID="AESCTR" CHECKSUM="Me48z71nuqY=" VALUE="3kqpi7lunUS0T6W+769DsA=="></KID></KIDS></PROTECTINFO><LA_URL>https://test.playready.microsoft.com/service/rightsmanager.asmx</LA_URL></DATA></WRMHEADER>"#;
    /// Complex.xml (DASH-IF CPIX test vectors), SmoothStreamingProtectionHeaderData: a 4.0
    /// header without checksum, written by Axinom.
    const COMPLEX_PRO: &str = "xAEAAAEAAQC6ATwAVwBSAE0ASABFAEEARABFAFIAIAB4AG0AbABuAHMAPQAiAGgAdAB0AHAAOgAvAC8AcwBjAGgAZQBtAGEAcwAuAG0AaQBjAHIAbwBzAG8AZgB0AC4AYwBvAG0ALwBEAFIATQAvADIAMAAwADcALwAwADMALwBQAGwAYQB5AFIAZQBhAGQAeQBIAGUAYQBkAGUAcgAiACAAdgBlAHIAcwBpAG8AbgA9ACIANAAuADAALgAwAC4AMAAiAD4APABEAEEAVABBAD4APABQAFIATwBUAEUAQwBUAEkATgBGAE8APgA8AEsARQBZAEwARQBOAD4AMQA2ADwALwBLAEUAWQBMAEUATgA+ADwAQQBMAEcASQBEAD4AQQBFAFMAQwBUAFIAPAAvAEEATABHAEkARAA+ADwALwBQAFIATwBUAEUAQwBUAEkATgBGAE8APgA8AEsASQBEAD4AaQB4AGoARAB0AE4AMwB0AFAAVQBXAGIAdwBoAHkAOABwADEAWgBpAE8AUQA9AD0APAAvAEsASQBEAD4APAAvAEQAQQBUAEEAPgA8AC8AVwBSAE0ASABFAEEARABFAFIAPgA=";
    /// AWS SPEKE v1 docs, live_response.xml `speke:ProtectionHeader`: 4.0 with CHECKSUM and
    /// an LA_URL whose `&` the doc escaped three times.
    const AWS_PRO: &str = "CgMAAAEAAQAAAzwAVwBSAE0ASABFAEEARABFAFIAIAB4AG0AbABuAHMAPQAiAGgAdAB0AHAAOgAvAC8AcwBjAGgAZQBtAGEAcwAuAG0AaQBjAHIAbwBzAG8AZgB0AC4AYwBvAG0ALwBEAFIATQAvADIAMAAwADcALwAwADMALwBQAGwAYQB5AFIAZQBhAGQAeQBIAGUAYQBkAGUAcgAiACAAdgBlAHIAcwBpAG8AbgA9ACIANAAuADAALgAwAC4AMAAiAD4APABEAEEAVABBAD4APABQAFIATwBUAEUAQwBUAEkATgBGAE8APgA8AEsARQBZAEwARQBOAD4AMQA2ADwALwBLAEUAWQBMAEUATgA+ADwAQQBMAEcASQBEAD4AQQBFAFMAQwBUAFIAPAAvAEEATABHAEkARAA+ADwALwBQAFIATwBUAEUAQwBUAEkATgBGAE8APgA8AEsASQBEAD4ATwBXAGoAaAB0AHIAMwB1ADkAawArAHIAZABvADEASQBMAFkAMAByAGEAdwA9AD0APAAvAEsASQBEAD4APABDAEgARQBDAEsAUwBVAE0APgBCADMAQQA2AEEAMwB4AG0AdABkAEkAPQA8AC8AQwBIAEUAQwBLAFMAVQBNAD4APABMAEEAXwBVAFIATAA+AGgAdAB0AHAAOgAvAC8AcABsAGEAeQByAGUAYQBkAHkALgBkAGkAcgBlAGMAdAB0AGEAcABzAC4AbgBlAHQALwBwAHIALwBzAHYAYwAvAHIAaQBnAGgAdABzAG0AYQBuAGEAZwBlAHIALgBhAHMAbQB4AD8AUABsAGEAeQBSAGkAZwBoAHQAPQAxACYAYQBtAHAAOwBhAG0AcAA7AGEAbQBwADsAVQBzAGUAUwBpAG0AcABsAGUATgBvAG4AUABlAHIAcwBpAHMAdABlAG4AdABMAGkAYwBlAG4AcwBlAD0AMQA8AC8ATABBAF8AVQBSAEwAPgA8AC8ARABBAFQAQQA+ADwALwBXAFIATQBIAEUAQQBEAEUAUgA+AA==";

    fn p2_header() -> PlayReadyHeader {
        let k = kid("8ba94ade-6eb9-449d-b44f-a5beefaf43b0");
        PlayReadyHeader {
            version: PlayReadyHeaderVersion::V4_2,
            kids: vec![PlayReadyKid {
                kid: k,
                algid: Some(AlgId::AesCtr),
                checksum: Some(key_checksum(&k, &key("DBFD6922C321C4BB486F4A1C44097ED6"))),
            }],
            la_url: Some(
                "https://test.playready.microsoft.com/service/rightsmanager.asmx".to_owned(),
            ),
            lui_url: None,
            ds_id: None,
            custom_attributes_xml: None,
            decryptor_setup_ondemand: false,
        }
    }

    #[test]
    fn checksums_match_known_answers_p1_to_p6() {
        let cases = [
            (
                "09e091ab-f838-41d2-9e35-58531fd19ec7",
                "q5HgCTj40kGeNVhTH9Gexw==",
                "9cb061164b7013eaefcc7d6d18424c2c",
                "w+OZVr8vzrQ=",
            ),
            (
                "8ba94ade-6eb9-449d-b44f-a5beefaf43b0",
                "3kqpi7lunUS0T6W+769DsA==",
                "DBFD6922C321C4BB486F4A1C44097ED6",
                "Me48z71nuqY=",
            ),
            (
                "ad13f9ea-2be6-98b8-75f5-04a8e3ccea64",
                "6vkTreYruJh19QSo48zqZA==",
                "be7df8a3667a6a8fd564d0ed81339a95",
                "jYFNf0yf4is=",
            ),
            (
                "13a75306-d118-917b-47a6-c1836442516f",
                "BlOnExjRe5FHpsGDZEJRbw==",
                "8aaad8c4dbdeaccdad2676a1ed38952e",
                "IDRtPgUI/bI=",
            ),
            (
                "ee73564e-c8a8-90f0-78ef-6871fa4be18b",
                "TlZz7qjI8JB472hx+kvhiw==",
                "e44fe1457c5ebcd83eaddcd62caf5518",
                "xDKAY0vZhUU=",
            ),
            (
                "b4c3188b-eddd-453d-9bc2-1cbca7566239",
                "ixjDtN3tPUWbwhy8p1ZiOQ==",
                "6f5a64c5d358a8fc658d5ebc82885673",
                "YTGyL/IwFd4=",
            ),
        ];
        for (uuid, value, key_hex, checksum) in cases {
            let k = kid(uuid);
            assert_eq!(kid_value(&k), value);
            assert_eq!(kid_from_value(value).unwrap(), k);
            assert_eq!(
                B64.encode(key_checksum(&k, &key(key_hex))),
                checksum,
                "{uuid}"
            );
        }
    }

    #[test]
    fn p2_header_object_and_boxes_are_byte_exact() {
        let header = p2_header();
        assert_eq!(header.to_xml(), P2_XML);
        assert_eq!(PlayReadyHeader::parse_xml(P2_XML).unwrap(), header);

        let pro = PlayReadyObject::from_header(&header).to_bytes().unwrap();
        assert_eq!(pro.len(), 654);
        assert_eq!(
            &pro[..10],
            &[0x8e, 0x02, 0, 0, 0x01, 0, 0x01, 0, 0x84, 0x02]
        );

        let v1 = playready_pssh(&header, true).unwrap().to_bytes();
        assert_eq!(v1.len(), 706);
        assert_eq!(&v1[..4], &[0, 0, 0x02, 0xc2]);
        assert_eq!(
            hex::encode(&v1[28..48]),
            "000000018ba94ade6eb9449db44fa5beefaf43b0",
            "v1 KID list in UUID order"
        );
        assert_eq!(&v1[48..52], &[0, 0, 0x02, 0x8e]);
        assert_eq!(&v1[52..], &pro[..]);

        let v0 = playready_pssh(&header, false).unwrap().to_bytes();
        assert_eq!(v0.len(), 686);
        assert_eq!(&v0[..4], &[0, 0, 0x02, 0xae]);
        assert_eq!(&v0[32..], &pro[..]);
    }

    #[test]
    fn axinom_4_0_object_is_reproduced_byte_for_byte() {
        let bytes = B64.decode(COMPLEX_PRO).unwrap();
        let pro = PlayReadyObject::parse(&bytes).unwrap();
        assert_eq!(pro.records.len(), 1);
        let header = pro.header().unwrap().unwrap();
        assert_eq!(header.version, PlayReadyHeaderVersion::V4_0);
        assert_eq!(
            header.kids,
            vec![PlayReadyKid {
                kid: kid("b4c3188b-eddd-453d-9bc2-1cbca7566239"),
                algid: Some(AlgId::AesCtr),
                checksum: None
            }]
        );
        assert_eq!(
            PlayReadyObject::from_header(&header).to_bytes().unwrap(),
            bytes
        );
    }

    #[test]
    fn aws_doc_object_parses_with_checksum_and_escaped_url() {
        let bytes = B64.decode(AWS_PRO).unwrap();
        assert_eq!(bytes.len(), 778);
        let header = PlayReadyObject::parse(&bytes)
            .unwrap()
            .header()
            .unwrap()
            .unwrap();
        assert_eq!(
            header.key_ids(),
            vec![kid("b6e16839-eebd-4ff6-ab76-8d482d8d2b6b")]
        );
        assert_eq!(
            header.kids[0].checksum.map(|c| B64.encode(c)).as_deref(),
            Some("B3A6A3xmtdI=")
        );
        assert_eq!(
            header.la_url.as_deref(),
            Some(
                "http://playready.directtaps.net/pr/svc/rightsmanager.asmx?PlayRight=1&amp;amp;UseSimpleNonPersistentLicense=1"
            )
        );
        // The writer escapes `&` once per level, so the doc's text comes back unchanged.
        assert_eq!(
            PlayReadyObject::from_header(&header).to_bytes().unwrap(),
            bytes
        );
    }

    #[test]
    fn header_for_follows_shaka_rules() {
        let k1 = kid("09e091ab-f838-41d2-9e35-58531fd19ec7");
        let key1 = key("9cb061164b7013eaefcc7d6d18424c2c");
        let k2 = kid("8ba94ade-6eb9-449d-b44f-a5beefaf43b0");
        let key2 = key("DBFD6922C321C4BB486F4A1C44097ED6");

        let one = playready_header_for(
            &[(k1, &key1)],
            EncryptionScheme::Cenc,
            Some("https://lic.example/pr?a=1&b=2"),
        );
        assert_eq!(
            one.to_xml(),
            concat!(
                r#"<WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.0.0.0"><DATA>"#,
                "<PROTECTINFO><KEYLEN>16</KEYLEN><ALGID>AESCTR</ALGID></PROTECTINFO>",
                "<KID>q5HgCTj40kGeNVhTH9Gexw==</KID><CHECKSUM>w+OZVr8vzrQ=</CHECKSUM>",
                "<LA_URL>https://lic.example/pr?a=1&amp;b=2</LA_URL></DATA></WRMHEADER>"
            )
        );
        one.validate().unwrap();

        let two = playready_header_for(&[(k1, &key1), (k2, &key2)], EncryptionScheme::Cens, None);
        assert_eq!(
            two.to_xml(),
            concat!(
                r#"<WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.2.0.0"><DATA>"#,
                r#"<PROTECTINFO><KIDS><KID ALGID="AESCTR" CHECKSUM="w+OZVr8vzrQ=" VALUE="q5HgCTj40kGeNVhTH9Gexw=="></KID>"#,
                r#"<KID ALGID="AESCTR" CHECKSUM="Me48z71nuqY=" VALUE="3kqpi7lunUS0T6W+769DsA=="></KID></KIDS></PROTECTINFO>"#,
                "</DATA></WRMHEADER>"
            )
        );
        two.validate().unwrap();

        let cbcs = playready_header_for(&[(k2, &key2)], EncryptionScheme::Cbcs, None);
        assert_eq!(
            cbcs.to_xml(),
            concat!(
                r#"<WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.3.0.0"><DATA>"#,
                r#"<PROTECTINFO><KIDS><KID ALGID="AESCBC" VALUE="3kqpi7lunUS0T6W+769DsA=="></KID></KIDS></PROTECTINFO>"#,
                "</DATA></WRMHEADER>"
            )
        );
        cbcs.validate().unwrap();
        assert_eq!(
            playready_header_for(&[(k2, &key2)], EncryptionScheme::Cbc1, None),
            cbcs
        );
    }

    #[test]
    fn parse_accepts_4_1_decryptor_setup_custom_attributes_and_a_declaration() {
        let xml = concat!(
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-16\"?>\n",
            r#"<WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.1.0.0"><DATA>"#,
            r#"<PROTECTINFO><KID VALUE="q5HgCTj40kGeNVhTH9Gexw==" ALGID="AESCTR"></KID></PROTECTINFO>"#,
            "<LA_URL> https://a.example/x </LA_URL><LUI_URL>https://ui.example</LUI_URL><DS_ID>AH+03juKbUGbHl1V/QIwRA==</DS_ID>",
            "<CUSTOMATTRIBUTES><IIS_DRM_VERSION>8.1</IIS_DRM_VERSION><!-- note --></CUSTOMATTRIBUTES>",
            "<DECRYPTORSETUP>ONDEMAND</DECRYPTORSETUP><UNKNOWN/></DATA></WRMHEADER>"
        );
        let h = PlayReadyHeader::parse_xml(xml).unwrap();
        assert_eq!(h.version, PlayReadyHeaderVersion::V4_1);
        assert_eq!(
            h.key_ids(),
            vec![kid("09e091ab-f838-41d2-9e35-58531fd19ec7")]
        );
        assert_eq!(h.kids[0].algid, Some(AlgId::AesCtr));
        assert_eq!(h.la_url.as_deref(), Some("https://a.example/x"));
        assert_eq!(h.lui_url.as_deref(), Some("https://ui.example"));
        assert_eq!(h.ds_id.as_deref(), Some("AH+03juKbUGbHl1V/QIwRA=="));
        assert_eq!(
            h.custom_attributes_xml.as_deref(),
            Some("<IIS_DRM_VERSION>8.1</IIS_DRM_VERSION><!-- note -->")
        );
        assert!(h.decryptor_setup_ondemand);
        h.validate().unwrap();
        assert!(
            h.to_xml()
                .contains(r#"<KID ALGID="AESCTR" VALUE="q5HgCTj40kGeNVhTH9Gexw=="></KID>"#)
        );
    }

    #[test]
    fn parse_rejects_malformed_headers() {
        for bad in [
            "not xml",
            "<OTHER version=\"4.0.0.0\"><DATA/></OTHER>",
            "<WRMHEADER><DATA/></WRMHEADER>",
            "<WRMHEADER version=\"5.0.0.0\"><DATA/></WRMHEADER>",
            "<WRMHEADER version=\"4.0.0.0\"></WRMHEADER>",
            "<WRMHEADER version=\"4.0.0.0\"><DATA><KID>short</KID></DATA></WRMHEADER>",
            "<WRMHEADER version=\"4.0.0.0\"><DATA><CHECKSUM>w+OZVr8vzrQ=</CHECKSUM></DATA></WRMHEADER>",
            "<WRMHEADER version=\"4.2.0.0\"><DATA><PROTECTINFO><KIDS><KID ALGID=\"X\" VALUE=\"q5HgCTj40kGeNVhTH9Gexw==\"></KID></KIDS></PROTECTINFO></DATA></WRMHEADER>",
            "<WRMHEADER version=\"4.2.0.0\"><DATA><PROTECTINFO><KIDS><KID CHECKSUM=\"AAAA\" VALUE=\"q5HgCTj40kGeNVhTH9Gexw==\"></KID></KIDS></PROTECTINFO></DATA></WRMHEADER>",
            "<!DOCTYPE x [<!ENTITY e \"x\">]><WRMHEADER version=\"4.0.0.0\"><DATA/></WRMHEADER>",
        ] {
            assert!(PlayReadyHeader::parse_xml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_enforces_version_rules() {
        let k = PlayReadyKid {
            kid: KeyId::from_bytes([1; 16]),
            algid: Some(AlgId::AesCtr),
            checksum: None,
        };
        let mut h = p2_header();
        h.version = PlayReadyHeaderVersion::V4_0;
        h.kids.push(k.clone());
        assert!(h.validate().is_err(), "4.0 with two keys");
        h.version = PlayReadyHeaderVersion::V4_1;
        assert!(h.validate().is_err(), "4.1 with two keys");
        h.version = PlayReadyHeaderVersion::V4_2;
        h.validate().unwrap();
        h.kids[1].algid = Some(AlgId::AesCbc);
        assert!(h.validate().is_err(), "AESCBC before 4.3");
        h.version = PlayReadyHeaderVersion::V4_3;
        assert!(h.validate().is_err(), "mixed ALGIDs in 4.3");
        h.kids[0].algid = Some(AlgId::AesCbc);
        assert!(h.validate().is_err(), "AESCBC with a checksum");
        h.kids[0].checksum = None;
        h.validate().unwrap();
        h.la_url = Some(String::new());
        assert!(h.validate().is_err(), "empty LA_URL");
        assert!(playready_pssh(&h, false).is_err());
    }

    #[test]
    fn object_parse_is_strict() {
        let good = PlayReadyObject::from_header(&p2_header())
            .to_bytes()
            .unwrap();
        let mut wrong_len = good.clone();
        wrong_len[0] += 1;
        assert!(PlayReadyObject::parse(&wrong_len).is_err());
        let mut wrong_count = good.clone();
        wrong_count[4] = 2;
        assert!(PlayReadyObject::parse(&wrong_count).is_err());
        let mut wrong_record_len = good.clone();
        wrong_record_len[8] -= 2;
        assert!(PlayReadyObject::parse(&wrong_record_len).is_err());
        assert!(PlayReadyObject::parse(&good[..5]).is_err());
        // An object without header record has no header; an odd-length header is an error.
        let els = PlayReadyObject {
            records: vec![PlayReadyRecord {
                record_type: 3,
                value: vec![],
            }],
        };
        assert!(els.header().is_none());
        let odd = PlayReadyObject {
            records: vec![PlayReadyRecord {
                record_type: 1,
                value: vec![b'<'],
            }],
        };
        assert!(odd.header().unwrap().is_err());
        let too_big = PlayReadyObject {
            records: vec![PlayReadyRecord {
                record_type: 1,
                value: vec![0; 70_000],
            }],
        };
        assert!(matches!(too_big.to_bytes(), Err(DrmError::TooLarge { .. })));
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9:/?=&<>\"'. _-]{1,40}"
            .prop_map(|s| s.trim().to_owned())
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    fn arb_kid(algid: BoxedStrategy<Option<AlgId>>) -> impl Strategy<Value = PlayReadyKid> {
        (
            any::<[u8; 16]>(),
            algid,
            proptest::option::of(any::<[u8; 8]>()),
        )
            .prop_map(|(k, algid, checksum)| PlayReadyKid {
                kid: KeyId::from_bytes(k),
                algid,
                checksum,
            })
    }

    fn arb_header() -> impl Strategy<Value = PlayReadyHeader> {
        let any_algid = || {
            proptest::option::of(prop_oneof![
                Just(AlgId::AesCtr),
                Just(AlgId::AesCbc),
                Just(AlgId::Cocktail)
            ])
            .boxed()
        };
        let kids = prop_oneof![
            // 4.0: one key; the single header-level ALGID is always written.
            arb_kid(prop_oneof![Just(Some(AlgId::AesCtr)), Just(Some(AlgId::Cocktail))].boxed())
                .prop_map(|k| (PlayReadyHeaderVersion::V4_0, vec![k])),
            proptest::collection::vec(arb_kid(any_algid()), 0..=1)
                .prop_map(|k| (PlayReadyHeaderVersion::V4_1, k)),
            proptest::collection::vec(arb_kid(any_algid()), 0..4)
                .prop_map(|k| (PlayReadyHeaderVersion::V4_2, k)),
            proptest::collection::vec(arb_kid(any_algid()), 0..4)
                .prop_map(|k| (PlayReadyHeaderVersion::V4_3, k)),
        ];
        let custom = proptest::option::of(prop_oneof![
            Just(String::new()),
            Just("<CONTENTID>abc</CONTENTID>".to_owned()),
            Just("text &amp; more".to_owned()),
            Just("<a x=\"1\"><b/></a><!-- c -->tail".to_owned()),
        ]);
        (
            kids,
            proptest::option::of(arb_text()),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_text()),
            custom,
            any::<bool>(),
        )
            .prop_map(
                |(
                    (version, kids),
                    la_url,
                    lui_url,
                    ds_id,
                    custom_attributes_xml,
                    decryptor_setup_ondemand,
                )| {
                    PlayReadyHeader {
                        version,
                        kids,
                        la_url,
                        lui_url,
                        ds_id,
                        custom_attributes_xml,
                        decryptor_setup_ondemand,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn header_parse_inverts_to_xml(h in arb_header()) {
            prop_assert_eq!(PlayReadyHeader::parse_xml(&h.to_xml()).unwrap(), h);
        }

        #[test]
        fn object_round_trips(h in arb_header(), extra in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..3)) {
            let mut pro = PlayReadyObject::from_header(&h);
            pro.records.extend(extra.into_iter().map(|(record_type, value)| PlayReadyRecord { record_type, value }));
            let bytes = pro.to_bytes().unwrap();
            let parsed = PlayReadyObject::parse(&bytes).unwrap();
            prop_assert_eq!(&parsed, &pro);
            prop_assert_eq!(parsed.header().unwrap().unwrap(), h);
        }

        #[test]
        fn object_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(pro) = PlayReadyObject::parse(&bytes) {
                let _ = pro.header();
            }
        }

        #[test]
        fn header_parse_never_panics(s in "\\PC{0,200}") {
            let _ = PlayReadyHeader::parse_xml(&s);
        }
    }
}
