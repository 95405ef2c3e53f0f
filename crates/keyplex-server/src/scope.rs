//! What one request did, noted while it runs and read once it is answered: the
//! [`crate::http::telemetry::track`] middleware opens a scope around every request; handlers and the
//! shared code they call note facts into it (who authenticated, which keys were delivered, what
//! went wrong); the middleware turns the notes into metrics, dashboard counts and audit events.
//!
//! A task-local keeps the handlers' signatures free of bookkeeping; noting outside a scope
//! (unit tests calling a function directly) does nothing.

use std::sync::Mutex;

use keyplex_types::{ContentId, KeyId};

/// Which interface a route belongs to (a bounded set: it is a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interface {
    Cpix,
    Speke,
    Nagra,
    Harmonic,
    GetCpix,
    /// PallyCon-compatible routes (and ATEME NEA-DVR's GET form).
    Pallycon,
    WidevineApi,
    ClearKey,
    Hls,
    Widevine,
    PlayReady,
    FairPlay,
    Prm,
    /// The licence proxy of a tenant-defined DRM system (`/{tenant}/licences/{name}`).
    DefinedDrm,
    /// A licence through a secure session; the DRM is noted by the handler.
    SsmLicence,
    /// Session setup, heartbeat, teardown.
    Ssm,
    Admin,
    Other,
}

/// What an interface is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Packagers asking for keys.
    Keys,
    /// Players asking for licences or keys.
    Licences,
    Sessions,
    Admin,
    Other,
}

impl Interface {
    /// How many interfaces there are (`Other` is the last): `interface as usize` indexes
    /// per-interface arrays.
    pub const COUNT: usize = Self::Other as usize + 1;

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cpix => "cpix",
            Self::Speke => "speke",
            Self::Nagra => "nagra",
            Self::Harmonic => "harmonic",
            Self::GetCpix => "get_cpix",
            Self::Pallycon => "pallycon",
            Self::WidevineApi => "widevine_api",
            Self::ClearKey => "clearkey",
            Self::Hls => "hls",
            Self::Widevine => "widevine",
            Self::PlayReady => "playready",
            Self::FairPlay => "fairplay",
            Self::Prm => "prm",
            Self::DefinedDrm => "defined_drm",
            Self::SsmLicence => "ssm_licence",
            Self::Ssm => "ssm",
            Self::Admin => "admin",
            Self::Other => "other",
        }
    }

    pub const fn kind(self) -> Kind {
        match self {
            Self::Cpix
            | Self::Speke
            | Self::Nagra
            | Self::Harmonic
            | Self::GetCpix
            | Self::Pallycon
            | Self::WidevineApi => Kind::Keys,
            Self::ClearKey
            | Self::Hls
            | Self::Widevine
            | Self::PlayReady
            | Self::FairPlay
            | Self::Prm
            | Self::DefinedDrm
            | Self::SsmLicence => Kind::Licences,
            Self::Ssm => Kind::Sessions,
            Self::Admin => Kind::Admin,
            Self::Other => Kind::Other,
        }
    }

    /// The DRM a licence interface serves (`None` for session licences until noted).
    pub const fn drm(self) -> Option<&'static str> {
        match self {
            Self::ClearKey => Some("clearkey"),
            Self::Hls => Some("hls"),
            Self::Widevine => Some("widevine"),
            Self::PlayReady => Some("playready"),
            Self::FairPlay => Some("fairplay"),
            Self::Prm => Some("prm"),
            Self::DefinedDrm => Some("defined"),
            _ => None,
        }
    }
}

/// The facts a request noted.
#[derive(Debug, Default)]
pub struct Notes {
    /// Set when the scope opens.
    pub interface: Option<Interface>,
    /// The client's address (text only when an audit event is written: [`client_text`]).
    pub client: Option<std::net::IpAddr>,
    /// Who authenticated (`basic:packager`, `entitlement:sub=viewer-1`).
    pub credential: Option<String>,
    pub content_id: Option<ContentId>,
    /// Keys handed out (or, for a denied licence, asked for).
    pub key_ids: Vec<KeyId>,
    pub keys_created: u64,
    pub keys_stored: u64,
    /// The DRM of a session licence.
    pub drm: Option<&'static str>,
    /// The error the request was answered with.
    pub error: Option<String>,
    /// What the audit event of a successful request keeps besides the keys.
    pub detail: Option<String>,
    /// Refused at once because the key store's write queue was full (counted in /metrics).
    pub store_busy: bool,
}

tokio::task_local! {
    static NOTES: Mutex<Notes>;
}

/// Runs `f` with an empty set of notes and returns its output with the notes.
pub async fn with_notes<F: Future>(
    interface: Interface,
    client: Option<std::net::IpAddr>,
    f: F,
) -> (F::Output, Notes) {
    let notes = Notes {
        interface: Some(interface),
        client,
        ..Notes::default()
    };
    NOTES
        .scope(Mutex::new(notes), async move {
            let out = f.await;
            let notes = NOTES
                .try_with(|n| match n.lock() {
                    Ok(mut n) => std::mem::take(&mut *n),
                    Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
                })
                .unwrap_or_default();
            (out, notes)
        })
        .await
}

fn note(f: impl FnOnce(&mut Notes)) {
    let _ = NOTES.try_with(|n| match n.lock() {
        Ok(mut n) => f(&mut n),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    });
}

/// Who is asking and through what, as noted so far: (interface, credential, client).
pub fn who() -> Option<(Interface, String, String)> {
    NOTES
        .try_with(|n| {
            let n = match n.lock() {
                Ok(n) => n,
                Err(poisoned) => poisoned.into_inner(),
            };
            n.interface.map(|i| {
                (
                    i,
                    n.credential.clone().unwrap_or_else(|| "-".to_owned()),
                    client_text(n.client),
                )
            })
        })
        .ok()
        .flatten()
}

/// The client address as audit events and logs show it (`-` when unknown).
pub fn client_text(client: Option<std::net::IpAddr>) -> String {
    match client {
        None => "-".to_owned(),
        // Written octet by octet: `Ipv4Addr`'s `Display` goes through the formatter's padding
        // machinery, ~2,700 instructions, for every audited request.
        Some(std::net::IpAddr::V4(ip)) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        Some(ip) => ip.to_string(),
    }
}

pub fn note_credential(credential: &str) {
    note(|n| n.credential = Some(keyplex_types::truncate_chars(credential, 128)));
}

/// Keys a packager request resolved: `created` of them were new.
pub fn note_keys(content_id: &ContentId, key_ids: impl IntoIterator<Item = KeyId>, created: u64) {
    note(|n| {
        n.content_id.get_or_insert_with(|| content_id.clone());
        let before = n.key_ids.len() as u64;
        n.key_ids.extend(key_ids);
        let total = n.key_ids.len() as u64 - before;
        n.keys_created += created;
        n.keys_stored += total.saturating_sub(created);
    });
}

/// Keys a licence request asked for (content known when the key is).
pub fn note_licence_keys(content_id: Option<&ContentId>, key_ids: &[KeyId]) {
    note(|n| {
        if let Some(content) = content_id {
            n.content_id.get_or_insert_with(|| content.clone());
        }
        for kid in key_ids {
            if !n.key_ids.contains(kid) {
                n.key_ids.push(*kid);
            }
        }
    });
}

pub fn note_drm(drm: &'static str) {
    note(|n| n.drm = Some(drm));
}

/// A fact worth keeping in the audit event of a request that succeeds (e.g. the DRM
/// metadata a NAGRA encoder sent).
pub fn note_detail(text: &str) {
    note(|n| n.detail = Some(keyplex_types::truncate_chars(text, 2000)));
}

pub fn note_error(message: &str) {
    note(|n| n.error = Some(keyplex_types::truncate_chars(message, 300)));
}

pub fn note_store_busy() {
    note(|n| n.store_busy = true);
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn client_addresses_are_written_as_display_writes_them() {
        for octets in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [9, 10, 99, 100],
            [255, 199, 200, 1],
        ] {
            let ip = IpAddr::V4(Ipv4Addr::from(octets));
            assert_eq!(super::client_text(Some(ip)), ip.to_string());
        }
        for byte in 0..=255u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(byte, byte, 0, byte));
            assert_eq!(super::client_text(Some(ip)), ip.to_string());
        }
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(super::client_text(Some(v6)), "::1");
        assert_eq!(super::client_text(None), "-");
    }
}
