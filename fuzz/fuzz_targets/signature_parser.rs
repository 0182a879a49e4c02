//! Signature packs, the normaliser and the HTTP splitter on arbitrary input:
//! nothing may panic, loop or blow up, and the results keep their invariants.
//!
//!     cargo +nightly fuzz run signature_parser -- -max_total_time=120
#![no_main]

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use filter_common::signatures::{http_regions, normalise, normalise_request, parse_pack, MAX_NORMALISE_INPUT};
use libfuzzer_sys::fuzz_target;

fn vars() -> &'static HashMap<String, String> {
    static VARS: OnceLock<HashMap<String, String>> = OnceLock::new();
    VARS.get_or_init(|| {
        [
            ("HOME_NET", "[192.0.2.0/24,2001:db8::/32]"),
            ("EXTERNAL_NET", "!$HOME_NET"),
            ("HTTP_PORTS", "[80,8080]"),
            ("LOOP", "[10.0.0.0/8,$LOOP]"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for skip in [false, true] {
        match parse_pack(Path::new("fuzz.rules"), &text, vars(), skip) {
            Ok(pack) => {
                for rule in &pack.rules {
                    assert!(rule.contents.iter().any(|c| !c.negated));
                    assert!(rule.contents.iter().all(|c| !c.bytes.is_empty()));
                    // The rule's own contents as a payload, and the input.
                    let _ = rule.matches_payload(data, http_regions(data).as_ref());
                    let own: Vec<u8> = rule.contents.iter().flat_map(|c| c.bytes.iter().copied()).collect();
                    let _ = rule.matches_payload(&own, http_regions(&own).as_ref());
                }
            }
            Err(errors) => assert!(!errors.0.is_empty()),
        }
    }

    let n = normalise(data);
    assert!(n.len() <= data.len().min(MAX_NORMALISE_INPUT));
    if let Some(r) = http_regions(data) {
        let cuts = [
            r.method.start,
            r.method.end,
            r.uri.start,
            r.uri.end,
            r.header.start,
            r.host.start,
            r.host.end,
            r.header.end,
            r.body.start,
            r.body.end,
        ];
        assert!(cuts.windows(2).all(|w| w[0] <= w[1]) && r.body.end == data.len(), "{r:?}");
    }
    let (n, r) = normalise_request(data);
    if let Some(r) = r {
        assert!(r.body.end == n.len() && r.uri.end <= r.header.start && r.host.end <= r.header.end);
    }
});
