//! Text templates with `{name}` placeholders, for signaling whose form the operator's
//! licence service decides: the FairPlay key URI (`fairplay_uri_template`, every KSM reads
//! its own `skd://` form) and the PSSH data, HLS key URI and DASH element of tenant-defined
//! DRM systems ([`crate::define`]).
//!
//! A template is checked once, when the configuration is loaded ([`Template::parse`]): an
//! unknown placeholder or an unclosed brace is refused there, so expanding at request time
//! ([`Template::expand`]) cannot fail.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keyplex_types::KeyId;

/// A placeholder a template may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// The key id as a UUID, `8-4-4-4-12`, lowercase.
    Kid,
    /// The key id as 32 lowercase hex digits.
    KidHex,
    /// The 16 key-id bytes in standard base64 (padded): PallyCon's `skd://` form.
    KidBase64,
    /// The 16 key-id bytes in base64url without padding.
    KidBase64Url,
    /// The content id as the packager sent it.
    ContentId,
    /// The content id's bytes in standard base64.
    ContentIdBase64,
    /// The key period index; empty for VOD keys and keys of time periods.
    Period,
    /// The key's track type (`SD`, `HD`, `AUDIO`…); empty when the key has none.
    TrackType,
    /// The licence URL configured for the DRM system; empty when none is.
    LaUrl,
    /// base64 of the whole PSSH box of a defined DRM system (its HLS URI and DASH element
    /// only: the box is built from the other placeholders first).
    Pssh,
    /// base64 of that box's data (HLS URI and DASH element only).
    PsshData,
}

impl Placeholder {
    pub const ALL: [Self; 11] = [
        Self::Kid,
        Self::KidHex,
        Self::KidBase64,
        Self::KidBase64Url,
        Self::ContentId,
        Self::ContentIdBase64,
        Self::Period,
        Self::TrackType,
        Self::LaUrl,
        Self::Pssh,
        Self::PsshData,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Kid => "kid",
            Self::KidHex => "kid_hex",
            Self::KidBase64 => "kid_base64",
            Self::KidBase64Url => "kid_base64url",
            Self::ContentId => "content_id",
            Self::ContentIdBase64 => "content_id_base64",
            Self::Period => "period",
            Self::TrackType => "track_type",
            Self::LaUrl => "la_url",
            Self::Pssh => "pssh",
            Self::PsshData => "pssh_data",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The placeholders of `fairplay_uri_template`.
pub const FAIRPLAY_URI_PLACEHOLDERS: &[Placeholder] = &[
    Placeholder::Kid,
    Placeholder::KidHex,
    Placeholder::KidBase64,
    Placeholder::ContentId,
    Placeholder::Period,
];

/// The placeholders of the PSSH data template of a defined DRM system (in UTF-8 text: the
/// binary encodings take fewer, see [`crate::define`]).
pub const PSSH_DATA_PLACEHOLDERS: &[Placeholder] = &[
    Placeholder::Kid,
    Placeholder::KidHex,
    Placeholder::KidBase64,
    Placeholder::KidBase64Url,
    Placeholder::ContentId,
    Placeholder::ContentIdBase64,
    Placeholder::Period,
    Placeholder::TrackType,
    Placeholder::LaUrl,
];

/// What the placeholders stand for when one key is signaled.
#[derive(Clone, Copy, Debug)]
pub struct TemplateValues<'a> {
    pub kid: KeyId,
    pub content_id: &'a str,
    pub period: Option<u64>,
    pub track_type: Option<&'a str>,
    pub la_url: Option<&'a str>,
    /// base64 of the PSSH box, where it exists before the template is expanded.
    pub pssh: Option<&'a str>,
    /// base64 of the PSSH box's data.
    pub pssh_data: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    Text(String),
    Value(Placeholder),
}

/// A checked template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{name}}} (known: {known})")]
    UnknownPlaceholder { name: String, known: String },
    #[error("unclosed '{{' at byte {at}")]
    Unclosed { at: usize },
}

impl Template {
    /// Parses `text`, allowing only the placeholders in `allowed`. `{{` and `}}` stand for
    /// literal braces (a JSON payload template needs them).
    pub fn parse(text: &str, allowed: &[Placeholder]) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find(['{', '}']) {
            let (before, tail) = rest.split_at(i);
            literal.push_str(before);
            let brace = tail.chars().next().unwrap_or('{');
            let after = tail.get(1..).unwrap_or_default();
            if after.starts_with(brace) {
                literal.push(brace);
                rest = after.get(1..).unwrap_or_default();
                offset += i + 2;
                continue;
            }
            if brace == '}' {
                // A lone closing brace is literal text.
                literal.push('}');
                rest = after;
                offset += i + 1;
                continue;
            }
            let Some(end) = after.find('}') else {
                return Err(TemplateError::Unclosed { at: offset + i });
            };
            let name = after.get(..end).unwrap_or_default();
            let placeholder = Placeholder::from_name(name)
                .filter(|p| allowed.contains(p))
                .ok_or_else(|| TemplateError::UnknownPlaceholder {
                    name: keyplex_types::truncate_chars(name, 40),
                    known: allowed
                        .iter()
                        .map(|p| format!("{{{}}}", p.name()))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Value(placeholder));
            rest = after.get(end + 1..).unwrap_or_default();
            offset += i + end + 2;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// The literal text and placeholders, in order.
    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The template with every placeholder replaced.
    pub fn expand(&self, v: &TemplateValues<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(p) => match p {
                    Placeholder::Kid => out.push_str(&v.kid.to_string()),
                    Placeholder::KidHex => out.push_str(&v.kid.to_hex()),
                    Placeholder::KidBase64 => out.push_str(&STANDARD.encode(v.kid.as_bytes())),
                    Placeholder::KidBase64Url => {
                        out.push_str(&URL_SAFE_NO_PAD.encode(v.kid.as_bytes()));
                    }
                    Placeholder::ContentId => out.push_str(v.content_id),
                    Placeholder::ContentIdBase64 => out.push_str(&STANDARD.encode(v.content_id)),
                    Placeholder::Period => {
                        if let Some(p) = v.period {
                            out.push_str(&p.to_string());
                        }
                    }
                    Placeholder::TrackType => out.push_str(v.track_type.unwrap_or_default()),
                    Placeholder::LaUrl => out.push_str(v.la_url.unwrap_or_default()),
                    Placeholder::Pssh => out.push_str(v.pssh.unwrap_or_default()),
                    Placeholder::PsshData => out.push_str(v.pssh_data.unwrap_or_default()),
                },
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn values() -> TemplateValues<'static> {
        TemplateValues {
            kid: "b4c3188b-eddd-453d-9bc2-1cbca7566239".parse().unwrap(),
            content_id: "movie-1",
            period: Some(128),
            track_type: Some("HD"),
            la_url: None,
            pssh: None,
            pssh_data: None,
        }
    }

    #[test]
    fn expands_every_placeholder() {
        let all = Template::parse(
            "{kid}|{kid_hex}|{kid_base64}|{kid_base64url}|{content_id}|{content_id_base64}|{period}|{track_type}|{la_url}",
            PSSH_DATA_PLACEHOLDERS,
        )
        .unwrap();
        assert_eq!(
            all.expand(&values()),
            "b4c3188b-eddd-453d-9bc2-1cbca7566239|b4c3188beddd453d9bc21cbca7566239|tMMYi+3dRT2bwhy8p1ZiOQ==|tMMYi-3dRT2bwhy8p1ZiOQ|movie-1|bW92aWUtMQ==|128|HD|"
        );
    }

    #[test]
    fn pallycon_skd_form_and_literal_braces() {
        let t = Template::parse("skd://{kid_base64}", FAIRPLAY_URI_PLACEHOLDERS).unwrap();
        assert_eq!(t.expand(&values()), "skd://tMMYi+3dRT2bwhy8p1ZiOQ==");
        let json = Template::parse(r#"{{"kid":"{kid}"}}"#, &Placeholder::ALL).unwrap();
        assert_eq!(
            json.expand(&values()),
            r#"{"kid":"b4c3188b-eddd-453d-9bc2-1cbca7566239"}"#
        );
        let vod = TemplateValues {
            period: None,
            ..values()
        };
        let p = Template::parse("skd://{content_id}/{period}", FAIRPLAY_URI_PLACEHOLDERS).unwrap();
        assert_eq!(p.expand(&vod), "skd://movie-1/");
    }

    #[test]
    fn refuses_unknown_and_unclosed_placeholders() {
        let err = Template::parse("skd://{key}", FAIRPLAY_URI_PLACEHOLDERS).unwrap_err();
        assert!(matches!(err, TemplateError::UnknownPlaceholder { ref name, .. } if name == "key"));
        assert!(err.to_string().contains("{kid_base64}"), "{err}");
        // Known in general, but not offered for this template.
        assert!(Template::parse("skd://{la_url}", FAIRPLAY_URI_PLACEHOLDERS).is_err());
        assert_eq!(
            Template::parse("skd://{kid", FAIRPLAY_URI_PLACEHOLDERS),
            Err(TemplateError::Unclosed { at: 6 })
        );
    }
}
