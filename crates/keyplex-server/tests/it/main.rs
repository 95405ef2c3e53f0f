//! Integration tests: each drives a real keyplex server over HTTP on a loopback port.
//! One test binary (one link step) with a module per interface.

mod admin;
mod auth;
mod clearkey;
mod common;
mod cpix;
mod cpix_bad_input;
mod drm_systems;
mod entitlement;
mod get_cpix;
mod harmonic;
mod hls_keys;
mod hostile;
mod landing;
mod licence_proxy;
mod nagra;
mod openapi;
mod pallycon;
mod players;
mod rate_limit;
mod speke;
mod speke_sigv4;
mod ssm;
mod widevine_api;
mod witness;
