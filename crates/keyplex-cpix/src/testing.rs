//! Test support: proptest strategies for schema-valid models of each CPIX version, and the
//! paths of the shared vector files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{ContentKeyValue, EncryptionScheme, Iv, KeyId};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::model::*;
use crate::ns;

pub const DASHIF: &str = "/work/shared/vectors/cpix/dashif-cpix-test-vectors";
pub const SPEKE: &str = "/work/shared/vectors/speke";

pub fn read_vector(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// All `*.xml` files under `dir` (recursively), sorted.
pub fn xml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "xml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

const SYSTEM_IDS: [&str; 4] = [
    "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
    "9a04f079-9840-4286-ab92-e65be0885f95",
    "94ce86fb-07ff-4f43-adb8-93d2fa968ca2",
    "81376844-f976-481e-a84e-cc25d39b0b33",
];

fn b64_text(max: usize) -> impl Strategy<Value = String> {
    vec(any::<u8>(), 0..max).prop_map(|b| B64.encode(b))
}

fn attr_text() -> impl Strategy<Value = String> {
    // Printable ASCII, including the characters XML must escape.
    "[ -~]{1,16}"
}

fn kid_from(id: KeyId, upper: bool) -> Kid {
    let text = id.to_string();
    Kid {
        id,
        as_written: if upper { text.to_uppercase() } else { text },
    }
}

fn any_kid() -> impl Strategy<Value = Kid> {
    (any::<[u8; 16]>(), any::<bool>()).prop_map(|(b, upper)| kid_from(KeyId::from_bytes(b), upper))
}

fn scheme() -> impl Strategy<Value = EncryptionScheme> {
    prop_oneof![
        Just(EncryptionScheme::Cenc),
        Just(EncryptionScheme::Cbcs),
        Just(EncryptionScheme::Cens),
        Just(EncryptionScheme::Cbc1)
    ]
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(|k| KeyValue::Plain(ContentKeyValue::from_bytes(k))),
        (vec(any::<u8>(), 48), vec(any::<u8>(), 64)).prop_map(|(cipher_value, value_mac)| {
            KeyValue::Encrypted {
                cipher_value,
                value_mac,
            }
        }),
    ]
}

/// A list that is absent, or (2.3 only) empty, or holds 1..=max items.
fn list<T: std::fmt::Debug>(
    v24: bool,
    items: impl Strategy<Value = Vec<T>>,
) -> impl Strategy<Value = Option<Vec<T>>> {
    option::of(items).prop_map(move |l| l.filter(|l| !(v24 && l.is_empty())))
}

/// A schema-valid document for `version`: unique NCName ids, references that resolve,
/// only the attributes and elements that version's schema has, and response-shaped
/// delivery data (wrapped keys present).
pub fn document(version: Option<CpixVersion>) -> impl Strategy<Value = CpixDocument> {
    let v24 = version == Some(CpixVersion::V2_4);
    let keys = vec(
        (
            any::<bool>(),
            any::<bool>(),
            option::of(any::<[u8; 16]>()),
            option::of(scheme()),
            option::of("[a-z0-9_.:-]{1,12}"),
            option::of(any_kid()),
            option::of(key_value()),
        ),
        0..4,
    );
    (
        option::of(attr_text()),
        option::of(attr_text()),
        any::<u64>(),
        keys,
        any::<u64>(),
    )
        .prop_flat_map(move |(content_id, name, doc_id_seed, keys, kid_seed)| {
            let content_keys: Vec<ContentKeyEntry> = keys
                .into_iter()
                .enumerate()
                .map(|(i, (with_id, upper, iv, scheme, cid, depends, value))| {
                    let mut bytes = [0u8; 16];
                    bytes[..8].copy_from_slice(&kid_seed.to_be_bytes());
                    bytes[15] = u8::try_from(i).unwrap();
                    ContentKeyEntry {
                        id: with_id.then(|| format!("key{i}")),
                        kid: kid_from(KeyId::from_bytes(bytes), upper),
                        explicit_iv: iv.map(Iv::from_bytes),
                        common_encryption_scheme: scheme,
                        content_id: if v24 { cid } else { None },
                        depends_on_key: depends,
                        value,
                    }
                })
                .collect();
            let kids: Vec<Kid> = content_keys.iter().map(|k| k.kid.clone()).collect();
            let pick_kid = {
                let kids = kids.clone();
                move || -> BoxedStrategy<Kid> {
                    if kids.is_empty() { any_kid().boxed() } else { proptest::sample::select(kids.clone()).boxed() }
                }
            };
            let delivery = vec(
                (vec(any::<u8>(), 1..64), vec(any::<u8>(), 1..600), vec(any::<u8>(), 1..600), any::<bool>()),
                0..3,
            )
            .prop_map(|items| {
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, (cert, doc_key, mac_key, with_id))| DeliveryData {
                        id: with_id.then(|| format!("recipient{i}")),
                        certificate_der: cert,
                        wrapped: Some(WrappedDeliveryKeys { document_key_cipher: doc_key, mac_key_cipher: mac_key }),
                    })
                    .collect::<Vec<_>>()
            });
            let drm = vec(drm_system(v24, pick_kid()), 0..4).prop_map(|items| {
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut d)| {
                        d.id = d.id.map(|_| format!("drm{i}"));
                        d
                    })
                    .collect::<Vec<_>>()
            });
            let periods = vec(period(v24), 0..3).prop_map(|items| {
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut p)| {
                        p.id = Some(format!("period{i}"));
                        p
                    })
                    .collect::<Vec<_>>()
            });
            (
                Just((content_id.clone(), name.clone(), doc_id_seed)),
                Just(content_keys),
                list(v24, delivery),
                list(v24, drm),
                list(v24, periods),
                any::<bool>(),
                option::of(Just(())),
                vec((pick_kid(), usage_rule_parts()), 0..3),
                any::<bool>(),
            )
        })
        .prop_map(move |((content_id, name, doc_id_seed), content_keys, delivery, drm, periods, with_keys, history, rules, with_rules)| {
            let period_ids: Vec<String> = periods.iter().flatten().filter_map(|p| p.id.clone()).collect();
            let usage_rules: Vec<UsageRule> = rules
                .into_iter()
                .enumerate()
                .map(|(i, (kid, parts))| parts.into_rule(i, kid, &period_ids))
                .collect();
            CpixDocument {
                version: version.clone(),
                id: (doc_id_seed % 2 == 0).then(|| format!("doc{doc_id_seed}")),
                content_id,
                name,
                delivery_data: delivery,
                content_keys: (with_keys && !(v24 && content_keys.is_empty())).then_some(content_keys),
                drm_systems: drm,
                periods,
                usage_rules: (with_rules && !(v24 && usage_rules.is_empty())).then_some(usage_rules),
                update_history_xml: history.map(|()| {
                    format!(
                        "<cpix:UpdateHistoryItemList xmlns:cpix=\"{}\"><cpix:UpdateHistoryItem updateVersion=\"1\" index=\"1\" source=\"keyplex &amp; co\" date=\"2024-05-01T12:00:00Z\"/></cpix:UpdateHistoryItemList>",
                        ns::CPIX
                    )
                }),
            }
        })
}

fn drm_system(v24: bool, kid: BoxedStrategy<Kid>) -> impl Strategy<Value = DrmSystemEntry> {
    let hls = prop_oneof![
        Just(vec![]),
        Just(vec![None]),
        Just(vec![Some(Playlist::Media)]),
        Just(vec![
            None,
            Some(if v24 {
                Playlist::MultiVariant
            } else {
                Playlist::Master
            })
        ]),
        Just(vec![
            Some(if v24 {
                Playlist::MultiVariant
            } else {
                Playlist::Master
            }),
            Some(Playlist::Media)
        ]),
    ];
    (
        (
            kid,
            proptest::sample::select(SYSTEM_IDS.to_vec()),
            any::<bool>(),
            option::of(attr_text()),
        ),
        (
            option::of(b64_text(40)),
            option::of(b64_text(40)),
            option::of(b64_text(40)),
            option::of(b64_text(40)),
            option::of(b64_text(40)),
        ),
        (hls, vec(b64_text(30), 2)),
        vec((0..3usize, b64_text(20)), 0..3),
    )
        .prop_map(
            move |(
                (kid, system_id, with_id, name),
                (pssh, cpd, uri, smooth, hds),
                (hls, hls_values),
                exts,
            )| {
                let system = system_id.parse::<KeyId>().unwrap();
                DrmSystemEntry {
                    id: with_id.then(String::new),
                    system_id: SystemIdAttr {
                        uuid: *system.as_bytes(),
                        as_written: system_id.to_owned(),
                    },
                    kid,
                    name,
                    pssh,
                    content_protection_data: cpd,
                    uri_ext_x_key: if v24 { None } else { uri },
                    hls_signaling: hls
                        .into_iter()
                        .zip(hls_values)
                        .map(|(playlist, value)| HlsSignaling { playlist, value })
                        .collect(),
                    smooth_streaming: smooth,
                    hds_signaling: if v24 { None } else { hds },
                    extensions: exts
                        .into_iter()
                        .map(|(which, text)| match which {
                            0 => ExtensionElement {
                                namespace: ns::SPEKE.to_owned(),
                                local_name: "KeyFormat".to_owned(),
                                prefix: Some("speke".to_owned()),
                                text,
                            },
                            1 => ExtensionElement {
                                namespace: ns::SPEKE.to_owned(),
                                local_name: "ProtectionHeader".to_owned(),
                                prefix: Some("speke".to_owned()),
                                text,
                            },
                            _ => ExtensionElement {
                                namespace: "urn:example:vendor".to_owned(),
                                local_name: "Extra".to_owned(),
                                prefix: Some("vendor".to_owned()),
                                text,
                            },
                        })
                        .collect(),
                }
            },
        )
}

fn period(v24: bool) -> impl Strategy<Value = ContentKeyPeriod> {
    (
        option::of(any::<u64>()),
        any::<bool>(),
        option::of(attr_text()),
        any::<bool>(),
    )
        .prop_map(
            move |(index, with_times, label, with_offsets)| ContentKeyPeriod {
                id: None,
                index,
                start: with_times.then(|| "2024-05-01T12:00:00Z".to_owned()),
                end: with_times.then(|| "2024-05-01T12:10:00Z".to_owned()),
                label: if v24 { label } else { None },
                start_offset: (v24 && with_offsets).then(|| "PT0S".to_owned()),
                end_offset: (v24 && with_offsets).then(|| "PT10M".to_owned()),
                duration: (v24 && with_offsets).then(|| "PT10M".to_owned()),
            },
        )
}

#[derive(Debug, Clone)]
pub struct RuleParts {
    with_id: bool,
    track_type: Option<String>,
    period_filter_count: usize,
    labels: Vec<String>,
    video: Vec<VideoFilter>,
    audio: Vec<AudioFilter>,
    bitrate: Vec<BitrateFilter>,
    foreign_child: bool,
}

impl RuleParts {
    fn into_rule(self, i: usize, kid: Kid, period_ids: &[String]) -> UsageRule {
        UsageRule {
            id: self.with_id.then(|| format!("rule{i}")),
            kid,
            intended_track_type: self.track_type,
            key_period_filters: period_ids
                .iter()
                .take(self.period_filter_count)
                .map(|p| KeyPeriodFilter {
                    period_id: p.clone(),
                })
                .collect(),
            label_filters: self
                .labels
                .into_iter()
                .map(|label| LabelFilter { label })
                .collect(),
            video_filters: self.video,
            audio_filters: self.audio,
            bitrate_filters: self.bitrate,
            unknown_children: if self.foreign_child {
                vec![
                    "<x:FutureFilter xmlns:x=\"urn:example:filters\" level=\"a&amp;b\"/>"
                        .to_owned(),
                ]
            } else {
                Vec::new()
            },
        }
    }
}

fn usage_rule_parts() -> impl Strategy<Value = RuleParts> {
    let video = (
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(0..120u32),
        option::of(0..120u32),
    )
        .prop_map(|(min, max, hdr, wcg, min_fps, max_fps)| VideoFilter {
            min_pixels: min.map(u64::from),
            max_pixels: max.map(u64::from),
            hdr,
            wcg,
            min_fps: min_fps.map(|f| f.to_string()),
            max_fps: max_fps.map(|f| f.to_string()),
        });
    let audio =
        (option::of(0..16u64), option::of(0..16u64)).prop_map(|(min_channels, max_channels)| {
            AudioFilter {
                min_channels,
                max_channels,
            }
        });
    let bitrate =
        (option::of(any::<u32>()), option::of(any::<u32>())).prop_map(|(min, max)| BitrateFilter {
            min_bitrate: min.map(u64::from),
            max_bitrate: max.map(u64::from),
        });
    (
        any::<bool>(),
        option::of(prop_oneof![
            Just("VIDEO".to_owned()),
            Just("AUDIO".to_owned()),
            Just("SD+HD1".to_owned())
        ]),
        0..3usize,
        vec(attr_text(), 0..3),
        vec(video, 0..2),
        vec(audio, 0..2),
        vec(bitrate, 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(
                with_id,
                track_type,
                period_filter_count,
                labels,
                video,
                audio,
                bitrate,
                foreign_child,
            )| RuleParts {
                with_id,
                track_type,
                period_filter_count,
                labels,
                video,
                audio,
                bitrate,
                foreign_child,
            },
        )
}

/// Any version the writer distinguishes.
pub fn any_document() -> impl Strategy<Value = CpixDocument> {
    prop_oneof![
        document(Some(CpixVersion::V2_3)),
        document(Some(CpixVersion::V2_4)),
        document(None),
        document(Some(CpixVersion::Other("2.2".to_owned()))),
    ]
}
