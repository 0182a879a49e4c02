//! Domain rules: names normalise to one canonical form and every limit is
//! enforced at its exact boundary; the three pattern scopes match on label
//! boundaries only; RPZ zones and hosts lists import into rules, and every
//! construct the filter cannot enforce is rejected with its line.
use std::path::{Path, PathBuf};

use filter_common::rules::{
    load_hosts, load_rpz, normalise_name, parse_hosts, parse_rpz, Direction, DomainPattern, DomainScope, HostsEntry,
    RpzAction, RpzDomainRule, RpzIpRule, RpzZone, MAX_PATTERN_LABELS,
};
use ipnet::IpNet;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/feeds").join(name)
}

fn norm(text: &str) -> String {
    normalise_name(text).unwrap_or_else(|e| panic!("{text:?} should be valid, got: {e}"))
}

fn norm_err(text: &str) -> String {
    match normalise_name(text) {
        Ok(n) => panic!("{text:?} should be rejected, normalised to {n:?}"),
        Err(e) => e,
    }
}

fn pattern(text: &str) -> DomainPattern {
    DomainPattern::parse(text).unwrap_or_else(|e| panic!("{text:?} should be a valid pattern, got: {e}"))
}

fn pattern_err(text: &str) -> String {
    match DomainPattern::parse(text) {
        Ok(p) => panic!("{text:?} should be rejected, parsed {p:?}"),
        Err(e) => e,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A name `len` bytes long in all (dots included), of labels as long as allowed.
fn name_of_len(len: usize) -> String {
    // 63-byte labels joined by dots, the last one shortened to fit.
    let mut name = String::new();
    while name.len() < len {
        if !name.is_empty() {
            name.push('.');
        }
        let room = (len - name.len()).min(63);
        name.push_str(&"a".repeat(room));
    }
    assert_eq!(name.len(), len);
    name
}

// ---------------------------------------------------------------------------
// normalise_name

#[test]
fn normalises_case_whitespace_and_one_trailing_dot() {
    assert_eq!(norm("Example.COM"), "example.com");
    assert_eq!(norm("  ads.Example.com.  "), "ads.example.com");
    assert_eq!(norm("example.com."), "example.com");
    assert_eq!(norm("com"), "com");
    assert_eq!(norm("_dmarc.example.com"), "_dmarc.example.com");
    assert_eq!(norm("a-b.0-9.example"), "a-b.0-9.example");
    // Two trailing dots: only one is removed, the other is an empty label.
    assert_eq!(norm_err("example.com.."), "empty label in `example.com..`");
}

#[test]
fn idn_names_become_a_labels() {
    assert_eq!(norm("bücher.example"), "xn--bcher-kva.example");
    assert_eq!(norm("BÜCHER.example."), "xn--bcher-kva.example");
    // Already in A-label form: unchanged, case folded.
    assert_eq!(norm("XN--BCHER-KVA.example"), "xn--bcher-kva.example");
    // UTS-46 mapping: ideographic full stop separates labels, ß is kept (non-transitional).
    assert_eq!(norm("bücher。example"), "xn--bcher-kva.example");
    assert_eq!(norm("straße.example"), "xn--strae-oqa.example");
    // A label claiming to be punycode must decode.
    assert!(
        norm_err("xn--a.example").contains("not a valid internationalised domain name"),
        "{}",
        norm_err("xn--a.example")
    );
}

#[test]
fn empty_names_and_labels_are_rejected() {
    assert_eq!(norm_err(""), "empty name");
    assert_eq!(norm_err("   "), "empty name");
    assert_eq!(norm_err("."), "empty name");
    assert_eq!(norm_err("a..example"), "empty label in `a..example`");
    assert_eq!(norm_err(".example"), "empty label in `.example`");
}

#[test]
fn label_length_limit_is_63_bytes() {
    let ok = format!("{}.example", "a".repeat(63));
    assert_eq!(norm(&ok), ok);
    let long = format!("{}.example", "a".repeat(64));
    assert_eq!(norm_err(&long), "label `aaaaaaaaaaaaaaaaaaaa…` is 64 bytes; a label has at most 63");
}

#[test]
fn name_length_limit_is_253_bytes() {
    // Four labels, within the label-count limit.
    let ok = name_of_len(253);
    assert_eq!(norm(&ok), ok);
    assert_eq!(norm(&format!("{ok}.")), ok, "the trailing dot is not counted");
    assert_eq!(norm_err(&name_of_len(254)), "name is 254 bytes; a name has at most 253");
    assert_eq!(norm_err(&name_of_len(260)), "name is 260 bytes; a name has at most 253");
}

#[test]
fn label_count_limit_is_16() {
    assert_eq!(MAX_PATTERN_LABELS, 16);
    let sixteen = vec!["a"; 16].join(".");
    assert_eq!(norm(&sixteen), sixteen);
    let seventeen = vec!["a"; 17].join(".");
    assert_eq!(norm_err(&seventeen), "name has 17 labels; rules hold at most 16");
}

#[test]
fn only_letters_digits_hyphen_and_underscore_are_allowed() {
    assert_eq!(norm_err("ex!ample.com"), "character `!` not allowed in a domain name");
    assert_eq!(norm_err("ads example.com"), "character U+0020 not allowed in a domain name");
    assert_eq!(norm_err("*.example.com"), "character `*` not allowed in a domain name");
    assert_eq!(norm_err("192.0.2.1/24"), "character `/` not allowed in a domain name");
    assert_eq!(norm_err("http://example.com"), "character `:` not allowed in a domain name");
    assert_eq!(norm_err("ex\\.ample.com"), "character `\\` not allowed in a domain name");
}

#[test]
fn labels_must_not_start_or_end_with_a_hyphen() {
    assert_eq!(norm_err("-ads.example.com"), "label `-ads` starts with `-`");
    assert_eq!(norm_err("ads-.example.com"), "label `ads-` ends with `-`");
    assert_eq!(norm_err("ads.example.-"), "label `-` starts with `-`");
    // Hyphens inside, also in the 3rd and 4th position, are fine.
    assert_eq!(norm("ab--cd.example.com"), "ab--cd.example.com");
}

// ---------------------------------------------------------------------------
// DomainPattern

#[test]
fn patterns_parse_into_their_scope_and_display_canonically() {
    let cases = [
        ("example.com", DomainScope::Exact, "example.com", "example.com"),
        ("Example.COM.", DomainScope::Exact, "example.com", "example.com"),
        ("*.example.com", DomainScope::Subdomains, "example.com", "*.example.com"),
        ("*.Tracker.Example.NET.", DomainScope::Subdomains, "tracker.example.net", "*.tracker.example.net"),
        (".example.com", DomainScope::ApexAndSubdomains, "example.com", ".example.com"),
        (" .bücher.example ", DomainScope::ApexAndSubdomains, "xn--bcher-kva.example", ".xn--bcher-kva.example"),
    ];
    for (text, scope, name, display) in cases {
        let p = pattern(text);
        assert_eq!(p, DomainPattern { name: name.to_string(), scope }, "{text}");
        assert_eq!(p.to_string(), display, "{text}");
        // The display form parses back to the same pattern.
        assert_eq!(pattern(&p.to_string()), p, "{text}");
        assert_eq!(display.parse::<DomainPattern>(), Ok(p));
    }
}

#[test]
fn wildcard_only_as_the_whole_first_label() {
    for text in
        ["ads.*.example.com", "*ads.example.com", "ads*.example.com", "*.*.example.com", "example.*", "**.example.com"]
    {
        assert_eq!(pattern_err(text), "`*` is allowed only as the whole first label", "{text}");
    }
    for text in ["*", "*.", ".", ".."] {
        let e = pattern_err(text);
        assert!(e.contains("has no name") && e.contains("every name"), "{text}: {e}");
    }
}

#[test]
fn pattern_names_are_validated_like_names() {
    assert_eq!(pattern_err("*.ex!ample.com"), "character `!` not allowed in a domain name");
    assert_eq!(pattern_err("..example.com"), "empty label in `.example.com`");
    // The label limit counts the name without the `*`.
    let sixteen = vec!["a"; 16].join(".");
    assert_eq!(pattern(&format!("*.{sixteen}")).name, sixteen);
    assert_eq!(pattern(&format!(".{sixteen}")).name, sixteen);
    assert_eq!(pattern_err(&format!("*.a.{sixteen}")), "name has 17 labels; rules hold at most 16");
}

#[test]
fn exact_matches_that_name_only() {
    let p = pattern("ads.example.com");
    assert!(p.matches("ads.example.com"));
    assert!(!p.matches("a.ads.example.com"));
    assert!(!p.matches("example.com"));
    assert!(!p.matches("badads.example.com"));
    assert!(!p.matches("ads.example.co"));
}

#[test]
fn subdomains_match_strictly_below_on_a_label_boundary() {
    let p = pattern("*.example.com");
    assert!(p.matches("a.example.com"));
    assert!(p.matches("a.b.example.com"));
    assert!(!p.matches("example.com"), "the apex is not covered by a wildcard");
    assert!(!p.matches("badexample.com"), "not a label boundary");
    assert!(!p.matches("a.badexample.com"));
    assert!(!p.matches("example.com.evil.example"));
    assert!(!p.matches("com"));
}

#[test]
fn apex_and_subdomains_match_the_name_and_below() {
    let p = pattern(".example.com");
    assert!(p.matches("example.com"));
    assert!(p.matches("a.example.com"));
    assert!(p.matches("a.b.example.com"));
    assert!(!p.matches("badexample.com"), "not a label boundary");
    assert!(!p.matches("com"));
    assert!(!p.matches("example.org"));
}

#[test]
fn scopes_order_and_hash_for_use_as_keys() {
    let mut v = [pattern(".b.example"), pattern("*.a.example"), pattern("a.example")];
    v.sort();
    assert_eq!(v.iter().map(|p| p.to_string()).collect::<Vec<_>>(), ["a.example", "*.a.example", ".b.example"]);
    let set: std::collections::HashSet<_> = [pattern("A.example"), pattern("a.example.")].into_iter().collect();
    assert_eq!(set.len(), 1);
}

// ---------------------------------------------------------------------------
// RPZ

fn rpz(text: &str) -> RpzZone {
    parse_rpz(Path::new("z.rpz"), text).unwrap_or_else(|e| panic!("expected a valid zone, got:\n{e}"))
}

/// The errors as `file:line: message` strings.
fn rpz_errors(text: &str) -> Vec<String> {
    match parse_rpz(Path::new("z.rpz"), text) {
        Ok(zone) => panic!("expected errors, parsed {zone:#?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn domain(p: &str, action: RpzAction, line: usize) -> RpzDomainRule {
    RpzDomainRule { pattern: pattern(p), action, line }
}

fn ip(n: &str, direction: Direction, action: RpzAction, line: usize) -> RpzIpRule {
    RpzIpRule { net: net(n), direction, action, line }
}

const HEAD: &str = "$ORIGIN rpz.example.net.\n";

/// One record after the `$ORIGIN` line: its errors (it is on line 2).
fn one_record_errors(record: &str) -> Vec<String> {
    rpz_errors(&format!("{HEAD}{record}\n"))
}

#[test]
fn rpz_realistic_zone() {
    let text = "\
; policy zone for the example resolver
$TTL 1h
$ORIGIN RPZ.Example.NET.
@   IN  SOA ns1.example.net. hostmaster.example.net. (
        2026011001 ; serial ; with a second ; in the comment
        3600       ; refresh
        600 600000 ; retry, expire
        300 )      ; minimum
    IN  NS  ns1.example.net.
@   3600 NS ns2.example.net.

ads.example.com             CNAME .
*.ads.example.com           CNAME .
tracker.example.net  300 IN CNAME rpz-drop.
                     IN 300 CNAME rpz-drop.   ; same owner again: listed once
Phish.Example.ORG.rpz.example.net.  CNAME RPZ-DROP.
cdn.ads.example.com         CNAME rpz-passthru.
bücher.example              CNAME .
32.10.2.0.192.rpz-ip        CNAME .
24.0.100.51.198.rpz-ip      CNAME rpz-drop.
128.1.zz.db8.2001.rpz-ip    CNAME .
48.zz.bad.db8.2001.rpz-ip   CNAME rpz-passthru.
64.zz.1.0.db8.2001.rpz-ip   CNAME rpz-drop.
128.8.7.6.5.4.3.db8.2001.rpz-ip CNAME .
26.64.113.0.203.rpz-client-ip CNAME rpz-drop.
$ORIGIN rpz-client-ip.rpz.example.net.
56.zz.1.db8.2001            CNAME .
";
    let zone = rpz(text);
    assert_eq!(zone.origin, "rpz.example.net");
    use RpzAction::*;
    assert_eq!(
        zone.domains,
        vec![
            domain("ads.example.com", Nxdomain, 12),
            domain("*.ads.example.com", Nxdomain, 13),
            domain("tracker.example.net", Drop, 14),
            domain("phish.example.org", Drop, 16),
            domain("cdn.ads.example.com", Passthru, 17),
            domain("xn--bcher-kva.example", Nxdomain, 18),
        ]
    );
    assert_eq!(
        zone.ips,
        vec![
            ip("192.0.2.10/32", Direction::Dst, Nxdomain, 19),
            ip("198.51.100.0/24", Direction::Dst, Drop, 20),
            ip("2001:db8::1/128", Direction::Dst, Nxdomain, 21),
            ip("2001:db8:bad::/48", Direction::Dst, Passthru, 22),
            ip("2001:db8:0:1::/64", Direction::Dst, Drop, 23),
            ip("2001:db8:3:4:5:6:7:8/128", Direction::Dst, Nxdomain, 24),
            ip("203.0.113.64/26", Direction::Src, Drop, 25),
            ip("2001:db8:1::/56", Direction::Src, Nxdomain, 27),
        ]
    );
    // A wildcard trigger does not cover its apex.
    assert!(!zone.domains[1].pattern.matches("ads.example.com"));
    assert!(zone.domains[1].pattern.matches("x.ads.example.com"));
}

#[test]
fn rpz_quotes_protect_semicolons_and_parentheses() {
    // TXT is not accepted at the apex, but a `;` or `(` in quotes must not
    // start a comment or a group: the error is about the TXT record, on
    // its own line, and the next record still parses.
    let errors =
        rpz_errors(&format!("{HEAD}@ TXT \"a ; b ( c\"\nads.example.com CNAME .\nx.example.com A 192.0.2.1\n"));
    assert_eq!(
        errors,
        [
            "z.rpz:2: `TXT` record at the zone apex is not supported: the apex holds only SOA and NS",
            "z.rpz:4: `x.example.com`: local data (`A` record) is not supported",
        ]
    );
}

#[test]
fn rpz_absolute_sub_origin_and_at_sign() {
    let zone = rpz("$ORIGIN rpz.example.net.\n$ORIGIN sub.rpz.example.net.\nads CNAME .\n@ CNAME rpz-drop.\n$ORIGIN rpz-ip.rpz.example.net.\n32.1.2.0.192 CNAME .\n");
    assert_eq!(zone.origin, "rpz.example.net");
    assert_eq!(zone.domains, vec![domain("ads.sub", RpzAction::Nxdomain, 3), domain("sub", RpzAction::Drop, 4)]);
    assert_eq!(zone.ips, vec![ip("192.0.2.1/32", Direction::Dst, RpzAction::Nxdomain, 6)]);
    // A relative $ORIGIN is relative to the one in force.
    let zone = rpz("$ORIGIN rpz.example.net.\n$ORIGIN sub\nads CNAME .\n");
    assert_eq!(zone.domains, vec![domain("ads.sub", RpzAction::Nxdomain, 3)]);
}

#[test]
fn rpz_empty_zone_with_origin_is_valid() {
    let zone = rpz("$ORIGIN rpz.example.net.\n@ SOA ns. host. 1 2 3 4 5\n@ NS ns.\n");
    assert_eq!(zone, RpzZone { origin: "rpz.example.net".to_string(), domains: vec![], ips: vec![] });
}

#[test]
fn rpz_needs_an_origin_before_the_first_record() {
    assert_eq!(
        rpz_errors("; comment\n$TTL 300\nads.example.com CNAME .\nmore.example.com CNAME .\n$ORIGIN rpz.example.net.\nok.example.com CNAME .\n"),
        ["z.rpz:3: no $ORIGIN before the first record"]
    );
    assert_eq!(
        rpz_errors("; nothing but comments\n\n"),
        ["z.rpz: no $ORIGIN: a policy zone file names its zone with `$ORIGIN name.`"]
    );
    assert_eq!(rpz_errors("$ORIGIN rpz\n"), ["z.rpz:1: $ORIGIN `rpz` must be absolute (end with `.`)"]);
    assert_eq!(rpz_errors("$ORIGIN .\n"), ["z.rpz:1: $ORIGIN `.`: a policy zone cannot be the root"]);
    assert_eq!(rpz_errors("$ORIGIN a b.\n"), ["z.rpz:1: $ORIGIN takes one name; found 2 fields"]);
    assert_eq!(rpz_errors("$ORIGIN r!z.\n"), ["z.rpz:1: $ORIGIN `r!z.`: character `!` not allowed in a domain name"]);
}

#[test]
fn rpz_directives() {
    assert_eq!(one_record_errors("$INCLUDE other.rpz"), ["z.rpz:2: directive `$INCLUDE` is not supported"]);
    assert_eq!(one_record_errors("$GENERATE 1-9 x$ CNAME ."), ["z.rpz:2: directive `$GENERATE` is not supported"]);
    assert_eq!(one_record_errors("$TTL 5x"), ["z.rpz:2: $TTL `5x` is not valid: expected seconds or units like 1h30m"]);
    assert_eq!(one_record_errors("$TTL"), ["z.rpz:2: $TTL takes one value; found 0 fields"]);
    assert_eq!(
        one_record_errors("$ORIGIN other.example.\nads CNAME ."),
        ["z.rpz:2: $ORIGIN `other.example.` is outside the zone `rpz.example.net.`"]
    );
    // Valid TTL forms.
    rpz(&format!("$TTL 300\n$TTL 1h30m\n$TTL 2D\n$TTL 1w\n{HEAD}a.example 1h IN CNAME .\nb.example IN 2d3h CNAME .\n"));
}

#[test]
fn rpz_owner_names_must_be_inside_the_zone() {
    assert_eq!(
        one_record_errors("ads.example.com. CNAME ."),
        ["z.rpz:2: owner `ads.example.com.` is outside the zone `rpz.example.net.`"]
    );
    assert_eq!(
        one_record_errors("ads.badrpz.example.net. CNAME ."),
        ["z.rpz:2: owner `ads.badrpz.example.net.` is outside the zone `rpz.example.net.`"]
    );
    // The continuation of a rejected owner is not reported again.
    assert_eq!(
        one_record_errors("ads.example.com. CNAME .\n  CNAME rpz-drop."),
        ["z.rpz:2: owner `ads.example.com.` is outside the zone `rpz.example.net.`"]
    );
    assert_eq!(
        rpz_errors("$ORIGIN rpz.example.net.\n  CNAME .\n"),
        ["z.rpz:2: record starts with a blank (same owner as the previous record) but there is no previous record"]
    );
}

#[test]
fn rpz_rejected_actions_with_their_reasons() {
    let cases = [
        ("ads.example.com CNAME *.", "`ads.example.com`: action `CNAME *.` (NODATA) is not supported: use `CNAME .` or `CNAME rpz-drop.`"),
        ("ads.example.com CNAME rpz-tcp-only.", "action `CNAME rpz-tcp-only.` is not supported"),
        ("ads.example.com CNAME RPZ-TCP-ONLY.", "action `CNAME rpz-tcp-only.` is not supported"),
        ("ads.example.com CNAME walled.example.net.", "CNAME to `walled.example.net.` (redirect) is not supported"),
        ("ads.example.com CNAME *.walled.example.net.", "CNAME to `*.walled.example.net.` (redirect) is not supported"),
        ("ads.example.com CNAME walled", "CNAME to `walled.rpz.example.net.` (redirect) is not supported"),
        (
            "ads.example.com CNAME rpz-drop",
            "CNAME target `rpz-drop` has no trailing dot, so it is a redirect to `rpz-drop.rpz.example.net.`; write `rpz-drop.`",
        ),
        (
            "ads.example.com CNAME ads.example.com.",
            "CNAME to the trigger itself (the obsolete passthru form) is not supported: write `CNAME rpz-passthru.`",
        ),
        ("ads.example.com CNAME", "CNAME has no target"),
        ("ads.example.com CNAME . .", "CNAME takes one target; found 2 fields"),
        ("ads.example.com A 192.0.2.1", "`ads.example.com`: local data (`A` record) is not supported"),
        ("ads.example.com 300 IN AAAA 2001:db8::1", "`ads.example.com`: local data (`AAAA` record) is not supported"),
        ("ads.example.com TXT \"blocked\"", "`ads.example.com`: local data (`TXT` record) is not supported"),
        ("ads.example.com NS ns1.example.net.", "`ads.example.com`: local data (`NS` record) is not supported"),
        ("ads.example.com SOA a. b. 1 2 3 4 5", "`ads.example.com`: SOA record below the zone apex"),
        ("@ CNAME .", "`CNAME` record at the zone apex is not supported: the apex holds only SOA and NS"),
        ("@ SOA a. b. 1 2 3", "SOA record has 5 fields; expected 7 (mname rname serial refresh retry expire minimum)"),
        ("ads.example.com", "record has no type"),
        ("ads.example.com 300 IN", "record has no type"),
        ("ads.example.com 5q CNAME .", "TTL `5q` is not valid: expected seconds or units like 1h30m"),
        ("ads.example.com CH CNAME .", "class `CH` is not supported: a policy zone is class IN"),
    ];
    for (record, needle) in cases {
        let errors = one_record_errors(record);
        assert_eq!(errors.len(), 1, "{record}: {errors:#?}");
        assert!(errors[0].starts_with("z.rpz:2: ") && errors[0].contains(needle), "{record}: {errors:#?}");
    }
}

#[test]
fn rpz_rejected_triggers_with_their_reasons() {
    let cases = [
        ("ns.example.net.rpz-nsdname CNAME .", "z.rpz:2: trigger rpz-nsdname is not supported"),
        ("32.1.2.0.192.rpz-nsip CNAME .", "z.rpz:2: trigger rpz-nsip is not supported"),
        ("24.1.2.0.192.rpz-ip CNAME .", "z.rpz:2: trigger `24.1.2.0.192.rpz-ip`: 192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?"),
        (
            "64.1.zz.db8.2001.rpz-client-ip CNAME .",
            "z.rpz:2: trigger `64.1.zz.db8.2001.rpz-client-ip`: 2001:db8::1/64 has host bits set; did you mean 2001:db8::/64?",
        ),
        ("33.1.2.0.192.rpz-ip CNAME .", "z.rpz:2: trigger `33.1.2.0.192.rpz-ip`: prefix length 33 is out of range: 1-32 for IPv4"),
        ("0.0.0.0.0.rpz-ip CNAME .", "z.rpz:2: trigger `0.0.0.0.0.rpz-ip`: prefix length 0 is out of range: 1-32 for IPv4"),
        ("129.1.zz.db8.2001.rpz-ip CNAME .", "z.rpz:2: trigger `129.1.zz.db8.2001.rpz-ip`: prefix length 129 is out of range: 1-128 for IPv6"),
        ("32.1.2.0.256.rpz-ip CNAME .", "z.rpz:2: trigger `32.1.2.0.256.rpz-ip`: `256` is not an IPv4 address byte (0-255)"),
        ("24.2.0.192.rpz-ip CNAME .", "z.rpz:2: trigger `24.2.0.192.rpz-ip`: an IPv4 trigger has 4 address labels; found 3"),
        ("128.1.zz.db8.zz.2001.rpz-ip CNAME .", "z.rpz:2: trigger `128.1.zz.db8.zz.2001.rpz-ip`: `zz` (the `::` run) appears twice"),
        ("128.1.db8.2001.rpz-ip CNAME .", "z.rpz:2: trigger `128.1.db8.2001.rpz-ip`: 3 IPv6 groups: an address has 8"),
        ("128.1.zz.12345.2001.rpz-ip CNAME .", "z.rpz:2: trigger `128.1.zz.12345.2001.rpz-ip`: `12345` is not an IPv6 group"),
        ("x.1.2.0.192.rpz-ip CNAME .", "z.rpz:2: trigger `x.1.2.0.192.rpz-ip`: expected `<prefix length>.<address, labels reversed>`"),
        ("rpz-ip CNAME .", "z.rpz:2: trigger `rpz-ip`: expected `<prefix length>"),
        ("ads.*.example.com CNAME .", "z.rpz:2: trigger `ads.*.example.com`: `*` is allowed only as the whole first label"),
        ("* CNAME .", "z.rpz:2: trigger `*`: `*` is allowed only as the whole first label"),
        ("ex!ample.com CNAME .", "z.rpz:2: trigger `ex!ample.com`: character `!` not allowed in a domain name"),
        ("-ads.example.com CNAME .", "z.rpz:2: trigger `-ads.example.com`: label `-ads` starts with `-`"),
        ("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q CNAME .", "z.rpz:2: trigger `a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q`: name has 17 labels; rules hold at most 16"),
    ];
    for (record, expected) in cases {
        let errors = one_record_errors(record);
        assert_eq!(errors.len(), 1, "{record}: {errors:#?}");
        assert!(errors[0].starts_with(expected), "{record}: {errors:#?}\nexpected to start with {expected:?}");
    }
}

#[test]
fn rpz_trigger_with_two_actions_is_an_error_same_action_is_kept_once() {
    let zone = rpz(&format!(
        "{HEAD}ads.example.com CNAME .\nADS.Example.COM CNAME . ; relative, case differs: the same trigger\n"
    ));
    assert_eq!(zone.domains, vec![domain("ads.example.com", RpzAction::Nxdomain, 2)]);
    assert_eq!(
        one_record_errors("ads.example.com CNAME .\nads.example.com CNAME rpz-passthru.\n32.1.2.0.192.rpz-ip CNAME .\n32.1.2.0.192.rpz-ip CNAME rpz-drop.\n32.1.2.0.192.rpz-client-ip CNAME rpz-drop."),
        [
            "z.rpz:3: trigger `ads.example.com` is already listed at line 2 with action nxdomain; it has one action",
            "z.rpz:5: trigger `32.1.2.0.192.rpz-ip` is already listed at line 4 with action nxdomain; it has one action",
        ]
    );
}

#[test]
fn rpz_parentheses_and_quotes_errors() {
    assert_eq!(
        rpz_errors("$ORIGIN rpz.example.net.\n@ SOA ns. host. ( 1 2 3 4 5\nads.example.com CNAME .\n"),
        ["z.rpz:2: `(` is never closed"]
    );
    assert_eq!(rpz_errors("$ORIGIN rpz.example.net.\n@ NS ns. )\n"), ["z.rpz:2: `)` without a matching `(`"]);
    assert_eq!(rpz_errors("$ORIGIN rpz.example.net.\nads TXT \"open\n"), ["z.rpz:2: unterminated quoted string"]);
}

#[test]
fn rpz_reports_every_error_with_its_line_and_returns_nothing() {
    let text = "\
$TTL 300
$ORIGIN rpz.example.net.
@ SOA ns1.example.net. hostmaster.example.net. (
      1 3600 600 604800 300 )
@ NS ns1.example.net.
ok.example.com          CNAME .
nodata.example.com      CNAME *.
tcp.example.com         CNAME rpz-tcp-only.
redirect.example.com    CNAME walled.example.net.
local.example.com       A 192.0.2.1
ok2.example.com         CNAME rpz-drop.
ns.example.rpz-nsdname  CNAME .
24.1.2.0.192.rpz-ip     CNAME .
bad!.example.com        CNAME .
";
    let errors = rpz_errors(text);
    let lines: Vec<&str> = errors.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(lines, ["z.rpz:7", "z.rpz:8", "z.rpz:9", "z.rpz:10", "z.rpz:12", "z.rpz:13", "z.rpz:14"], "{errors:#?}");
}

#[test]
fn rpz_sample_file_parses() {
    let zone = load_rpz(&sample("example.rpz")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(zone.origin, "rpz.example.net");
    use RpzAction::*;
    let domains: Vec<(String, RpzAction)> = zone.domains.iter().map(|d| (d.pattern.to_string(), d.action)).collect();
    assert_eq!(
        domains,
        [
            ("ads.example.com".to_string(), Nxdomain),
            ("*.ads.example.com".to_string(), Nxdomain),
            ("tracker.example.net".to_string(), Drop),
            ("*.tracker.example.net".to_string(), Drop),
            ("malware.example.org".to_string(), Nxdomain),
            ("phish.example.org".to_string(), Nxdomain),
            ("cdn.ads.example.com".to_string(), Passthru),
        ]
    );
    let ips: Vec<(IpNet, Direction, RpzAction)> = zone.ips.iter().map(|r| (r.net, r.direction, r.action)).collect();
    assert_eq!(
        ips,
        [
            (net("192.0.2.10/32"), Direction::Dst, Nxdomain),
            (net("198.51.100.0/24"), Direction::Dst, Drop),
            (net("2001:db8:bad::/48"), Direction::Dst, Nxdomain),
            (net("2001:db8::1/128"), Direction::Dst, Drop),
            (net("203.0.113.64/26"), Direction::Src, Drop),
        ]
    );
    assert!(zone.domains.iter().all(|d| d.line > 0) && zone.ips.iter().all(|r| r.line > 0));
}

#[test]
fn rpz_unreadable_file_is_one_error() {
    let e = load_rpz(Path::new("/nonexistent/zone.rpz")).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(e.0[0].to_string().starts_with("/nonexistent/zone.rpz: cannot read zone file"), "{e}");
}

// ---------------------------------------------------------------------------
// hosts

fn hosts(text: &str) -> Vec<HostsEntry> {
    parse_hosts(Path::new("h"), text).unwrap_or_else(|e| panic!("expected a valid hosts list, got:\n{e}"))
}

fn hosts_errors(text: &str) -> Vec<String> {
    match parse_hosts(Path::new("h"), text) {
        Ok(entries) => panic!("expected errors, parsed {entries:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn entry(name: &str, line: usize) -> HostsEntry {
    HostsEntry { name: name.to_string(), line }
}

#[test]
fn hosts_entries_comments_and_several_names_per_line() {
    let text = "\
\u{feff}# blocklist
0.0.0.0 ads.example.com
0.0.0.0\tone.example.com   two.example.com # trailing comment
127.0.0.1 Three.Example.COM.

:: four.example.org
::1 five.example.org
0:0:0:0:0:0:0:0 six.example.org
0.0.0.0 ads.example.com
0.0.0.0 bücher.example
  # indented comment
0.0.0.0 ads.example.com#comment right after the name
";
    assert_eq!(
        hosts(text),
        vec![
            entry("ads.example.com", 2),
            entry("one.example.com", 3),
            entry("two.example.com", 3),
            entry("three.example.com", 4),
            entry("four.example.org", 6),
            entry("five.example.org", 7),
            entry("six.example.org", 8),
            entry("xn--bcher-kva.example", 10),
        ]
    );
}

#[test]
fn hosts_preamble_is_skipped_whatever_its_address() {
    let text = "\
127.0.0.1 localhost
127.0.0.1 localhost.localdomain
127.0.0.1 local
255.255.255.255 broadcasthost
::1 localhost ip6-localhost ip6-loopback
fe80::1%lo0 localhost
ff00::0 ip6-localnet
ff00::0 ip6-mcastprefix
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
ff02::3 ip6-allhosts
0.0.0.0 0.0.0.0
0.0.0.0 LocalHost ads.example.com
";
    assert_eq!(hosts(text), vec![entry("ads.example.com", 13)]);
    assert_eq!(hosts(""), vec![]);
}

#[test]
fn hosts_rejections_with_their_lines() {
    let text = "\
0.0.0.0 ok.example.com
192.0.2.1 redirect.example.com
2001:db8::1 redirect6.example.com
ads.example.com
0.0.0.0
0.0.0.0 bad!.example.com good.example.com
0.0.0.0 *.wild.example.com
127.0.0.2 loopback.example.com
0.0.0.0 -dash.example.com
";
    assert_eq!(
        hosts_errors(text),
        [
            "h:2: address 192.0.2.1: only sinkhole addresses (0.0.0.0, 127.0.0.1, ::, ::1) mean blocked; redirects are not supported",
            "h:3: address 2001:db8::1: only sinkhole addresses (0.0.0.0, 127.0.0.1, ::, ::1) mean blocked; redirects are not supported",
            "h:4: `ads.example.com` is not an IP address: a hosts line is `0.0.0.0 name [name...]`",
            "h:5: address 0.0.0.0 with no name after it",
            "h:6: `bad!.example.com`: character `!` not allowed in a domain name",
            "h:7: `*.wild.example.com`: character `*` not allowed in a domain name",
            "h:8: address 127.0.0.2: only sinkhole addresses (0.0.0.0, 127.0.0.1, ::, ::1) mean blocked; redirects are not supported",
            "h:9: `-dash.example.com`: label `-dash` starts with `-`",
        ]
    );
}

#[test]
fn hosts_sample_file_parses() {
    let entries = load_hosts(&sample("example.hosts")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ads.example.com",
            "banners.ads.example.com",
            "static.ads.example.com",
            "tracker.example.net",
            "telemetry.example.org",
            "metrics.example.org",
            "xn--bcher-kva.example",
        ]
    );
    assert_eq!(entries[1].line, entries[2].line, "two names of one line");
}

#[test]
fn hosts_unreadable_file_is_one_error() {
    let e = load_hosts(Path::new("/nonexistent/list.hosts")).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(e.0[0].to_string().starts_with("/nonexistent/list.hosts: cannot read hosts list"), "{e}");
}
