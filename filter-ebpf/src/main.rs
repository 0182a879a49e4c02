//! The edge filter XDP program.
//!
//! One pass per frame: parse (never reading past `data_end`), then classify
//! in the documented order, counting the decision per reason and per rule.
//! `filter-common`'s reference classifier is the specification; the
//! differential tests run this program through BPF_PROG_TEST_RUN against it.
#![no_std]
#![no_main]

mod classify;
mod ddos;
mod l7;
mod maps;
mod mem;
mod parse;
mod sig;
mod synauth;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn edgefilter(ctx: XdpContext) -> u32 {
    match classify::classify(&ctx) {
        classify::Action::Pass => xdp_action::XDP_PASS,
        classify::Action::Drop => xdp_action::XDP_DROP,
        classify::Action::Tx => xdp_action::XDP_TX,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable by construction: the verifier rejects any program with a
    // reachable panic, so a build that loads has none.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
