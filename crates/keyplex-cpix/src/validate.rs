//! Cross-reference checks that need the whole document but nothing outside it.

use hashbrown::HashSet;

use keyplex_types::KeyId;

use crate::error::{CpixError, quoted};
use crate::model::{CpixDocument, Playlist};

impl CpixDocument {
    /// Checks the references inside the document: every `DRMSystem@kid` and
    /// `ContentKeyUsageRule@kid` names a `ContentKey` (kids compare as UUIDs, so case does not
    /// matter), every `KeyPeriodFilter@periodId` names a `ContentKeyPeriod@id`, and each
    /// `DRMSystem` has at most two `HLSSignalingData` with different playlists (an absent
    /// `@playlist` means media; `master` and `multiVariant` are the same playlist).
    ///
    /// [`crate::read_document`] does not call this: a request may legitimately be incomplete
    /// until the server has decided how to answer it.
    pub fn validate_references(&self) -> Result<(), CpixError> {
        let kids: HashSet<KeyId> = self
            .content_keys
            .iter()
            .flatten()
            .map(|k| k.kid.id)
            .collect();
        let period_ids: HashSet<&str> = self
            .periods
            .iter()
            .flatten()
            .filter_map(|p| p.id.as_deref())
            .collect();

        for drm in self.drm_systems.iter().flatten() {
            if !kids.contains(&drm.kid.id) {
                return Err(CpixError::DanglingReference {
                    element: "DRMSystem",
                    attribute: "kid",
                    value: quoted(&drm.kid.as_written),
                    target: "ContentKey",
                });
            }
            let hls_error = |reason| CpixError::HlsSignaling {
                system_id: quoted(&drm.system_id.as_written),
                kid: quoted(&drm.kid.as_written),
                reason,
            };
            if drm.hls_signaling.len() > 2 {
                return Err(hls_error("more than two HLSSignalingData"));
            }
            if let [a, b] = drm.hls_signaling.as_slice()
                && is_multivariant(a.playlist) == is_multivariant(b.playlist)
            {
                return Err(hls_error("two HLSSignalingData for the same playlist"));
            }
        }
        for rule in self.usage_rules.iter().flatten() {
            if !kids.contains(&rule.kid.id) {
                return Err(CpixError::DanglingReference {
                    element: "ContentKeyUsageRule",
                    attribute: "kid",
                    value: quoted(&rule.kid.as_written),
                    target: "ContentKey",
                });
            }
            for filter in &rule.key_period_filters {
                if !period_ids.contains(filter.period_id.as_str()) {
                    return Err(CpixError::DanglingReference {
                        element: "KeyPeriodFilter",
                        attribute: "periodId",
                        value: quoted(&filter.period_id),
                        target: "ContentKeyPeriod@id",
                    });
                }
            }
        }
        Ok(())
    }
}

/// `master` (2.3) and `multiVariant` (2.4) name the same playlist; absent means media.
fn is_multivariant(playlist: Option<Playlist>) -> bool {
    matches!(playlist, Some(Playlist::Master | Playlist::MultiVariant))
}
