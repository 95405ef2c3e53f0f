//! `keyplex-bench-fill DATA_DIR TENANT COUNT`: stores COUNT new keys for TENANT in the SQLite
//! store of a keyplex data directory (`DATA_DIR/keyplex.sqlite`, sealed under
//! `DATA_DIR/master.key`, both created if missing), the way `keyplex serve --data DATA_DIR`
//! finds them. Keys go through `UnauditedKeys::ensure_keys` (the same write path as the
//! server's, generated and sealed the same way, without a `key.created` audit event) in
//! batches of `BATCH` keys, one transaction each. Key number n (0-based) has kid `f1110000-0000-4000-8000-<n as 12 hex digits>` and content id
//! `fill-<n / 4>` (four keys per content), so that a load generator can ask for any stored key
//! (bench/wrk.lua, mode `stored`); key values and IVs are random. The server must not be
//! running on the directory.
//!
//! Bench-only: it exists so that bench/run.sh can measure the server with a million stored
//! keys without sending a million requests first.

use std::path::PathBuf;
use std::time::Instant;

use keyplex_crypto::master::MasterKey;
use keyplex_crypto::random;
use keyplex_store::{KeyMaterial, KeyRequest, SqliteStore, UnauditedKeys as _};
use keyplex_types::{ContentId, KeyId, KeyPeriod, TenantId};

/// Keys per `ensure_keys` call (one transaction, one fsync).
const BATCH: usize = 20_000;
/// Keys per content id.
const KEYS_PER_CONTENT: usize = 4;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, tenant, count] = args.as_slice() else {
        return Err("usage: keyplex-bench-fill DATA_DIR TENANT COUNT".into());
    };
    let dir = PathBuf::from(dir);
    let tenant = TenantId::parse(tenant)?;
    let count: usize = count.parse()?;
    std::fs::create_dir_all(&dir)?;
    let (master, _) = MasterKey::load_or_create(&dir.join("master.key"))?;
    let store = SqliteStore::open(&dir.join("keyplex.sqlite"), master).await?;
    let started = Instant::now();
    let mut stored = 0;
    while stored < count {
        let n = BATCH.min(count - stored);
        let mut requests = Vec::with_capacity(n);
        for i in stored..stored + n {
            requests.push(KeyRequest::ByKid {
                content_id: ContentId::parse(&format!("fill-{}", i / KEYS_PER_CONTENT))?,
                candidate: KeyMaterial {
                    kid: fill_kid(i as u64),
                    key: random::new_key_value()?,
                    iv: random::new_iv()?,
                },
                key_supplied: false,
                iv_supplied: false,
                track_type: None,
                period: KeyPeriod::Vod,
            });
        }
        store.ensure_keys(&tenant, &requests).await?;
        stored += n;
        if stored % 200_000 == 0 || stored == count {
            eprintln!(
                "fill: {stored} keys stored, {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    store.close().await;
    println!(
        "fill: {count} keys in {:.1} s ({:.0} keys/s)",
        started.elapsed().as_secs_f64(),
        count as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The kid of stored key number `n`: `f1110000-0000-4000-8000-<n:012x>`.
fn fill_kid(n: u64) -> KeyId {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&[0xf1, 0x11, 0x00, 0x00]);
    bytes[6] = 0x40;
    bytes[8] = 0x80;
    bytes[10..].copy_from_slice(&n.to_be_bytes()[2..]);
    KeyId::from_bytes(bytes)
}
