//! The DOM reader keyplex used before the streaming one (roxmltree), kept unchanged as the
//! oracle of the differential tests in `reader.rs`: for any input, both readers must agree.
//! Test-only; roxmltree is a dev-dependency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{ContentKeyValue, EncryptionScheme, Iv, KeyId};
use roxmltree::{Node, ParsingOptions};

use super::{MAX_CONTENT_KEYS, MAX_LIST_ENTRIES, NODES_LIMIT, check_markup, decode};
use crate::error::{CpixError, quoted};
use crate::model::{
    AudioFilter, BitrateFilter, ContentKeyEntry, ContentKeyPeriod, CpixDocument, CpixVersion,
    DeliveryData, DrmSystemEntry, ExtensionElement, HlsSignaling, KeyPeriodFilter, KeyValue, Kid,
    LabelFilter, Playlist, SystemIdAttr, UsageRule, VideoFilter, WrappedDeliveryKeys,
};
use crate::ns;

/// The old `read_document`, as it was.
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
