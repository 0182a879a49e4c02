//! Blocklist feeds: every format parses its sample in `rules/feeds/`, bad
//! lines are reported with their line numbers, all at once, and comments,
//! blank lines and duplicates are skipped.
use std::path::{Path, PathBuf};

use filter_common::rules::{load_feed, parse_feed, FeedEntry, FeedFormat};
use ipnet::IpNet;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/feeds").join(name)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn entry(n: &str, line: usize, reference: Option<&str>) -> FeedEntry {
    FeedEntry { net: net(n), line, reference: reference.map(str::to_string) }
}

fn parse(text: &str, format: FeedFormat) -> Vec<FeedEntry> {
    parse_feed(Path::new("f"), text, format).unwrap_or_else(|e| panic!("expected a valid feed, got:\n{e}"))
}

/// The errors as `file:line: message` strings.
fn errors(text: &str, format: FeedFormat) -> Vec<String> {
    match parse_feed(Path::new("f"), text, format) {
        Ok(entries) => panic!("expected errors, parsed {entries:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_one(errors: &[String], prefix: &str, needle: &str) {
    assert!(
        errors.iter().any(|e| e.starts_with(prefix) && e.contains(needle)),
        "no error starting with {prefix:?} and containing {needle:?} in {errors:#?}"
    );
}

#[test]
fn format_names_deserialize_from_config() {
    #[derive(serde::Deserialize)]
    struct Feed {
        format: FeedFormat,
    }
    for format in FeedFormat::ALL {
        let f: Feed = toml::from_str(&format!("format = \"{}\"", format.name())).unwrap();
        assert_eq!(f.format, format);
        assert_eq!(format.to_string(), format.name());
    }
    assert!(toml::from_str::<Feed>("format = \"csv\"").is_err());
}

// ---- samples ---------------------------------------------------------------

#[test]
fn plain_sample() {
    let entries = load_feed(&sample("example-plain.txt"), FeedFormat::Plain).unwrap();
    assert_eq!(
        entries,
        vec![
            entry("192.0.2.0/25", 5, None),
            entry("198.51.100.23/32", 6, None),
            entry("203.0.113.64/26", 7, None),
            entry("2001:db8:bad::/48", 9, None),
            entry("2001:db8:1::66/128", 10, None),
        ]
    );
}

#[test]
fn spamhaus_drop_sample() {
    let entries = load_feed(&sample("example-spamhaus-drop.txt"), FeedFormat::SpamhausDrop).unwrap();
    assert_eq!(
        entries,
        vec![
            entry("192.0.2.0/24", 5, Some("SBL000001")),
            entry("198.51.100.128/25", 6, Some("SBL000002")),
            entry("203.0.113.0/26", 7, Some("SBL000003")),
            entry("203.0.113.192/27", 8, Some("SBL000004")),
        ]
    );
}

#[test]
fn spamhaus_json_sample() {
    let entries = load_feed(&sample("example-spamhaus-drop-v4.json"), FeedFormat::SpamhausJson).unwrap();
    assert_eq!(
        entries,
        vec![
            entry("192.0.2.0/24", 1, Some("SBL000001")),
            entry("198.51.100.128/25", 2, Some("SBL000002")),
            entry("203.0.113.0/26", 3, Some("SBL000003")),
        ]
    );
}

#[test]
fn netset_sample() {
    let entries = load_feed(&sample("example-firehol-level1.netset"), FeedFormat::Netset).unwrap();
    assert_eq!(
        entries,
        vec![
            entry("192.0.2.0/24", 26, None),
            entry("198.51.100.0/25", 27, None),
            entry("203.0.113.77/32", 28, None),
        ]
    );
}

#[test]
fn every_sample_uses_documentation_ranges_only() {
    let doc: Vec<IpNet> =
        ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"].iter().map(|s| net(s)).collect();
    for (file, format) in [
        ("example-plain.txt", FeedFormat::Plain),
        ("example-spamhaus-drop.txt", FeedFormat::SpamhausDrop),
        ("example-spamhaus-drop-v4.json", FeedFormat::SpamhausJson),
        ("example-firehol-level1.netset", FeedFormat::Netset),
    ] {
        let entries = load_feed(&sample(file), format).unwrap();
        assert!(!entries.is_empty(), "{file}");
        for e in entries {
            assert!(doc.iter().any(|d| d.contains(&e.net)), "{file}:{}: {} is not a documentation range", e.line, e.net);
        }
    }
}

// ---- comments, blanks, duplicates, empty feeds ----------------------------

#[test]
fn plain_comments_and_blank_lines_are_ignored() {
    let text = "# header\n\n   \n; also a comment\n192.0.2.0/24 # trailing\n\t198.51.100.1 ;trailing\r\n2001:db8::/32\n#192.0.2.128/25\n";
    assert_eq!(
        parse(text, FeedFormat::Plain),
        vec![entry("192.0.2.0/24", 5, None), entry("198.51.100.1/32", 6, None), entry("2001:db8::/32", 7, None)]
    );
}

#[test]
fn netset_comments_and_blank_lines_are_ignored() {
    let text = "#\n# name\n#\n\n192.0.2.0/24\n2001:db8:1::/48\n";
    assert_eq!(parse(text, FeedFormat::Netset), vec![entry("192.0.2.0/24", 5, None), entry("2001:db8:1::/48", 6, None)]);
}

#[test]
fn spamhaus_drop_references_and_comments() {
    let text = "; Spamhaus-style header\n;\n\n192.0.2.0/24 ; SBL1\n198.51.100.0/24;SBL2\n203.0.113.0/24\n2001:db8::/32 ;  \n";
    assert_eq!(
        parse(text, FeedFormat::SpamhausDrop),
        vec![
            entry("192.0.2.0/24", 4, Some("SBL1")),
            entry("198.51.100.0/24", 5, Some("SBL2")),
            entry("203.0.113.0/24", 6, None),
            entry("2001:db8::/32", 7, None),
        ]
    );
}

#[test]
fn spamhaus_json_ignores_extra_fields_and_blank_lines() {
    let text = concat!(
        "{\"cidr\":\"2001:db8:bad::/48\",\"sblid\":\"SBL9\",\"rir\":\"ripencc\",\"asn\":64496,\"new\":[1,2]}\n",
        "\n",
        "{\"cidr\":\"192.0.2.7\"}\n",
        "{\"type\":\"metadata\",\"timestamp\":1700000000,\"records\":2}\n",
    );
    assert_eq!(
        parse(text, FeedFormat::SpamhausJson),
        vec![entry("2001:db8:bad::/48", 1, Some("SBL9")), entry("192.0.2.7/32", 3, None)]
    );
}

#[test]
fn spamhaus_json_metadata_without_records_and_at_any_position() {
    let text = "{\"type\":\"metadata\",\"timestamp\":1700000000}\n{\"cidr\":\"192.0.2.0/24\",\"sblid\":\"SBL1\"}\n";
    assert_eq!(parse(text, FeedFormat::SpamhausJson), vec![entry("192.0.2.0/24", 2, Some("SBL1"))]);
}

#[test]
fn duplicates_keep_the_first() {
    let text = "192.0.2.0/24\n198.51.100.0/24\n192.0.2.0/24\n198.51.100.0/24\n";
    assert_eq!(parse(text, FeedFormat::Plain), vec![entry("192.0.2.0/24", 1, None), entry("198.51.100.0/24", 2, None)]);
    let drop = "192.0.2.0/24 ; SBL1\n192.0.2.0/24 ; SBL2\n";
    assert_eq!(parse(drop, FeedFormat::SpamhausDrop), vec![entry("192.0.2.0/24", 1, Some("SBL1"))]);
    // An address and its host route are the same prefix.
    assert_eq!(parse("192.0.2.1\n192.0.2.1/32\n", FeedFormat::Netset), vec![entry("192.0.2.1/32", 1, None)]);
}

#[test]
fn empty_feeds_are_valid() {
    for format in FeedFormat::ALL {
        assert_eq!(parse("", format), vec![], "{format}");
        assert_eq!(parse("\n\n", format), vec![], "{format}");
    }
    assert_eq!(parse("# nothing listed today\n", FeedFormat::Plain), vec![]);
    assert_eq!(parse("; nothing\n", FeedFormat::SpamhausDrop), vec![]);
    assert_eq!(parse("#\n# header\n#\n", FeedFormat::Netset), vec![]);
    assert_eq!(parse("{\"type\":\"metadata\",\"timestamp\":1,\"records\":0}\n", FeedFormat::SpamhausJson), vec![]);
}

#[test]
fn byte_order_mark_is_ignored() {
    assert_eq!(parse("\u{feff}192.0.2.0/24\n", FeedFormat::Plain), vec![entry("192.0.2.0/24", 1, None)]);
}

// ---- errors ----------------------------------------------------------------

#[test]
fn plain_bad_lines_reported_all_at_once() {
    let text = "# header\n192.0.2.0/24\n192.0.2.7/24\nnot-an-address\n\n198.51.100.0/24 203.0.113.0/24\n2001:db8::1/32\n192.0.2.0/33\n";
    let e = errors(text, FeedFormat::Plain);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert_one(&e, "f:3: ", "host bits set; did you mean 192.0.2.0/24?");
    assert_one(&e, "f:4: ", "`not-an-address` is not an IP address or CIDR prefix");
    assert_one(&e, "f:6: ", "one address or CIDR prefix per line");
    assert_one(&e, "f:7: ", "did you mean 2001:db8::/32?");
    assert_one(&e, "f:8: ", "not an IP address or CIDR prefix");
}

#[test]
fn netset_bad_lines() {
    // `;` is not a comment in a netset.
    let e = errors("#\n192.0.2.0/24\n198.51.100.1/24\n;x\n203.0.113.0-203.0.113.9\n", FeedFormat::Netset);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_one(&e, "f:3: ", "did you mean 198.51.100.0/24?");
    assert_one(&e, "f:4: ", "not an IP address");
    assert_one(&e, "f:5: ", "not an IP address");
}

#[test]
fn spamhaus_drop_bad_lines() {
    let text = "; header\n192.0.2.0/24 ; SBL1\n198.51.100.9/24 ; SBL2\ngarbage ; SBL3\nSBL4\n";
    let e = errors(text, FeedFormat::SpamhausDrop);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_one(&e, "f:3: ", "did you mean 198.51.100.0/24?");
    assert_one(&e, "f:4: ", "`garbage`");
    assert_one(&e, "f:5: ", "`SBL4`");
}

#[test]
fn spamhaus_json_bad_lines() {
    let text = concat!(
        "{\"cidr\":\"192.0.2.0/24\",\"sblid\":\"SBL1\"}\n", // 1 ok
        "{\"cidr\":\"198.51.100.5/24\",\"sblid\":\"SBL2\"}\n", // 2 host bits
        "{\"cidr\":\"203.0.113.0/24\"\n",                  // 3 bad JSON
        "{\"sblid\":\"SBL4\",\"rir\":\"arin\"}\n",         // 4 no cidr
        "192.0.2.0/24 ; SBL5\n",                           // 5 DROP text in a JSON feed
        "[\"203.0.113.0/24\"]\n",                          // 6 not an object
        "{\"cidr\":24}\n",                                 // 7 cidr not a string
        "{\"cidr\":\"garbage\"}\n",                        // 8 not a prefix
    );
    let e = errors(text, FeedFormat::SpamhausJson);
    assert_eq!(e.len(), 7, "{e:#?}");
    assert_one(&e, "f:2: ", "did you mean 198.51.100.0/24?");
    assert_one(&e, "f:3: ", "not valid JSON");
    assert_one(&e, "f:4: ", "no `cidr`");
    assert_one(&e, "f:5: ", "not valid JSON");
    assert_one(&e, "f:6: ", "expected a JSON object");
    assert_one(&e, "f:7: ", "`cidr` = 24");
    assert_one(&e, "f:8: ", "`garbage` is not an IP address or CIDR prefix");
}

#[test]
fn spamhaus_json_truncated_feed() {
    // Metadata first, promising three records; the download stopped after two.
    let text = "{\"type\":\"metadata\",\"timestamp\":1700000000,\"size\":99,\"records\":3}\n{\"cidr\":\"192.0.2.0/24\"}\n{\"cidr\":\"198.51.100.0/24\"}\n";
    let e = errors(text, FeedFormat::SpamhausJson);
    assert_eq!(e, vec!["f:1: metadata says 3 records but the feed has 2: the feed is truncated or corrupt (records are missing)"]);

    // Metadata last (as Spamhaus writes it), count too low.
    let text = "{\"cidr\":\"192.0.2.0/24\"}\n{\"cidr\":\"198.51.100.0/24\"}\n{\"type\":\"metadata\",\"records\":1}\n";
    let e = errors(text, FeedFormat::SpamhausJson);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_one(&e, "f:3: ", "truncated");

    // A bad record line counts as a record: only its own error, no count mismatch.
    let text = "{\"cidr\":\"192.0.2.0/24\"}\n{\"cidr\":\n{\"type\":\"metadata\",\"records\":2}\n";
    assert_eq!(errors(text, FeedFormat::SpamhausJson).len(), 1);
}

#[test]
fn spamhaus_json_bad_metadata() {
    let text = "{\"type\":\"metadata\",\"records\":\"two\"}\n{\"cidr\":\"192.0.2.0/24\"}\n{\"type\":\"metadata\",\"records\":1}\n";
    let e = errors(text, FeedFormat::SpamhausJson);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_one(&e, "f:1: ", "expected a non-negative integer");
    assert_one(&e, "f:3: ", "second metadata line (the first is line 1)");
}

#[test]
fn unreadable_file_is_an_error() {
    let missing = sample("no-such-feed.txt");
    let e = load_feed(&missing, FeedFormat::Plain).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, 0);
    assert!(e.0[0].message.starts_with("cannot read feed"), "{e}");
    assert!(e.to_string().contains("no-such-feed.txt"), "{e}");
}

#[test]
fn errors_name_the_file() {
    let e = parse_feed(Path::new("rules/feeds/x.txt"), "192.0.2.1/24\n", FeedFormat::Plain).unwrap_err();
    assert_eq!(e.to_string(), "rules/feeds/x.txt:1: `192.0.2.1/24` has host bits set; did you mean 192.0.2.0/24?");
}
