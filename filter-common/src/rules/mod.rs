//! The rule set as the specification sees it: orders with their provenance,
//! prefix rules and L4 rules, before any compilation into kernel maps.
//!
//! `order_file` reads orders from TOML; `ruleset` turns active orders into a
//! [`RuleSet`] with rule ids. The reference classifier evaluates a `RuleSet`
//! naively; `crate::compile` folds it into map entries for the kernel.
pub mod error;
pub mod feeds;
pub mod order_file;
pub mod ruleset;

pub use error::{RuleError, RuleErrors};
pub use feeds::{load_feed, parse_feed, FeedEntry, FeedFormat};
pub use order_file::{load_orders_dir, parse_order, Action, Category, Order};
pub use ruleset::{Direction, L4Slot, PortRange, PrefixRule, RuleInfo, RuleSet, Scope, Settings};
