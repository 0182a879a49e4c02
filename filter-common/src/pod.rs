//! `aya::Pod` for the map types: they are plain `#[repr(C)]` data with every
//! byte accounted for by a field (explicit padding), so any bit pattern is a
//! valid value.
use crate::maps::*;

macro_rules! pod {
    ($($t:ty),* $(,)?) => { $(unsafe impl aya::Pod for $t {})* };
}

pod!(ActiveConfig, GenerationMeta, V4LongKey, V6Key, PrefixEntry, L4Set, L4Rule, Counter, DomainEntry, FlowKey, BlockedFlow, TlsPending, SigRule, SigContent, BanKey, Ban, SigEvent, RateLimit, RlKey, RlState, ProtectStats, Sample, VerifiedKey);
