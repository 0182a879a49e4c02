//! The edge filter agent: loads the XDP program, compiles orders into its
//! maps, attaches to interfaces and reports what it does.
pub mod audit;
mod batch;
pub mod classify_cmd;
pub mod config;
pub mod dataplane;
pub mod ddos;
pub mod inspect;
pub mod order_cli;
pub mod orders;
pub mod report;
pub mod ruleload;
pub mod run;
pub mod signatures_cmd;
pub mod state;
pub mod top;
pub mod transparency;
