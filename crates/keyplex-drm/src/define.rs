//! DRM systems defined by a tenant rather than built into keyplex (Irdeto, Conax, Verimatrix,
//! regional DRMs): a system id, a PSSH data template and optional DASH and HLS signaling.
//!
//! A definition is checked once, when it is loaded ([`DrmDefinition::new`]): a malformed
//! system id, a built-in system id without `override`, an unknown placeholder or a binary
//! template that could not decode are refused there, so that rendering a key's signaling
//! ([`DrmDefinition::render`]) cannot fail.
//!
//! Nagra PRM is one of these too: [`DrmDefinition::nagra_prm`] is keyplex's default
//! definition of it, which a tenant may override.

use std::fmt;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::KeyId;
use uuid::Uuid;

use crate::dash::CENC_NAMESPACE;
use crate::hls::{HlsKeyLine, HlsMethod};
use crate::signal::{DrmSignaling, SignalOptions};
use crate::template::{PSSH_DATA_PLACEHOLDERS, Part, Placeholder, Template, TemplateValues};
use crate::xml::escape_attr;
use crate::{DrmError, DrmSystem, PsshBox};

/// Longest definition name (it is a URL path segment of the admin API).
pub const MAX_NAME_LEN: usize = 64;
/// Largest PSSH data a definition may produce from its literal text, and longest template.
pub const MAX_TEMPLATE_LEN: usize = 64 * 1024;

/// How the expanded `pssh_data` template becomes the bytes of the PSSH box's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PsshDataEncoding {
    /// The expanded text's UTF-8 bytes; every key placeholder may appear.
    Utf8,
    /// base64 text. Each literal run of the template must be whole base64 (groups of four
    /// characters), checked at load; placeholders give the bytes they encode:
    /// `{kid_base64}` the 16 key-id bytes, `{content_id_base64}` the content id's bytes.
    Base64,
    /// Hexadecimal text. Each literal run must be whole bytes of hex; `{kid_hex}` gives the
    /// 16 key-id bytes.
    Hex,
}

impl PsshDataEncoding {
    pub const NAMES: [&str; 3] = ["utf8", "base64", "hex"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "utf8" => Some(Self::Utf8),
            "base64" => Some(Self::Base64),
            "hex" => Some(Self::Hex),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Utf8 => "utf8",
            Self::Base64 => "base64",
            Self::Hex => "hex",
        }
    }

    /// The placeholders a template in this encoding may name: in base64 and hex only those
    /// whose values are of that encoding, so that the whole always decodes.
    const fn placeholders(self) -> &'static [Placeholder] {
        match self {
            Self::Utf8 => PSSH_DATA_PLACEHOLDERS,
            Self::Base64 => &[Placeholder::KidBase64, Placeholder::ContentIdBase64],
            Self::Hex => &[Placeholder::KidHex],
        }
    }
}

/// The placeholders of `hls_uri` and `content_protection`: the key's values and the box.
pub const SIGNALING_PLACEHOLDERS: &[Placeholder] = &Placeholder::ALL;

/// The definition as written (configuration file or admin API), before it is checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefinitionText<'a> {
    pub name: &'a str,
    pub system_id: &'a str,
    /// The definition replaces a built-in system's signaling (`override = true`).
    pub override_builtin: bool,
    pub pssh_version: u8,
    pub pssh_data: &'a str,
    /// `utf8`, `base64` or `hex`.
    pub pssh_data_encoding: &'a str,
    pub dash_value: Option<&'a str>,
    pub hls_keyformat: Option<&'a str>,
    pub hls_uri: Option<&'a str>,
    pub la_url: Option<&'a str>,
    /// A whole DASH `<ContentProtection>` element instead of the standard one.
    pub content_protection: Option<&'a str>,
}

/// One piece of a binary (base64 or hex) PSSH data template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum BinaryPart {
    Bytes(Vec<u8>),
    KidBytes,
    ContentIdBytes,
}

/// Where the PSSH box's data comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PsshData {
    Text(Template),
    Binary(Vec<BinaryPart>),
    /// keyplex's Nagra PRM data ([`crate::nagra::prm_pssh_data`]): base64url of JSON, which
    /// no template encoding expresses.
    NagraPrmJson,
}

/// A checked DRM system definition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DrmDefinition {
    name: String,
    system_id: Uuid,
    overrides: Option<DrmSystem>,
    pssh_version: u8,
    pssh_data: PsshData,
    encoding: PsshDataEncoding,
    dash_value: Option<String>,
    hls_keyformat: Option<String>,
    hls_uri: Option<Template>,
    la_url: Option<String>,
    content_protection: Option<Template>,
}

impl DrmDefinition {
    /// Checks a definition: name, system id (and whether it is a built-in one), templates.
    pub fn new(text: &DefinitionText<'_>) -> Result<Self, DrmError> {
        let fail = |message: String| DrmError::Definition {
            name: keyplex_types::truncate_chars(text.name, MAX_NAME_LEN),
            message,
        };
        if !is_valid_name(text.name) {
            return Err(fail(format!(
                "the name must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
            )));
        }
        let system_id = parse_system_id(text.system_id).ok_or_else(|| {
            fail(format!(
                "system_id {:?} is not a DRM system id (a UUID such as 80a6be7e-1448-4c37-9e70-d5aebe04c8d2)",
                keyplex_types::truncate_for_message(text.system_id)
            ))
        })?;
        let builtin = DrmSystem::from_system_id(&system_id);
        let overrides = match (builtin, text.override_builtin) {
            (Some(system), true) => Some(system),
            (Some(system), false) => {
                return Err(fail(format!(
                    "system_id {system_id} is {system}'s, which keyplex builds in: set override = true to replace its signaling for this tenant"
                )));
            }
            (None, true) => {
                return Err(fail(format!(
                    "override = true, but {system_id} is not a system keyplex builds in"
                )));
            }
            (None, false) => None,
        };
        if text.pssh_version > 1 {
            return Err(fail(format!(
                "pssh_version {} is not 0 or 1",
                text.pssh_version
            )));
        }
        let encoding = PsshDataEncoding::parse(text.pssh_data_encoding).ok_or_else(|| {
            fail(format!(
                "pssh_data_encoding {:?} is not one of {}",
                keyplex_types::truncate_chars(text.pssh_data_encoding, 32),
                PsshDataEncoding::NAMES.join(", ")
            ))
        })?;
        let too_long = |field: &str, value: &str| {
            (value.len() > MAX_TEMPLATE_LEN).then(|| {
                fail(format!(
                    "{field} is longer than {MAX_TEMPLATE_LEN} bytes ({} bytes)",
                    value.len()
                ))
            })
        };
        for (field, value) in [
            ("pssh_data", Some(text.pssh_data)),
            ("dash_value", text.dash_value),
            ("hls_keyformat", text.hls_keyformat),
            ("hls_uri", text.hls_uri),
            ("la_url", text.la_url),
            ("content_protection", text.content_protection),
        ] {
            if let Some(err) = value.and_then(|v| too_long(field, v)) {
                return Err(err);
            }
        }
        let pssh_template = Template::parse(text.pssh_data, encoding.placeholders()).map_err(
            |e| match encoding {
                PsshDataEncoding::Utf8 => fail(format!("pssh_data: {e}")),
                _ => fail(format!(
                    "pssh_data ({} encoding): {e}; other placeholders need pssh_data_encoding = \"utf8\"",
                    encoding.name()
                )),
            },
        )?;
        let pssh_data = match encoding {
            PsshDataEncoding::Utf8 => PsshData::Text(pssh_template),
            PsshDataEncoding::Base64 | PsshDataEncoding::Hex => PsshData::Binary(
                binary_parts(&pssh_template, encoding)
                    .map_err(|message| fail(format!("pssh_data: {message}")))?,
            ),
        };
        let signaling_template = |field: &str, value: Option<&str>| {
            value
                .map(|t| {
                    Template::parse(t, SIGNALING_PLACEHOLDERS)
                        .map_err(|e| fail(format!("{field}: {e}")))
                })
                .transpose()
        };
        for (field, value) in [
            ("dash_value", text.dash_value),
            ("hls_keyformat", text.hls_keyformat),
        ] {
            if value.is_some_and(|v| v.trim().is_empty() || v.contains(['"', '\n', '\r'])) {
                return Err(fail(format!(
                    "{field} must not be empty or hold quotes or line breaks"
                )));
            }
        }
        if let Some(url) = text.la_url
            && (url.trim().is_empty() || url.contains(['"', '\n', '\r', '<', '>']))
        {
            return Err(fail(
                "la_url must be a URL (no quotes, angle brackets or line breaks)".into(),
            ));
        }
        Ok(Self {
            name: text.name.to_owned(),
            system_id,
            overrides,
            pssh_version: text.pssh_version,
            pssh_data,
            encoding,
            dash_value: text.dash_value.map(str::to_owned),
            hls_keyformat: text.hls_keyformat.map(str::to_owned),
            hls_uri: signaling_template("hls_uri", text.hls_uri)?,
            la_url: text.la_url.map(str::to_owned),
            content_protection: signaling_template("content_protection", text.content_protection)?,
        })
    }

    /// keyplex's default Nagra PRM signaling as a definition: a v0 box whose data is the form
    /// the public parsers read ([`crate::nagra`]), the standard DASH element, and HLS as
    /// Widevine's (the box as a data URI, `KEYFORMAT="urn:uuid:<system id>"`: PRM has no
    /// public HLS form).
    pub fn nagra_prm() -> Arc<Self> {
        static PRM: LazyLock<Arc<DrmDefinition>> = LazyLock::new(|| {
            let system = DrmSystem::NagraPrm;
            Arc::new(DrmDefinition {
                name: "nagra-prm".to_owned(),
                system_id: system.system_id(),
                overrides: Some(system),
                pssh_version: 0,
                pssh_data: PsshData::NagraPrmJson,
                encoding: PsshDataEncoding::Utf8,
                dash_value: Some(system.dash_value().to_owned()),
                hls_keyformat: Some(system.scheme_id_uri()),
                hls_uri: None,
                la_url: None,
                content_protection: None,
            })
        });
        PRM.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub const fn system_id(&self) -> Uuid {
        self.system_id
    }

    /// The built-in system whose signaling this definition replaces, if any.
    pub const fn overrides(&self) -> Option<DrmSystem> {
        self.overrides
    }

    pub fn dash_value(&self) -> Option<&str> {
        self.dash_value.as_deref()
    }

    pub fn la_url(&self) -> Option<&str> {
        self.la_url.as_deref()
    }

    pub const fn pssh_version(&self) -> u8 {
        self.pssh_version
    }

    pub const fn pssh_data_encoding(&self) -> PsshDataEncoding {
        self.encoding
    }

    /// Whether the definition has HLS signaling (`hls_keyformat` is set).
    pub const fn has_hls(&self) -> bool {
        self.hls_keyformat.is_some()
    }

    /// The signaling of this system for a key (`default_kid`; a v1 box lists `kids`, which
    /// should include it). Every template was checked when the definition was made: this
    /// cannot fail.
    ///
    /// * PSSH: a box of `pssh_version` with the system id and the expanded data.
    /// * DASH: `ContentProtectionData` is the `cenc:pssh` fragment; the element is the
    ///   standard `<ContentProtection schemeIdUri="urn:uuid:…" value="dash_value">` around
    ///   the box, or the expanded `content_protection`.
    /// * HLS (only with `hls_keyformat`, and only for cbcs and cenc: HLS has no method for
    ///   cens and cbc1): `SAMPLE-AES`/`SAMPLE-AES-CTR` with the expanded `hls_uri`, or the
    ///   box as a data URI, `KEYID` and the `KEYFORMAT`.
    pub fn render(
        &self,
        default_kid: KeyId,
        kids: &[KeyId],
        opts: &SignalOptions<'_>,
    ) -> DrmSignaling {
        let mut values = TemplateValues {
            kid: default_kid,
            content_id: opts.content_id,
            period: opts.crypto_period_index.map(u64::from),
            track_type: opts.track_type,
            la_url: self.la_url.as_deref(),
            pssh: None,
            pssh_data: None,
        };
        let data = match &self.pssh_data {
            PsshData::Text(template) => template.expand(&values).into_bytes(),
            PsshData::Binary(parts) => {
                let mut out = Vec::new();
                for part in parts {
                    match part {
                        BinaryPart::Bytes(b) => out.extend_from_slice(b),
                        BinaryPart::KidBytes => out.extend_from_slice(default_kid.as_bytes()),
                        BinaryPart::ContentIdBytes => {
                            out.extend_from_slice(opts.content_id.as_bytes());
                        }
                    }
                }
                out
            }
            PsshData::NagraPrmJson => crate::nagra::prm_pssh_data(opts.content_id, &default_kid),
        };
        let data_b64 = B64.encode(&data);
        let pssh = if self.pssh_version == 1 {
            let mut listed = kids.to_vec();
            if !listed.contains(&default_kid) {
                listed.insert(0, default_kid);
            }
            PsshBox::v1(self.system_id, listed, data)
        } else {
            PsshBox::v0(self.system_id, data)
        };
        let pssh_b64 = pssh.to_base64();
        values.pssh = Some(&pssh_b64);
        values.pssh_data = Some(&data_b64);
        let mut out = DrmSignaling {
            system: DrmSystem::from_system_id(&self.system_id),
            system_id: self.system_id,
            pssh: None,
            content_protection_data: None,
            content_protection_element: None,
            hls_key_uri: None,
            hls_keyformat: None,
            hls_keyformatversions: None,
            hls_media: None,
            hls_master: None,
            smooth_streaming_header: None,
        };
        if opts.forms.dash {
            out.content_protection_data = Some(format!(
                r#"<cenc:pssh xmlns:cenc="{CENC_NAMESPACE}">{pssh_b64}</cenc:pssh>"#
            ));
            out.content_protection_element = Some(match &self.content_protection {
                Some(template) => template.expand(&values),
                None => {
                    let value = self
                        .dash_value
                        .as_deref()
                        .map(|v| format!(r#" value="{}""#, escape_attr(v)))
                        .unwrap_or_default();
                    format!(
                        r#"<ContentProtection schemeIdUri="urn:uuid:{}"{value}><cenc:pssh>{pssh_b64}</cenc:pssh></ContentProtection>"#,
                        self.system_id.hyphenated()
                    )
                }
            });
        }
        if opts.forms.hls
            && let Some(keyformat) = &self.hls_keyformat
            && let Some(method) = HlsMethod::for_scheme(opts.scheme)
        {
            let mut line =
                HlsKeyLine::pssh_data_uri(method, &pssh_b64, default_kid, keyformat.clone());
            if let Some(uri) = &self.hls_uri {
                line.uri = uri.expand(&values);
            }
            out.hls_key_uri = Some(line.uri.clone());
            out.hls_keyformat = line.keyformat.clone();
            out.hls_keyformatversions = line.keyformatversions.clone();
            out.hls_media = Some(line.to_ext_x_key());
            out.hls_master = Some(line.to_ext_x_session_key());
        }
        out.pssh = Some(pssh.to_bytes());
        out
    }
}

/// A name usable as a URL path segment and a config key: `[a-z0-9][a-z0-9_-]*`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && matches!(b, b'-' | b'_'))
        })
}

/// A system id as DASH-IF lists them: `8-4-4-4-12` hex digits (either case), not all zero.
pub fn parse_system_id(text: &str) -> Option<Uuid> {
    let text = text.trim();
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok().filter(|id| !id.is_nil())
}

/// The pieces of a base64 or hex template, with the literal runs decoded now.
fn binary_parts(
    template: &Template,
    encoding: PsshDataEncoding,
) -> Result<Vec<BinaryPart>, String> {
    let mut out = Vec::new();
    for part in template.parts() {
        out.push(match part {
            Part::Text(text) => BinaryPart::Bytes(decode_literal(text, encoding)?),
            Part::Value(Placeholder::KidBase64 | Placeholder::KidHex) => BinaryPart::KidBytes,
            Part::Value(Placeholder::ContentIdBase64) => BinaryPart::ContentIdBytes,
            // The parser allowed only the encoding's placeholders.
            Part::Value(other) => {
                return Err(format!(
                    "{{{}}} cannot appear in {} data",
                    other.name(),
                    encoding.name()
                ));
            }
        });
    }
    Ok(out)
}

fn decode_literal(text: &str, encoding: PsshDataEncoding) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let shown = keyplex_types::truncate_chars(&compact, 40);
    match encoding {
        PsshDataEncoding::Hex => hex::decode(&compact)
            .map_err(|_| format!("{shown:?} is not whole bytes of hex (two digits per byte)")),
        PsshDataEncoding::Base64 => B64.decode(&compact).map_err(|_| {
            format!(
                "{shown:?} is not whole base64 (each run of text between placeholders must be groups of four characters)"
            )
        }),
        PsshDataEncoding::Utf8 => Ok(compact.into_bytes()),
    }
}

/// A DRM system as an interface names it: one keyplex builds in, or one the tenant defined.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DrmIdentity {
    BuiltIn(DrmSystem),
    Defined(Arc<DrmDefinition>),
}

impl From<DrmSystem> for DrmIdentity {
    fn from(system: DrmSystem) -> Self {
        Self::BuiltIn(system)
    }
}

impl DrmIdentity {
    pub fn system_id(&self) -> Uuid {
        match self {
            Self::BuiltIn(s) => s.system_id(),
            Self::Defined(d) => d.system_id,
        }
    }

    /// The built-in system of this id (also for a definition that overrides one).
    pub fn builtin(&self) -> Option<DrmSystem> {
        match self {
            Self::BuiltIn(s) => Some(*s),
            Self::Defined(d) => d.overrides,
        }
    }

    /// `ContentProtection@value` / CPIX `DRMSystem@name`, where the system has one.
    pub fn dash_value(&self) -> Option<&str> {
        match self {
            Self::BuiltIn(s) => Some(s.dash_value()),
            Self::Defined(d) => d.dash_value.as_deref(),
        }
    }
}

impl fmt::Display for DrmIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BuiltIn(s) => fmt::Display::fmt(s, f),
            Self::Defined(d) => f.write_str(&d.name),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use keyplex_types::EncryptionScheme;

    use super::*;
    use crate::signal::SignalForms;

    const IRDETO: &str = "80a6be7e-1448-4c37-9e70-d5aebe04c8d2";
    const KID: &str = "b4c3188b-eddd-453d-9bc2-1cbca7566239";

    fn opts(scheme: EncryptionScheme) -> SignalOptions<'static> {
        SignalOptions {
            scheme,
            content_id: "movie-1",
            widevine_provider: None,
            playready_la_url: None,
            clearkey_la_url: None,
            hls_aes128_key_url: None,
            crypto_period_index: None,
            track_type: Some("HD"),
            fairplay_uri: None,
            forms: SignalForms::ALL,
        }
    }

    fn irdeto() -> DefinitionText<'static> {
        DefinitionText {
            name: "irdeto",
            system_id: IRDETO,
            pssh_version: 1,
            pssh_data: "{kid_base64}",
            pssh_data_encoding: "utf8",
            dash_value: Some("Irdeto"),
            hls_keyformat: Some("com.irdeto.example"),
            hls_uri: Some("skd://{kid_hex}"),
            la_url: Some("https://irdeto.example/licence"),
            ..DefinitionText::default()
        }
    }

    #[test]
    fn renders_a_v1_box_the_independent_parser_reads() {
        let def = DrmDefinition::new(&irdeto()).unwrap();
        let kid: KeyId = KID.parse().unwrap();
        let s = def.render(kid, &[kid], &opts(EncryptionScheme::Cbcs));
        let boxes = pssh_box::from_bytes(s.pssh.as_ref().unwrap()).unwrap();
        let first = boxes.iter().next().unwrap();
        assert_eq!(first.system_id, pssh_box::IRDETO_SYSTEM_ID);
        assert_eq!(first.version, 1);
        assert_eq!(first.key_ids.len(), 1);
        assert_eq!(first.key_ids[0].to_string(), format!("DRMKeyId<{KID}>"));
        let (ours, _) = PsshBox::parse(s.pssh.as_ref().unwrap()).unwrap();
        assert_eq!(ours.data, b"tMMYi+3dRT2bwhy8p1ZiOQ==");
        assert_eq!(s.system, None);
        assert_eq!(s.system_id.to_string(), IRDETO);
        let element = s.content_protection_element.unwrap();
        assert!(
            element.starts_with(&format!(
                r#"<ContentProtection schemeIdUri="urn:uuid:{IRDETO}" value="Irdeto"><cenc:pssh>"#
            )),
            "{element}"
        );
        assert_eq!(
            s.hls_media.as_deref(),
            Some(
                r#"#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://b4c3188beddd453d9bc21cbca7566239",KEYID=0xB4C3188BEDDD453D9BC21CBCA7566239,KEYFORMAT="com.irdeto.example",KEYFORMATVERSIONS="1""#
            )
        );
        // cens has no HLS method; without hls_keyformat there is no HLS at all.
        assert_eq!(
            def.render(kid, &[kid], &opts(EncryptionScheme::Cens))
                .hls_media,
            None
        );
        let no_hls = DrmDefinition::new(&DefinitionText {
            hls_keyformat: None,
            ..irdeto()
        })
        .unwrap();
        assert_eq!(
            no_hls
                .render(kid, &[kid], &opts(EncryptionScheme::Cbcs))
                .hls_media,
            None
        );
    }

    #[test]
    fn every_placeholder_and_the_binary_encodings() {
        let kid: KeyId = KID.parse().unwrap();
        let o = SignalOptions {
            crypto_period_index: Some(7),
            ..opts(EncryptionScheme::Cenc)
        };
        let data = |pssh_data: &str, encoding: &str| {
            let def = DrmDefinition::new(&DefinitionText {
                pssh_version: 0,
                pssh_data,
                pssh_data_encoding: encoding,
                ..irdeto()
            })
            .unwrap();
            let s = def.render(kid, &[kid], &o);
            PsshBox::parse(s.pssh.as_ref().unwrap()).unwrap().0.data
        };
        assert_eq!(
            String::from_utf8(data(
                "{kid}|{kid_hex}|{kid_base64url}|{content_id}|{content_id_base64}|{period}|{track_type}|{la_url}",
                "utf8"
            ))
            .unwrap(),
            "b4c3188b-eddd-453d-9bc2-1cbca7566239|b4c3188beddd453d9bc21cbca7566239|tMMYi-3dRT2bwhy8p1ZiOQ|movie-1|bW92aWUtMQ==|7|HD|https://irdeto.example/licence"
        );
        let mut expected = vec![0x08, 0x01, 0x12, 0x10];
        expected.extend_from_slice(kid.as_bytes());
        assert_eq!(data("08011210{kid_hex}", "hex"), expected);
        assert_eq!(data("CAESEA=={kid_base64}", "base64")[..2], [0x08, 0x01]);
        let mut with_cid = b"\x01\x02\x03".to_vec();
        with_cid.extend_from_slice(b"movie-1");
        assert_eq!(data("AQID{content_id_base64}", "base64"), with_cid);
    }

    #[test]
    fn refuses_what_could_not_render_with_clear_messages() {
        let refused = |text: DefinitionText<'_>, says: &str| {
            let err = DrmDefinition::new(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{err:?} should say {says:?}");
        };
        refused(
            DefinitionText {
                system_id: "80a6be7e-1448-4c37-9e70",
                ..irdeto()
            },
            "is not a DRM system id",
        );
        refused(
            DefinitionText {
                system_id: "00000000-0000-0000-0000-000000000000",
                ..irdeto()
            },
            "is not a DRM system id",
        );
        refused(
            DefinitionText {
                system_id: "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
                ..irdeto()
            },
            "Widevine's, which keyplex builds in: set override = true",
        );
        refused(
            DefinitionText {
                override_builtin: true,
                ..irdeto()
            },
            "is not a system keyplex builds in",
        );
        refused(
            DefinitionText {
                pssh_data: "{key_id}",
                ..irdeto()
            },
            "unknown placeholder {key_id}",
        );
        refused(
            DefinitionText {
                hls_uri: Some("skd://{kid"),
                ..irdeto()
            },
            "hls_uri: unclosed",
        );
        refused(
            DefinitionText {
                pssh_data: "0801{kid}",
                pssh_data_encoding: "hex",
                ..irdeto()
            },
            "other placeholders need pssh_data_encoding = \"utf8\"",
        );
        refused(
            DefinitionText {
                pssh_data: "080{kid_hex}",
                pssh_data_encoding: "hex",
                ..irdeto()
            },
            "not whole bytes of hex",
        );
        refused(
            DefinitionText {
                pssh_data: "CAESEA{kid_base64}",
                pssh_data_encoding: "base64",
                ..irdeto()
            },
            "not whole base64",
        );
        refused(
            DefinitionText {
                pssh_data_encoding: "latin1",
                ..irdeto()
            },
            "not one of utf8, base64, hex",
        );
        refused(
            DefinitionText {
                pssh_version: 2,
                ..irdeto()
            },
            "pssh_version 2",
        );
        refused(
            DefinitionText {
                name: "Irdeto Prod",
                ..irdeto()
            },
            "the name must be",
        );
        // A built-in id with override is accepted, and says what it replaces.
        let prm = DrmDefinition::new(&DefinitionText {
            system_id: "ADB41C24-2DBF-4A6D-958B-4457C0D27B95",
            override_builtin: true,
            ..irdeto()
        })
        .unwrap();
        assert_eq!(prm.overrides(), Some(DrmSystem::NagraPrm));
    }

    #[test]
    fn the_nagra_prm_default_is_what_signal_gave_before_definitions() {
        let kid: KeyId = KID.parse().unwrap();
        let o = SignalOptions {
            content_id: "channel-7",
            ..opts(EncryptionScheme::Cbcs)
        };
        let s = DrmDefinition::nagra_prm().render(kid, &[kid], &o);
        let expected_box = PsshBox::v0(
            DrmSystem::NagraPrm.system_id(),
            crate::nagra::prm_pssh_data("channel-7", &kid),
        );
        assert_eq!(s.pssh, Some(expected_box.to_bytes()));
        assert_eq!(s.system, Some(DrmSystem::NagraPrm));
        assert_eq!(
            s.content_protection_element,
            Some(crate::dash::drm_content_protection_element(
                DrmSystem::NagraPrm,
                Some(&expected_box),
                None,
                None
            ))
        );
        assert_eq!(
            s.content_protection_data,
            Some(crate::dash::content_protection_data(
                DrmSystem::NagraPrm,
                Some(&expected_box),
                None,
                None
            ))
        );
        let line = HlsKeyLine::pssh_data_uri(
            HlsMethod::SampleAes,
            &expected_box.to_base64(),
            kid,
            DrmSystem::NagraPrm.scheme_id_uri(),
        );
        assert_eq!(s.hls_media, Some(line.to_ext_x_key()));
    }

    proptest::proptest! {
        /// Whatever an operator writes, checking never panics, and what it accepts renders
        /// for any key, content and period (the promise that lets `render` be infallible):
        /// the box parses back with the definition's id and version.
        #[test]
        fn accepted_definitions_render_for_any_key(
            pssh_data in "[ -~]{0,40}",
            encoding in proptest::sample::select(vec!["utf8", "base64", "hex"]),
            hls_uri in proptest::option::of("[ -~]{0,20}"),
            kid in proptest::prelude::any::<[u8; 16]>(),
            content_id in "[A-Za-z0-9_.:-]{1,30}",
            period in proptest::option::of(proptest::prelude::any::<u32>()),
            version in 0u8..3,
        ) {
            let text = DefinitionText {
                pssh_version: version,
                pssh_data: &pssh_data,
                pssh_data_encoding: encoding,
                hls_uri: hls_uri.as_deref(),
                ..irdeto()
            };
            if let Ok(def) = DrmDefinition::new(&text) {
                let kid = KeyId::from_bytes(kid);
                let o = SignalOptions {
                    content_id: &content_id,
                    crypto_period_index: period,
                    ..opts(EncryptionScheme::Cbcs)
                };
                let s = def.render(kid, &[kid], &o);
                let (pssh, used) = PsshBox::parse(s.pssh.as_ref().unwrap()).unwrap();
                proptest::prop_assert_eq!(used, s.pssh.as_ref().unwrap().len());
                proptest::prop_assert_eq!(pssh.system_id.to_string(), IRDETO);
                proptest::prop_assert_eq!(pssh.version, version);
                proptest::prop_assert!(s.hls_media.is_some());
            }
        }
    }
}
