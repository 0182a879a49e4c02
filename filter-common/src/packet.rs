//! Reference packet parser, built on etherparse's header slices.
//!
//! This is the specification the XDP program must match byte for byte:
//! which frames are malformed, where the L4 header is, what counts as a
//! fragment. Each step says the rule it implements.
use etherparse::{
    Ethernet2HeaderSlice, IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice,
    Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};

use crate::maps::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS};

pub use crate::proto::*;

/// IP addresses of a packet whose network header parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addrs {
    V4 { src: [u8; 4], dst: [u8; 4] },
    V6 { src: [u8; 16], dst: [u8; 16] },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    None,
    /// Offset 0 with more-fragments set: carries the L4 header.
    First,
    /// Offset > 0: no L4 header, never matched on ports.
    NonFirst,
}

/// Fields of the transport header that rules can match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L4Fields {
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// Network layer and above of an IPv4/IPv6 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub addrs: Addrs,
    /// IPv6 hop limit or IPv4 TTL.
    pub hop_limit: u8,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    pub fragment: Fragment,
    /// `None` when the transport header is absent (non-first fragment,
    /// protocol without ports) — see `upper_malformed` for failures.
    pub l4: Option<L4Fields>,
    /// Extension headers or transport header truncated/invalid. Addresses
    /// are still known, so allowlist and prefix rules still apply.
    pub upper_malformed: bool,
    /// Frame offsets of the IP header and, with `l4`, of the transport
    /// header and (TCP, UDP) its payload `[payload_off, payload_end)`; the
    /// end is the IP datagram's end, not the frame's.
    pub l3_off: usize,
    pub l4_off: usize,
    pub payload_off: usize,
    pub payload_end: usize,
    pub tcp_seq: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Ethernet/VLAN headers truncated or more than two VLAN tags.
    MalformedL2,
    Arp,
    /// Another ethertype; carried untouched.
    NonIp(u16),
    /// IPv4/IPv6 header truncated or inconsistent; addresses unknown.
    MalformedL3,
    Ip(IpPacket),
}

/// Parses an Ethernet frame.
pub fn parse(frame: &[u8]) -> Parsed {
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
        return Parsed::MalformedL2;
    };
    let mut ether_type = eth.ether_type().0;
    let mut rest = &frame[eth.slice().len()..];
    // Up to two tags, 802.1Q and 802.1ad in any order; a third is malformed
    // (it could hide IP traffic from the filter).
    let mut tags = 0;
    while ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        if tags == MAX_VLAN_TAGS {
            return Parsed::MalformedL2;
        }
        let Ok(vlan) = SingleVlanHeaderSlice::from_slice(rest) else {
            return Parsed::MalformedL2;
        };
        ether_type = vlan.ether_type().0;
        rest = &rest[vlan.slice().len()..];
        tags += 1;
    }
    let l3_off = frame.len() - rest.len();
    match ether_type {
        ETH_P_ARP => Parsed::Arp,
        ETH_P_IPV4 => parse_ipv4(rest, l3_off),
        ETH_P_IPV6 => parse_ipv6(rest, l3_off),
        other => Parsed::NonIp(other),
    }
}

fn parse_ipv4(data: &[u8], l3_off: usize) -> Parsed {
    let Ok(ip) = Ipv4HeaderSlice::from_slice(data) else {
        return Parsed::MalformedL3;
    };
    let header_len = ip.slice().len();
    let total_len = usize::from(ip.total_len());
    // The datagram must fit in the frame (trailing Ethernet padding is
    // ignored) and be at least its own header.
    if total_len < header_len || total_len > data.len() {
        return Parsed::MalformedL3;
    }
    let offset = ip.fragments_offset().value();
    let fragment = fragment_kind(offset, ip.more_fragments());
    let mut pkt = IpPacket {
        addrs: Addrs::V4 { src: ip.source(), dst: ip.destination() },
        hop_limit: ip.ttl(),
        protocol: ip.protocol().0,
        fragment,
        l4: None,
        upper_malformed: false,
        l3_off,
        l4_off: 0,
        payload_off: 0,
        payload_end: 0,
        tcp_seq: 0,
    };
    if fragment != Fragment::NonFirst {
        parse_l4(&mut pkt, &data[header_len..total_len], false, l3_off + header_len);
    }
    Parsed::Ip(pkt)
}

fn parse_ipv6(data: &[u8], l3_off: usize) -> Parsed {
    let Ok(ip) = Ipv6HeaderSlice::from_slice(data) else {
        return Parsed::MalformedL3;
    };
    let end = 40 + usize::from(ip.payload_length());
    if end > data.len() {
        return Parsed::MalformedL3;
    }
    let mut pkt = IpPacket {
        addrs: Addrs::V6 { src: ip.source(), dst: ip.destination() },
        hop_limit: ip.hop_limit(),
        protocol: ip.next_header().0,
        fragment: Fragment::None,
        l4: None,
        upper_malformed: false,
        l3_off,
        l4_off: 0,
        payload_off: 0,
        payload_end: 0,
        tcp_seq: 0,
    };
    let mut rest = &data[40..end];
    let mut walked = 0;
    loop {
        let len = match pkt.protocol {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                match Ipv6RawExtHeaderSlice::from_slice(rest) {
                    Ok(h) => {
                        pkt.protocol = h.next_header().0;
                        h.slice().len()
                    }
                    Err(_) => return upper_malformed(pkt),
                }
            }
            IPPROTO_AH => match IpAuthHeaderSlice::from_slice(rest) {
                Ok(h) => {
                    pkt.protocol = h.next_header().0;
                    h.slice().len()
                }
                Err(_) => return upper_malformed(pkt),
            },
            IPPROTO_FRAGMENT => match Ipv6FragmentHeaderSlice::from_slice(rest) {
                Ok(h) => {
                    pkt.protocol = h.next_header().0;
                    let kind = fragment_kind(h.fragment_offset().value(), h.more_fragments());
                    if kind != Fragment::None {
                        pkt.fragment = kind;
                    }
                    h.slice().len()
                }
                Err(_) => return upper_malformed(pkt),
            },
            _ => break,
        };
        rest = &rest[len..];
        walked += 1;
        if pkt.fragment == Fragment::NonFirst {
            // What follows is the middle of the original payload.
            return Parsed::Ip(pkt);
        }
        if walked == MAX_IPV6_EXT_HEADERS && is_ipv6_ext(pkt.protocol) {
            // Longer chains are an evasion technique, not traffic.
            return upper_malformed(pkt);
        }
    }
    let l4_off = l3_off + end - rest.len();
    parse_l4(&mut pkt, rest, true, l4_off);
    Parsed::Ip(pkt)
}

fn upper_malformed(mut pkt: IpPacket) -> Parsed {
    pkt.upper_malformed = true;
    Parsed::Ip(pkt)
}

fn fragment_kind(offset: u16, more_fragments: bool) -> Fragment {
    match (offset, more_fragments) {
        (0, false) => Fragment::None,
        (0, true) => Fragment::First,
        _ => Fragment::NonFirst,
    }
}

/// Transport header of an unfragmented packet or a first fragment. A first
/// fragment too short for its transport header is malformed (tiny-fragment
/// attacks, RFC 1858 / RFC 7112).
fn parse_l4(pkt: &mut IpPacket, data: &[u8], is_v6: bool, off: usize) {
    let l4 = match (pkt.protocol, is_v6) {
        (IPPROTO_TCP, _) => TcpHeaderSlice::from_slice(data).ok().map(|t| L4Fields {
            src_port: t.source_port(),
            dst_port: t.destination_port(),
            // The eight classic flag bits (CWR..FIN), byte 13 of the header.
            tcp_flags: t.slice()[13],
            ..L4Fields::default()
        }),
        (IPPROTO_UDP, _) => UdpHeaderSlice::from_slice(data).ok().map(|u| L4Fields {
            src_port: u.source_port(),
            dst_port: u.destination_port(),
            ..L4Fields::default()
        }),
        // ICMP only inside IPv4, ICMPv6 only inside IPv6; every message has
        // at least 8 bytes (type, code, checksum, 4 bytes of body).
        (IPPROTO_ICMP, false) | (IPPROTO_ICMPV6, true) => (data.len() >= 8).then(|| L4Fields {
            icmp_type: data[0],
            icmp_code: data[1],
            ..L4Fields::default()
        }),
        _ => return,
    };
    match l4 {
        Some(fields) => {
            pkt.l4 = Some(fields);
            pkt.l4_off = off;
            pkt.payload_end = off + data.len();
            match pkt.protocol {
                IPPROTO_TCP => {
                    pkt.payload_off = off + usize::from(data[12] >> 4) * 4;
                    pkt.tcp_seq = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                }
                IPPROTO_UDP => pkt.payload_off = off + 8,
                _ => pkt.payload_off = pkt.payload_end,
            }
        }
        None => pkt.upper_malformed = true,
    }
}
