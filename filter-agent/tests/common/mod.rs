//! Shared test helpers: seeded packet and rule-set generators.
#![allow(dead_code)]
pub mod pktgen;
pub mod rulegen;

/// Seed from `EDGEFILTER_SEED` (to replay a failure) or from the clock.
pub fn seed() -> u64 {
    match std::env::var("EDGEFILTER_SEED") {
        Ok(s) => s.parse().expect("EDGEFILTER_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}
