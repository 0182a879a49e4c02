//! The rule set as the specification sees it: orders with their provenance,
//! prefix rules and L4 rules, before any compilation into kernel maps.
//!
//! `order_file` reads orders from TOML; `ruleset` turns active orders into a
//! [`RuleSet`] with rule ids. The reference classifier evaluates a `RuleSet`
//! naively; `crate::compile` folds it into map entries for the kernel.
pub mod domain;
pub mod error;
pub mod feeds;
pub mod hosts;
pub mod order_file;
pub mod rpz;
pub mod ruleset;

pub use domain::{normalise_name, DomainPattern, DomainScope, MAX_PATTERN_LABELS};
pub use error::{RuleError, RuleErrors};
pub use feeds::{load_feed, parse_feed, FeedEntry, FeedFormat};
pub use hosts::{load_hosts, parse_hosts, HostsEntry};
pub use order_file::{load_orders_dir, parse_order, Action, Category, Order};
pub use rpz::{load_rpz, parse_rpz, RpzAction, RpzDomainRule, RpzIpRule, RpzZone};
pub use ruleset::{Direction, L4Slot, PortRange, PrefixRule, RuleInfo, RuleSet, Scope, Settings, SignatureRule, SignatureSettings};
