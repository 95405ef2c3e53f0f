//! The DRM systems keyplex knows about, identified the way pssh boxes, CPIX and MPDs do: by
//! a 16-byte system id (the DASH-IF content protection identifier registry, dashif.org/identifiers/content_protection).

use std::fmt;

use uuid::Uuid;

/// A DRM (or key-delivery) system keyplex can name. Not every one of them can be signaled:
/// see [`crate::signal::signal`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DrmSystem {
    Widevine,
    PlayReady,
    /// Apple FairPlay Streaming, DASH-IF id `94ce86fb-…`.
    FairPlay,
    /// The FairPlay id Shaka Packager also accepts (`29701fe4-…`).
    FairPlayLegacy,
    /// Clear Key as signaled in an MPD (`e2719d58-…`, `value="ClearKey1.0"`).
    ClearKeyDashIf,
    /// The W3C "common" system (`1077efec-…`): a v1 pssh that only lists key ids.
    CommonPssh,
    /// CPIX id for HLS AES-128 with clear ("identity") keys (`3ea8778f-…`).
    ClearKeyAes128,
    /// CPIX id for HLS SAMPLE-AES with clear ("identity") keys (`be58615b-…`).
    ClearKeySampleAes,
    /// The id AWS uses for HLS AES-128 in SPEKE (`81376844-…`); not in the DASH-IF registry.
    AwsHlsAes128,
    /// Marlin MAS simple profile.
    Marlin,
    /// Nagra MediaAccess PRM 3.0.
    NagraPrm,
}

impl DrmSystem {
    /// Every system, in declaration order.
    pub const ALL: [Self; 11] = [
        Self::Widevine,
        Self::PlayReady,
        Self::FairPlay,
        Self::FairPlayLegacy,
        Self::ClearKeyDashIf,
        Self::CommonPssh,
        Self::ClearKeyAes128,
        Self::ClearKeySampleAes,
        Self::AwsHlsAes128,
        Self::Marlin,
        Self::NagraPrm,
    ];

    /// The system id, in the big-endian byte order used on the wire by pssh and CPIX.
    pub const fn system_id(self) -> Uuid {
        Uuid::from_u128(match self {
            Self::Widevine => 0xedef8ba9_79d6_4ace_a3c8_27dcd51d21ed,
            Self::PlayReady => 0x9a04f079_9840_4286_ab92_e65be0885f95,
            Self::FairPlay => 0x94ce86fb_07ff_4f43_adb8_93d2fa968ca2,
            Self::FairPlayLegacy => 0x29701fe4_3cc7_4a34_8c5b_ae90c7439a47,
            Self::ClearKeyDashIf => 0xe2719d58_a985_b3c9_781a_b030af78d30e,
            Self::CommonPssh => 0x1077efec_c0b2_4d02_ace3_3c1e52e2fb4b,
            Self::ClearKeyAes128 => 0x3ea8778f_7742_4bf9_b18b_e834b2acbd47,
            Self::ClearKeySampleAes => 0xbe58615b_19c4_4684_88b3_c8c57e99e957,
            Self::AwsHlsAes128 => 0x81376844_f976_481e_a84e_cc25d39b0b33,
            Self::Marlin => 0x5e629af5_38da_4063_8977_97ffbd9902d4,
            Self::NagraPrm => 0xadb41c24_2dbf_4a6d_958b_4457c0d27b95,
        })
    }

    /// The system with this id. Only the canonical ids are recognised: the byte-swapped
    /// PlayReady spelling some players tolerate (`79f0049a-…`) is deliberately not.
    pub fn from_system_id(id: &Uuid) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.system_id() == *id)
    }

    /// A human-readable name for logs, errors and `keyplex pssh decode`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Widevine => "Widevine",
            Self::PlayReady => "PlayReady",
            Self::FairPlay => "FairPlay",
            Self::FairPlayLegacy => "FairPlay (legacy id)",
            Self::ClearKeyDashIf => "Clear Key (DASH-IF)",
            Self::CommonPssh => "W3C Common PSSH",
            Self::ClearKeyAes128 => "Clear Key AES-128 (HLS)",
            Self::ClearKeySampleAes => "Clear Key SAMPLE-AES (HLS)",
            Self::AwsHlsAes128 => "AWS HLS AES-128 (unofficial id)",
            Self::Marlin => "Marlin",
            Self::NagraPrm => "Nagra PRM",
        }
    }

    /// The MPD `ContentProtection@value` (also CPIX `DRMSystem@name`): the strings players and
    /// packagers use, e.g. `MSPR 2.0` for PlayReady and `ClearKey1.0` for DASH-IF Clear Key.
    pub const fn dash_value(self) -> &'static str {
        match self {
            Self::Widevine => "Widevine",
            Self::PlayReady => "MSPR 2.0",
            Self::FairPlay | Self::FairPlayLegacy => "FairPlay",
            Self::ClearKeyDashIf => "ClearKey1.0",
            Self::CommonPssh => "cenc",
            Self::ClearKeyAes128 => "ClearKey AES-128",
            Self::ClearKeySampleAes => "ClearKey SAMPLE-AES",
            Self::AwsHlsAes128 => "HLS AES-128",
            Self::Marlin => "Marlin",
            Self::NagraPrm => "Nagra PRM",
        }
    }

    /// The MPD `ContentProtection@schemeIdUri`: `urn:uuid:` and the lower-case id.
    pub fn scheme_id_uri(self) -> String {
        format!("urn:uuid:{}", self.system_id().hyphenated())
    }
}

impl fmt::Display for DrmSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_the_dashif_registry_and_round_trip() {
        let expected = [
            (DrmSystem::Widevine, "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"),
            (DrmSystem::PlayReady, "9a04f079-9840-4286-ab92-e65be0885f95"),
            (DrmSystem::FairPlay, "94ce86fb-07ff-4f43-adb8-93d2fa968ca2"),
            (
                DrmSystem::FairPlayLegacy,
                "29701fe4-3cc7-4a34-8c5b-ae90c7439a47",
            ),
            (
                DrmSystem::ClearKeyDashIf,
                "e2719d58-a985-b3c9-781a-b030af78d30e",
            ),
            (
                DrmSystem::CommonPssh,
                "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b",
            ),
            (
                DrmSystem::ClearKeyAes128,
                "3ea8778f-7742-4bf9-b18b-e834b2acbd47",
            ),
            (
                DrmSystem::ClearKeySampleAes,
                "be58615b-19c4-4684-88b3-c8c57e99e957",
            ),
            (
                DrmSystem::AwsHlsAes128,
                "81376844-f976-481e-a84e-cc25d39b0b33",
            ),
            (DrmSystem::Marlin, "5e629af5-38da-4063-8977-97ffbd9902d4"),
            (DrmSystem::NagraPrm, "adb41c24-2dbf-4a6d-958b-4457c0d27b95"),
        ];
        assert_eq!(expected.len(), DrmSystem::ALL.len());
        for (system, text) in expected {
            let id = Uuid::parse_str(text).unwrap();
            assert_eq!(system.system_id(), id, "{system:?}");
            assert_eq!(DrmSystem::from_system_id(&id), Some(system));
            assert_eq!(system.scheme_id_uri(), format!("urn:uuid:{text}"));
        }
    }

    #[test]
    fn byte_swapped_playready_id_is_not_recognised() {
        let swapped = Uuid::parse_str("79f0049a-4098-8642-ab92-e65be0885f95").unwrap();
        assert_eq!(DrmSystem::from_system_id(&swapped), None);
    }

    #[test]
    fn dash_values_are_what_players_match() {
        assert_eq!(DrmSystem::PlayReady.dash_value(), "MSPR 2.0");
        assert_eq!(DrmSystem::Widevine.dash_value(), "Widevine");
        assert_eq!(DrmSystem::ClearKeyDashIf.dash_value(), "ClearKey1.0");
        assert_eq!(DrmSystem::FairPlay.to_string(), "FairPlay");
    }
}
