//! Differential tests against the independent `pssh-box` crate (dev-dependency only): each
//! implementation must read what the other writes and agree on system id and key ids.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{ContentKeyValue, EncryptionScheme, KeyId};
use proptest::prelude::*;
use pssh_box::{DRMKeyId, PsshData, ToBytes as _};

use crate::clearkey::common_pssh;
use crate::playready::{PlayReadyObject, playready_header_for, playready_pssh};
use crate::widevine::{WidevinePsshData, widevine_pssh};
use crate::{DrmSystem, PsshBox};

/// Parses with pssh-box, requiring exactly one box.
fn oracle_parse(bytes: &[u8]) -> pssh_box::PsshBox {
    let boxes = pssh_box::from_bytes(bytes).expect("pssh-box parses keyplex output");
    assert_eq!(boxes.len(), 1);
    boxes.iter().next().unwrap().clone()
}

fn oracle_kids(b: &pssh_box::PsshBox) -> Vec<KeyId> {
    b.key_ids
        .iter()
        .map(|k| KeyId::from_slice(&k.to_bytes()).unwrap())
        .collect()
}

fn kid(text: &str) -> KeyId {
    text.parse().unwrap()
}

#[test]
fn oracle_reads_keyplex_widevine_box() {
    let kids = [
        kid("c14f0709-f2b9-4427-916b-61b52586506a"),
        kid("8b029e51-d56a-44bd-910f-d4b5fd90fba2"),
    ];
    let ours = widevine_pssh(
        &kids,
        Some("acme"),
        Some(b"movie-1"),
        Some(EncryptionScheme::Cbcs),
        Some(9),
    );
    let theirs = oracle_parse(&ours.to_bytes());
    assert_eq!(theirs.version, 0);
    assert_eq!(
        theirs.system_id.to_bytes(),
        DrmSystem::Widevine.system_id().as_bytes()
    );
    let PsshData::Widevine(data) = &theirs.pssh_data else {
        panic!("not Widevine: {:?}", theirs.pssh_data)
    };
    let their_kids: Vec<KeyId> = data
        .key_id
        .iter()
        .map(|k| KeyId::from_slice(k).unwrap())
        .collect();
    assert_eq!(their_kids, kids);
    assert_eq!(data.provider.as_deref(), Some("acme"));
    assert_eq!(data.content_id.as_deref(), Some(&b"movie-1"[..]));
    assert_eq!(
        data.protection_scheme,
        Some(EncryptionScheme::Cbcs.fourcc_u32() as i32)
    );
    assert_eq!(data.crypto_period_index, Some(9));
}

#[test]
fn oracle_reads_keyplex_playready_boxes() {
    let k1 = kid("09e091ab-f838-41d2-9e35-58531fd19ec7");
    let key1 =
        ContentKeyValue::from_slice(&hex::decode("9cb061164b7013eaefcc7d6d18424c2c").unwrap())
            .unwrap();
    let header = playready_header_for(
        &[(k1, &key1)],
        EncryptionScheme::Cenc,
        Some("https://pr.example/x?a=1&b=2"),
    );
    for with_kids in [false, true] {
        let ours = playready_pssh(&header, with_kids).unwrap();
        let theirs = oracle_parse(&ours.to_bytes());
        assert_eq!(
            theirs.system_id.to_bytes(),
            DrmSystem::PlayReady.system_id().as_bytes()
        );
        assert_eq!(
            oracle_kids(&theirs),
            if with_kids { vec![k1] } else { vec![] }
        );
        let PsshData::PlayReady(data) = &theirs.pssh_data else {
            panic!("not PlayReady")
        };
        assert_eq!(data.record.len(), 1);
        let wrm = &data.record[0].record_value;
        assert_eq!(wrm.version, "4.0.0.0");
        // pssh-box keeps the KID bytes as written: the GUID (little-endian) order.
        let their_kid = &wrm.data.kids[0];
        assert_eq!(
            KeyId::from_guid_le_bytes(their_kid.content.clone().try_into().unwrap()),
            k1
        );
        assert_eq!(
            wrm.data
                .checksum
                .as_deref()
                .map(|c| B64.encode(c))
                .as_deref(),
            Some("w+OZVr8vzrQ=")
        );
        assert_eq!(
            wrm.data.la_url.as_deref(),
            Some("https://pr.example/x?a=1&b=2")
        );
    }
}

#[test]
fn oracle_reads_keyplex_common_box() {
    let kids = [
        kid("6c5f5206-7d98-4808-84d8-94f132c1e9fe"),
        kid("9eb4050d-e44b-4802-932e-27d75083e266"),
    ];
    let theirs = oracle_parse(&common_pssh(&kids).to_bytes());
    assert_eq!(theirs.version, 1);
    assert_eq!(
        theirs.system_id.to_bytes(),
        DrmSystem::CommonPssh.system_id().as_bytes()
    );
    assert_eq!(oracle_kids(&theirs), kids);
}

#[test]
fn keyplex_reads_oracle_widevine_and_playready_boxes() {
    let k = kid("4444aaaa-2222-bbbb-8888-eeee7777cccc");
    let mut wv = pssh_box::PsshBox::new_widevine();
    wv.add_key_id(DRMKeyId::try_from("4444aaaa2222bbbb8888eeee7777cccc").unwrap());
    if let PsshData::Widevine(ref mut pd) = wv.pssh_data {
        pd.key_id.push(k.as_bytes().to_vec());
        pd.provider = Some("pssh-box-rs".to_owned());
    }
    let (ours, used) = PsshBox::parse(&wv.to_bytes()).unwrap();
    assert_eq!(used, wv.to_bytes().len());
    assert_eq!(
        (ours.version, ours.system()),
        (1, Some(DrmSystem::Widevine))
    );
    assert_eq!(ours.key_ids, vec![k]);
    let data = WidevinePsshData::decode_from(&ours.data).unwrap();
    assert_eq!(data.key_ids(), vec![k]);
    assert_eq!(data.provider.as_deref(), Some("pssh-box-rs"));

    let pr = pssh_box::PsshBox::new_playready();
    let (ours, _) = PsshBox::parse(&pr.to_bytes()).unwrap();
    assert_eq!(ours.system(), Some(DrmSystem::PlayReady));
    assert!(
        PlayReadyObject::parse(&ours.data).is_ok(),
        "pssh-box's empty PlayReady Object parses"
    );
}

proptest! {
    #[test]
    fn both_agree_on_arbitrary_common_and_widevine_boxes(
        kids in proptest::collection::vec(any::<[u8; 16]>(), 0..5),
        provider in proptest::option::of("[a-z_]{1,12}"),
    ) {
        let kids: Vec<KeyId> = kids.into_iter().map(KeyId::from_bytes).collect();
        if !kids.is_empty() {
            let theirs = oracle_parse(&common_pssh(&kids).to_bytes());
            prop_assert_eq!(oracle_kids(&theirs), kids.clone());
        }
        let ours = widevine_pssh(&kids, provider.as_deref(), None, None, None);
        let theirs = oracle_parse(&ours.to_bytes());
        let PsshData::Widevine(data) = &theirs.pssh_data else { panic!("not Widevine") };
        prop_assert_eq!(&data.key_id, &kids.iter().map(|k| k.as_bytes().to_vec()).collect::<Vec<_>>());
        prop_assert_eq!(&data.provider, &provider);
    }
}
