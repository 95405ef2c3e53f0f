//! The ISO/IEC 23001-7 §8.1 Protection System Specific Header box, shared by every DRM:
//!
//! ```text
//! u32 size | "pssh" | u8 version | u24 flags | u8[16] SystemID
//! [version 1: u32 KID_count | KID_count × u8[16] KID]
//! u32 DataSize | u8[DataSize] Data
//! ```
//!
//! All integers are big-endian and key ids are in UUID byte order (no GUID swapping).
//! Parsing is strict: every length must agree exactly, so a box that parses is a box that
//! re-serialises to the same bytes (except for the rare 64-bit and to-end-of-file size forms).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::KeyId;
use uuid::Uuid;

use crate::{DrmError, DrmSystem};

/// One pssh box.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PsshBox {
    /// 0 or 1. Only version 1 boxes carry `key_ids`; [`PsshBox::to_bytes`] writes the list
    /// only for them.
    pub version: u8,
    /// 24 bits; always 0 in practice.
    pub flags: u32,
    pub system_id: Uuid,
    pub key_ids: Vec<KeyId>,
    /// The system-specific payload (Widevine protobuf, PlayReady Object, …).
    pub data: Vec<u8>,
}

const BOX_TYPE: &[u8; 4] = b"pssh";
/// size + type + version/flags + system id + data size.
const V0_FIXED_LEN: usize = 4 + 4 + 4 + 16 + 4;

impl PsshBox {
    /// A version 0 box: no key id list, as Widevine servers and Shaka Packager emit.
    pub fn v0(system_id: Uuid, data: Vec<u8>) -> Self {
        Self {
            version: 0,
            flags: 0,
            system_id,
            key_ids: Vec::new(),
            data,
        }
    }

    /// A version 1 box listing `key_ids` (so players can tell which keys the box is for
    /// without understanding `data`).
    pub fn v1(system_id: Uuid, key_ids: Vec<KeyId>, data: Vec<u8>) -> Self {
        Self {
            version: 1,
            flags: 0,
            system_id,
            key_ids,
            data,
        }
    }

    /// The DRM system this box is for, when keyplex knows it.
    pub fn system(&self) -> Option<DrmSystem> {
        DrmSystem::from_system_id(&self.system_id)
    }

    /// Parses the box at the start of `bytes` and returns it with the number of bytes it
    /// occupies; whatever follows is left for the caller (see [`PsshBox::parse_all`]).
    pub fn parse(bytes: &[u8]) -> Result<(Self, usize), DrmError> {
        let mut header = Reader::new(bytes, "pssh box header");
        let size32 = header.u32()?;
        let box_type = header.array::<4>()?;
        if &box_type != BOX_TYPE {
            return Err(DrmError::NotPssh {
                found: String::from_utf8_lossy(&box_type).into_owned(),
            });
        }
        // size 1: a 64-bit size follows the type; size 0: the box runs to the end of input.
        let box_len: u64 = match size32 {
            0 => bytes.len() as u64,
            1 => header.u64()?,
            n => u64::from(n),
        };
        let header_len = header.position();
        if box_len > bytes.len() as u64 {
            return Err(DrmError::Truncated {
                what: "pssh box",
                needed: box_len,
                available: bytes.len(),
            });
        }
        let box_len = usize::try_from(box_len).map_err(|_| {
            DrmError::InvalidPssh(format!("box size {box_len} does not fit in memory"))
        })?;
        let body = bytes.get(header_len..box_len).ok_or_else(|| {
            DrmError::InvalidPssh(format!("box size {box_len} is smaller than its header"))
        })?;

        let mut r = Reader::new(body, "pssh box");
        let version = r.u8()?;
        let flags = u32::from_be_bytes([0, r.u8()?, r.u8()?, r.u8()?]);
        if version > 1 {
            return Err(DrmError::UnsupportedPsshVersion(version));
        }
        let system_id = Uuid::from_bytes(r.array::<16>()?);
        let mut key_ids = Vec::new();
        if version == 1 {
            let count = r.u32()?;
            // Check before allocating, so a hostile count cannot reserve gigabytes.
            let needed = u64::from(count) * 16;
            if needed > r.remaining() as u64 {
                return Err(DrmError::Truncated {
                    what: "pssh KID list",
                    needed,
                    available: r.remaining(),
                });
            }
            key_ids.reserve(count as usize);
            for _ in 0..count {
                key_ids.push(KeyId::from_bytes(r.array::<16>()?));
            }
        }
        let data_size = r.u32()?;
        let data = r.take(data_size as usize)?.to_vec();
        if r.remaining() != 0 {
            return Err(DrmError::InvalidPssh(format!(
                "box size {box_len} leaves {} bytes after the {data_size}-byte data",
                r.remaining()
            )));
        }
        Ok((
            Self {
                version,
                flags,
                system_id,
                key_ids,
                data,
            },
            box_len,
        ))
    }

    /// Parses a concatenation of pssh boxes (CPIX `PSSH`, EME `cenc` init data). Every byte
    /// must belong to a box; empty input gives an empty list.
    pub fn parse_all(mut bytes: &[u8]) -> Result<Vec<Self>, DrmError> {
        let mut boxes = Vec::new();
        while !bytes.is_empty() {
            let (b, used) = Self::parse(bytes)?;
            boxes.push(b);
            bytes = bytes.get(used..).unwrap_or_default();
        }
        Ok(boxes)
    }

    /// The box in wire form. `flags` is truncated to its 24 bits. Payloads of 4 GiB or more
    /// cannot be expressed by the format; keyplex never builds them (inputs are size-capped).
    pub fn to_bytes(&self) -> Vec<u8> {
        let kid_bytes = if self.version >= 1 {
            4 + 16 * self.key_ids.len()
        } else {
            0
        };
        let total = V0_FIXED_LEN + kid_bytes + self.data.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&saturating_u32(total).to_be_bytes());
        out.extend_from_slice(BOX_TYPE);
        out.push(self.version);
        let [_, f1, f2, f3] = self.flags.to_be_bytes();
        out.extend_from_slice(&[f1, f2, f3]);
        out.extend_from_slice(self.system_id.as_bytes());
        if self.version >= 1 {
            out.extend_from_slice(&saturating_u32(self.key_ids.len()).to_be_bytes());
            for kid in &self.key_ids {
                out.extend_from_slice(kid.as_bytes());
            }
        }
        out.extend_from_slice(&saturating_u32(self.data.len()).to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Standard base64 of [`PsshBox::to_bytes`] (the form MPDs and CPIX carry).
    pub fn to_base64(&self) -> String {
        B64.encode(self.to_bytes())
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A bounds-checked big-endian cursor; every read reports what was truncated.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            pos: 0,
            what,
        }
    }
    pub(crate) fn position(&self) -> usize {
        self.pos
    }
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DrmError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(DrmError::Truncated {
                what: self.what,
                needed: n as u64,
                available: self.remaining(),
            })?;
        let out = self.bytes.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(out)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DrmError> {
        let mut out = [0_u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DrmError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DrmError> {
        self.array::<4>().map(u32::from_be_bytes)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DrmError> {
        self.array::<8>().map(u64::from_be_bytes)
    }
    pub(crate) fn u16_le(&mut self) -> Result<u16, DrmError> {
        self.array::<2>().map(u16::from_le_bytes)
    }
    pub(crate) fn u32_le(&mut self) -> Result<u32, DrmError> {
        self.array::<4>().map(u32::from_le_bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    const W1: &str = "AAAANHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABQIARIQwU8HCfK5RCeRa2G1JYZQag==";
    const C1: &str = "AAAANHBzc2gBAAAAEHfv7MCyTQKs4zweUuL7SwAAAAFsX1IGfZhICITYlPEywen+AAAAAA==";
    const C2: &str = "AAAAIHBzc2gAAAAAEHfv7MCyTQKs4zweUuL7SwAAAAA=";

    #[test]
    fn parses_widevine_v0_box_w1() {
        let bytes = b64(W1);
        let (b, used) = PsshBox::parse(&bytes).unwrap();
        assert_eq!(used, 52);
        assert_eq!(b.version, 0);
        assert_eq!(b.system(), Some(DrmSystem::Widevine));
        assert!(b.key_ids.is_empty());
        assert_eq!(b.data.len(), 20);
        assert_eq!(b.to_bytes(), bytes);
    }

    #[test]
    fn parses_common_v1_box_c1_and_empty_v0_box_c2() {
        let (c1, used) = PsshBox::parse(&b64(C1)).unwrap();
        assert_eq!(used, 52);
        assert_eq!(c1.version, 1);
        assert_eq!(c1.system(), Some(DrmSystem::CommonPssh));
        assert_eq!(
            c1.key_ids,
            vec!["6c5f5206-7d98-4808-84d8-94f132c1e9fe".parse().unwrap()]
        );
        assert!(c1.data.is_empty());
        assert_eq!(c1.to_base64(), C1);

        let (c2, used) = PsshBox::parse(&b64(C2)).unwrap();
        assert_eq!(
            (used, c2.version, c2.key_ids.len(), c2.data.len()),
            (32, 0, 0, 0)
        );
    }

    #[test]
    fn parse_all_reads_concatenated_boxes_and_rejects_garbage_after_them() {
        let mut bytes = b64(W1);
        bytes.extend(b64(C1));
        let boxes = PsshBox::parse_all(&bytes).unwrap();
        assert_eq!(boxes.len(), 2);
        assert_eq!(boxes[1].system(), Some(DrmSystem::CommonPssh));
        assert!(PsshBox::parse_all(&[]).unwrap().is_empty());
        bytes.push(0);
        assert!(matches!(
            PsshBox::parse_all(&bytes),
            Err(DrmError::Truncated { .. })
        ));
    }

    #[test]
    fn length_mismatches_are_errors() {
        let good = b64(W1);
        // Declared size larger than the input.
        let mut long = good.clone();
        long[3] += 1;
        assert!(matches!(
            PsshBox::parse(&long),
            Err(DrmError::Truncated { .. })
        ));
        // Declared size leaving a byte after the data.
        let mut extra = good.clone();
        extra.push(0);
        extra[3] += 1;
        assert!(matches!(
            PsshBox::parse(&extra),
            Err(DrmError::InvalidPssh(_))
        ));
        // DataSize larger than the box.
        let mut data_size = good.clone();
        data_size[31] += 1;
        assert!(matches!(
            PsshBox::parse(&data_size),
            Err(DrmError::Truncated { .. })
        ));
        // Wrong type, unsupported version, size smaller than the header.
        let mut not_pssh = good.clone();
        not_pssh[4] = b'x';
        assert!(matches!(
            PsshBox::parse(&not_pssh),
            Err(DrmError::NotPssh { .. })
        ));
        let mut v2 = good.clone();
        v2[8] = 2;
        assert_eq!(
            PsshBox::parse(&v2),
            Err(DrmError::UnsupportedPsshVersion(2))
        );
        let mut tiny = good;
        tiny[3] = 4;
        assert!(PsshBox::parse(&tiny).is_err());
        // A v1 KID count far beyond the input must fail without allocating.
        let mut huge = b64(C1);
        huge[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            PsshBox::parse(&huge),
            Err(DrmError::Truncated { .. })
        ));
    }

    #[test]
    fn accepts_the_64_bit_and_to_end_size_forms() {
        let good = b64(W1);
        let mut large = vec![0, 0, 0, 1];
        large.extend_from_slice(b"pssh");
        large.extend_from_slice(&(good.len() as u64 + 8).to_be_bytes());
        large.extend_from_slice(&good[8..]);
        let (b, used) = PsshBox::parse(&large).unwrap();
        assert_eq!(used, large.len());
        assert_eq!(b.to_bytes(), good);

        let mut to_end = good.clone();
        to_end[..4].copy_from_slice(&[0; 4]);
        assert_eq!(PsshBox::parse(&to_end).unwrap().0.to_bytes(), good);
    }

    fn arb_box() -> impl Strategy<Value = PsshBox> {
        (
            0_u8..=1,
            0_u32..(1 << 24),
            any::<[u8; 16]>(),
            proptest::collection::vec(any::<[u8; 16]>(), 0..5),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(version, flags, sid, kids, data)| PsshBox {
                version,
                flags,
                system_id: Uuid::from_bytes(sid),
                key_ids: if version == 1 {
                    kids.into_iter().map(KeyId::from_bytes).collect()
                } else {
                    vec![]
                },
                data,
            })
    }

    proptest! {
        #[test]
        fn parse_inverts_to_bytes(b in arb_box()) {
            let bytes = b.to_bytes();
            let (parsed, used) = PsshBox::parse(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(parsed, b);
        }

        #[test]
        fn parse_all_inverts_concatenation(boxes in proptest::collection::vec(arb_box(), 0..4)) {
            let bytes: Vec<u8> = boxes.iter().flat_map(PsshBox::to_bytes).collect();
            prop_assert_eq!(PsshBox::parse_all(&bytes).unwrap(), boxes);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = PsshBox::parse_all(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutated_boxes(b in arb_box(), idx in any::<usize>(), val in any::<u8>()) {
            let mut bytes = b.to_bytes();
            let i = idx % bytes.len();
            bytes[i] = val;
            let _ = PsshBox::parse_all(&bytes);
        }
    }
}
