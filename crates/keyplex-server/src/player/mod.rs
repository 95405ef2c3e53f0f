//! The player side: licences and keys for players — W3C Clear Key, HLS AES-128 keys, the
//! licence proxy per DRM and secure sessions (SSM). Every route verifies the entitlement
//! (`crate::entitlement`) before it reads a key. Uses the core and `http`; never `packager` or
//! `operator`.

pub mod clearkey;
pub mod hls_keys;
pub mod licence_proxy;
pub mod ssm;
