//! DASH MPD signaling (ISO/IEC 23009-1 ContentProtection, ISO/IEC 23001-7 `cenc:default_KID`/`cenc:pssh`, DASH-IF IOP and the DASH-IF ClearKey `dashif:Laurl`): the generic `mp4protection` descriptor,
//! the DRM-specific `ContentProtection` elements, and the inner fragment CPIX carries in
//! `ContentProtectionData`.
//!
//! The elements use the conventional prefixes `cenc`, `mspr` and `dashif`, which the MPD root
//! declares ([`MPD_NAMESPACE_DECLARATIONS`]). The CPIX fragment instead declares each
//! namespace on its own element, because it is inserted into MPDs keyplex never sees.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{EncryptionScheme, KeyId};

use crate::xml::{escape_attr, escape_text};
use crate::{DrmSystem, PsshBox};

pub const CENC_NAMESPACE: &str = "urn:mpeg:cenc:2013";
pub const MSPR_NAMESPACE: &str = "urn:microsoft:playready";
pub const DASHIF_NAMESPACE: &str = "https://dashif.org/CPS";
/// The `xmlns` attributes the MPD root needs for the elements built here.
pub const MPD_NAMESPACE_DECLARATIONS: &str = r#"xmlns:cenc="urn:mpeg:cenc:2013" xmlns:mspr="urn:microsoft:playready" xmlns:dashif="https://dashif.org/CPS""#;

/// The `licenseType` DASH-IF defines for a Clear Key licence server.
const CLEARKEY_LICENSE_TYPE: &str = "EME-1.0";

/// The generic descriptor: scheme FourCC and, unless keys rotate in-band, the default KID
/// (UUID order, exactly as in `tenc`).
pub fn mp4protection_element(scheme: EncryptionScheme, default_kid: Option<KeyId>) -> String {
    match default_kid {
        Some(kid) => format!(
            r#"<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="{}" cenc:default_KID="{kid}"/>"#,
            scheme.as_str()
        ),
        None => format!(
            r#"<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="{}"/>"#,
            scheme.as_str()
        ),
    }
}

/// A DRM-specific descriptor, e.g.
/// `<ContentProtection schemeIdUri="urn:uuid:9a04f079-…" value="MSPR 2.0"><cenc:pssh>…</cenc:pssh><mspr:pro>…</mspr:pro></ContentProtection>`.
/// Children appear for the arguments given: `pssh` (full box), `playready_pro` (PlayReady
/// Object) and `la_url` as `dashif:Laurl` (with `licenseType="EME-1.0"` for Clear Key).
pub fn drm_content_protection_element(
    system: DrmSystem,
    pssh: Option<&PsshBox>,
    playready_pro: Option<&[u8]>,
    la_url: Option<&str>,
) -> String {
    let children = children(system, pssh, playready_pro, la_url, false);
    let open = format!(
        r#"<ContentProtection schemeIdUri="{}" value="{}""#,
        system.scheme_id_uri(),
        escape_attr(system.dash_value())
    );
    if children.is_empty() {
        format!("{open}/>")
    } else {
        format!("{open}>{children}</ContentProtection>")
    }
}

/// The inner XML of the DRM descriptor, standalone (each element declares its namespace),
/// for CPIX `ContentProtectionData`, e.g.
/// `<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">…</cenc:pssh>`. Empty when there is nothing
/// to put inside the descriptor.
pub fn content_protection_data(
    system: DrmSystem,
    pssh: Option<&PsshBox>,
    playready_pro: Option<&[u8]>,
    la_url: Option<&str>,
) -> String {
    children(system, pssh, playready_pro, la_url, true)
}

fn children(
    system: DrmSystem,
    pssh: Option<&PsshBox>,
    playready_pro: Option<&[u8]>,
    la_url: Option<&str>,
    declare_namespaces: bool,
) -> String {
    let ns = |prefix: &str, uri: &str| {
        if declare_namespaces {
            format!(r#" xmlns:{prefix}="{uri}""#)
        } else {
            String::new()
        }
    };
    let mut out = String::new();
    if let Some(b) = pssh {
        out.push_str(&format!(
            "<cenc:pssh{}>{}</cenc:pssh>",
            ns("cenc", CENC_NAMESPACE),
            b.to_base64()
        ));
    }
    if let Some(pro) = playready_pro {
        out.push_str(&format!(
            "<mspr:pro{}>{}</mspr:pro>",
            ns("mspr", MSPR_NAMESPACE),
            B64.encode(pro)
        ));
    }
    if let Some(url) = la_url.filter(|u| !u.is_empty()) {
        let license_type = if system == DrmSystem::ClearKeyDashIf {
            format!(r#" licenseType="{CLEARKEY_LICENSE_TYPE}""#)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<dashif:Laurl{}{license_type}>{}</dashif:Laurl>",
            ns("dashif", DASHIF_NAMESPACE),
            escape_text(url)
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const W1: &str = "AAAANHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABQIARIQwU8HCfK5RCeRa2G1JYZQag==";

    fn w1() -> PsshBox {
        PsshBox::parse(&B64.decode(W1).unwrap()).unwrap().0
    }

    #[test]
    fn mp4protection_matches_iop6_example() {
        let kid: KeyId = "c14f0709-f2b9-4427-916b-61b52586506a".parse().unwrap();
        assert_eq!(
            mp4protection_element(EncryptionScheme::Cenc, Some(kid)),
            r#"<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cenc" cenc:default_KID="c14f0709-f2b9-4427-916b-61b52586506a"/>"#
        );
        assert_eq!(
            mp4protection_element(EncryptionScheme::Cbcs, None),
            r#"<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cbcs"/>"#
        );
    }

    #[test]
    fn widevine_element_matches_iop6_example() {
        assert_eq!(
            drm_content_protection_element(DrmSystem::Widevine, Some(&w1()), None, None),
            format!(
                r#"<ContentProtection schemeIdUri="urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed" value="Widevine"><cenc:pssh>{W1}</cenc:pssh></ContentProtection>"#
            )
        );
        assert_eq!(
            content_protection_data(DrmSystem::Widevine, Some(&w1()), None, None),
            format!(r#"<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">{W1}</cenc:pssh>"#)
        );
    }

    #[test]
    fn playready_carries_pssh_and_pro() {
        let pro = [1_u8, 2, 3];
        let element =
            drm_content_protection_element(DrmSystem::PlayReady, Some(&w1()), Some(&pro), None);
        assert!(element.starts_with(r#"<ContentProtection schemeIdUri="urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95" value="MSPR 2.0"><cenc:pssh>"#));
        assert!(element.ends_with("</cenc:pssh><mspr:pro>AQID</mspr:pro></ContentProtection>"));
        let cpd = content_protection_data(DrmSystem::PlayReady, Some(&w1()), Some(&pro), None);
        assert!(cpd.ends_with(r#"<mspr:pro xmlns:mspr="urn:microsoft:playready">AQID</mspr:pro>"#));
    }

    #[test]
    fn clearkey_matches_iop6_form() {
        let url = "https://license.example/clearkey?a=1&b=2";
        assert_eq!(
            drm_content_protection_element(DrmSystem::ClearKeyDashIf, None, None, Some(url)),
            r#"<ContentProtection schemeIdUri="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" value="ClearKey1.0"><dashif:Laurl licenseType="EME-1.0">https://license.example/clearkey?a=1&amp;b=2</dashif:Laurl></ContentProtection>"#
        );
        assert_eq!(
            content_protection_data(DrmSystem::ClearKeyDashIf, None, None, Some(url)),
            r#"<dashif:Laurl xmlns:dashif="https://dashif.org/CPS" licenseType="EME-1.0">https://license.example/clearkey?a=1&amp;b=2</dashif:Laurl>"#
        );
        assert_eq!(
            drm_content_protection_element(DrmSystem::ClearKeyDashIf, None, None, None),
            r#"<ContentProtection schemeIdUri="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" value="ClearKey1.0"/>"#
        );
    }

    #[test]
    fn fragments_are_well_formed_xml() {
        let url = "https://l.example/?x=<1>&y";
        let cpd =
            content_protection_data(DrmSystem::PlayReady, Some(&w1()), Some(&[9; 20]), Some(url));
        // A fragment with sibling roots: wrap it, as CPIX consumers do, then parse.
        let doc_text = format!("<wrap>{cpd}</wrap>");
        let doc = roxmltree::Document::parse(&doc_text).unwrap();
        let names: Vec<(Option<&str>, &str)> = doc
            .root_element()
            .children()
            .map(|n| (n.tag_name().namespace(), n.tag_name().name()))
            .collect();
        assert_eq!(
            names,
            vec![
                (Some(CENC_NAMESPACE), "pssh"),
                (Some(MSPR_NAMESPACE), "pro"),
                (Some(DASHIF_NAMESPACE), "Laurl")
            ]
        );
        let laurl = doc.root_element().last_child().unwrap();
        assert_eq!(laurl.text(), Some(url));

        let element = drm_content_protection_element(
            DrmSystem::PlayReady,
            Some(&w1()),
            Some(&[9; 20]),
            Some(url),
        );
        let mpd = format!(
            r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" {MPD_NAMESPACE_DECLARATIONS}>{element}</MPD>"#
        );
        assert!(roxmltree::Document::parse(&mpd).is_ok());
    }
}
