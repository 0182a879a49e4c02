//! Types shared by the XDP program and the agent, and (with the `user`
//! feature) the reference classifier and the order-file compiler.
//!
//! Without `user` this crate is `no_std` and contains only plain `#[repr(C)]`
//! data, so the eBPF build never sees std.
#![cfg_attr(not(feature = "user"), no_std)]

pub mod maps;
pub mod names;
pub mod proto;

#[cfg(feature = "user")]
pub mod pod;
#[cfg(feature = "user")]
pub mod packet;
#[cfg(feature = "user")]
pub mod reference;
#[cfg(feature = "user")]
pub mod rules;
#[cfg(feature = "user")]
pub mod compile;
#[cfg(feature = "user")]
pub mod signatures;
