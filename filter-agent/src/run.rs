//! `filter-agent run`: the daemon. Loads and validates every rule source,
//! adopts or creates the pinned data plane, attaches, then keeps the rules
//! in force: reloads on SIGHUP and on file change, applies `effective` and
//! `expires` within a second, and writes every change to the audit log.
//! Stopping the agent leaves filtering in force (`filter-agent detach`
//! removes it). Alongside: deep inspection of the signature stage's
//! events (`crate::inspect`) and, every tick, the sweep of lapsed bans;
//! once a second, attack detection over the protected prefix groups
//! (`crate::ddos`), whose mitigations are orders applied like the others;
//! and the traffic samples behind `/top.json` (`crate::top`).
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use chrono::Utc;
use filter_common::rules::{Order, RuleSet};
use serde_json::json;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::dataplane::{self, Dataplane};
use crate::inspect::{self, Inspector};
use crate::report;
use crate::ruleload;
use crate::state::State as Persisted;

/// Who the audit log names for changes the agent makes on its own.
const AGENT: &str = "agent";

/// In-process metrics that do not live in kernel maps.
pub struct Metrics {
    pub reload_duration: prometheus::Histogram,
    /// From an order push received to its entries live in the maps.
    pub order_enforcement: prometheus::Histogram,
    pub reload_errors: prometheus::IntCounter,
    pub last_reload: f64,
    pub sequence: u64,
}

pub struct Agent {
    pub config: Config,
    pub dataplane: Dataplane,
    /// Every order from files and feeds (in force or not).
    pub file_orders: Vec<Order>,
    /// Orders pushed through the API, applied and not revoked.
    pub api_orders: Vec<Order>,
    /// Attack mitigations the agent installed (`auto:<policy>:<group>`),
    /// in force until the attack subsides. Not persisted: a restarted
    /// agent starts without them.
    pub auto_orders: Vec<Order>,
    /// Per-group rates and each `[[ddos_policy]]`'s state.
    pub ddos: crate::ddos::Detector,
    /// The journal of pushed orders (when the API is configured). Locked
    /// on its own, after the agent if both are needed, so pushes are
    /// journaled while a rule set is being applied.
    pub journal: Option<SharedJournal>,
    pub rules: RuleSet,
    in_force: BTreeSet<String>,
    fingerprint: Vec<(std::path::PathBuf, u64, Option<SystemTime>)>,
    state: Persisted,
    audit: AuditLog,
    pub metrics: Metrics,
    pub last_error: Option<String>,
    /// Deep inspection of `SIG_EVENTS`: its rules follow every apply.
    pub inspector: Arc<Inspector>,
    /// The last ban sweep error reported (each is logged once).
    sweep_error: Option<String>,
}

fn in_force<'a>(orders: impl Iterator<Item = &'a Order>, now: chrono::DateTime<Utc>) -> BTreeSet<String> {
    orders.filter(|o| o.is_active(now)).map(|o| o.id.clone()).collect()
}

/// A push journaled (fsynced, acknowledged as accepted) but not applied yet.
pub struct PendingPush {
    pub order: Order,
    pub client: String,
}

/// The order journal and the pushes it holds that are not enforced yet.
pub struct Journal {
    pub store: crate::orders::store::OrderStore,
    pending: Vec<PendingPush>,
}

pub type SharedJournal = Arc<Mutex<Journal>>;

impl Journal {
    /// Journals (fsync) a pushed order; returns the outcome and the journal
    /// position to wait for. Enforcement happens in [`Agent::apply_pushed`],
    /// which takes every order journaled since the last apply at once
    /// (group commit), so a burst of pushes costs one rule-set apply.
    pub fn push(&mut self, signed: &crate::orders::wire::SignedOrder, order: Order, client: &str, received: chrono::DateTime<Utc>) -> Result<(crate::orders::store::PushOutcome, u64)> {
        use crate::orders::store::PushOutcome;
        let outcome = self.store.push(&order.id, signed, client, received)?;
        if outcome == PushOutcome::Created {
            self.pending.push(PendingPush { order, client: client.to_string() });
        }
        Ok((outcome, self.store.seq()))
    }
}
impl Agent {
    /// Compiles `orders` as of now and makes them the rule set in force.
    /// `started` is when reading the sources began: the reported duration
    /// covers validation, compilation and the map writes.
    /// `new_files` replaces the file and feed orders (a reload); `None`
    /// keeps them (a push, revoke or expiry), without copying them twice.
    fn apply(&mut self, new_files: Option<Vec<Order>>, action: &str, actor: &str, mut details: serde_json::Value, started: Instant) -> Result<()> {
        let now = Utc::now();
        let files = new_files.as_ref().unwrap_or(&self.file_orders);
        let orders = || files.iter().chain(&self.api_orders).chain(&self.auto_orders);
        let fresh = self.state.assign_rule_ids(orders())?;
        let state = &self.state;
        let mut rules = RuleSet::build_with(self.config.settings.clone(), orders(), now, |o, i| {
            state.rule_id(&o.id, i).ok_or_else(|| format!("no rule id for {} entry {i}", o.id))
        })
        .map_err(anyhow::Error::msg)?;
        self.dataplane.reset_rule_counters(&fresh)?;
        let generation = match self.dataplane.apply_rules(&rules) {
            // Two rule names share a DOMAINS key under these seeds (nothing
            // was written): hash every name again with new ones.
            Err(e) if format!("{e:#}").contains(filter_common::compile::DOMAIN_HASH_COLLISION) => {
                let seeds = self.state.new_name_seeds()?;
                eprintln!("{e:#}; domain names are hashed with new seeds from now on");
                self.audit.append(AGENT, "reseed", json!({ "reason": format!("{e:#}") }))?;
                self.config.settings.name_seeds = seeds;
                rules.settings.name_seeds = seeds;
                self.dataplane.apply_rules(&rules)?
            }
            result => result?,
        };
        // In force from here.
        let elapsed = started.elapsed().as_secs_f64();
        self.metrics.reload_duration.observe(elapsed);
        self.metrics.sequence = self.state.next_sequence()?;
        self.metrics.last_reload = now.timestamp_millis() as f64 / 1000.0;
        let forced = in_force(orders(), now);
        if let serde_json::Value::Object(m) = &mut details {
            m.insert("sequence".into(), json!(self.metrics.sequence));
            m.insert("generation".into(), json!(generation));
            if new_files.is_some() {
                m.insert("orders_in_force".into(), json!(forced));
            } else {
                // Pushes, revokes and validity changes record what changed
                // (a full list per push would grow with every order ever
                // pushed); `filter-agent report` replays both forms.
                m.insert("in_force_added".into(), json!(forced.difference(&self.in_force).collect::<Vec<_>>()));
                m.insert("in_force_removed".into(), json!(self.in_force.difference(&forced).collect::<Vec<_>>()));
                m.insert("orders_in_force_count".into(), json!(forced.len()));
            }
            m.insert("prefix_rules".into(), json!(rules.prefixes.len()));
            m.insert("l4_slots".into(), json!(rules.l4.len()));
            m.insert("domain_rules".into(), json!(rules.domains.len()));
            m.insert("seconds".into(), json!(elapsed));
        }
        self.audit.append(actor, action, details)?;
        eprintln!(
            "{action}: rule set {} in force (generation {generation}): {} orders, {} prefix rules, {} L4 slots, {} domain rules, {:.3} s",
            self.metrics.sequence,
            forced.len(),
            rules.prefixes.len(),
            rules.l4.len(),
            rules.domains.len(),
            elapsed
        );
        self.in_force = forced;
        if let Some(files) = new_files {
            self.file_orders = files;
        }
        self.rules = rules;
        self.inspector.set_rules(&self.rules);
        self.last_error = None;
        Ok(())
    }

    /// Deletes the lapsed bans and keeps `CONFIG[0].bans` true to `BANS`
    /// (see [`Dataplane::sweep_bans`]); under the agent's lock, like every
    /// generation switch.
    pub fn sweep_bans(&mut self) {
        match self.dataplane.sweep_bans(inspect::monotonic_ns()) {
            Ok(_) => self.sweep_error = None,
            Err(e) => {
                let e = format!("{e:#}");
                if self.sweep_error.as_ref() != Some(&e) {
                    eprintln!("error: sweeping bans: {e}");
                }
                self.sweep_error = Some(e);
            }
        }
    }

    /// Re-reads every source; applies only if all of it is valid.
    pub fn reload(&mut self, actor: &str, why: &str) {
        let started = Instant::now();
        self.fingerprint = ruleload::fingerprint(&self.config.sources);
        let result = ruleload::load_sources(&self.config.sources)
            .map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .and_then(|orders| self.apply(Some(orders), "reload", actor, json!({ "trigger": why }), started).map_err(|e| vec![format!("{e:#}")]));
        if let Err(errors) = result {
            self.metrics.reload_errors.inc();
            eprintln!("reload rejected ({why}); the previous rules stay in force:");
            for e in &errors {
                eprintln!("  {e}");
            }
            if let Err(e) = self.audit.append(actor, "reload-rejected", json!({ "trigger": why, "errors": errors })) {
                eprintln!("error: audit log: {e:#}");
            }
            self.last_error = Some(errors.join("\n"));
        }
    }

    /// Appends an audit record (errors are logged, not fatal: the change
    /// itself was already made or refused).
    pub fn audit_event(&mut self, actor: &str, action: &str, details: serde_json::Value) -> Result<()> {
        self.audit.append(actor, action, details).map(|_| ())
    }

    /// Every order, from files, feeds and the API (in force or not).
    pub fn all_orders(&self) -> impl Iterator<Item = &Order> {
        self.file_orders.iter().chain(&self.api_orders).chain(&self.auto_orders)
    }

    /// Once a second: reads the protected groups' counters, updates the
    /// rates and the policies, and starts or stops mitigations.
    pub fn detect(&mut self) {
        let groups = self.ddos.groups.len();
        if groups == 0 {
            return;
        }
        let totals = match self.dataplane.protect_totals(groups) {
            Ok(t) if t.len() == groups => t,
            Ok(_) => return,
            Err(e) => {
                eprintln!("error: reading {}: {e:#}", filter_common::maps::names::PROTECT_STATS);
                return;
            }
        };
        for (i, t) in self.ddos.observe(Instant::now(), totals) {
            match t {
                crate::ddos::Transition::Start => self.start_mitigation(i),
                crate::ddos::Transition::Stop => self.stop_mitigation(i),
            }
        }
    }

    /// What the audit log records of policy `i` now.
    fn mitigation_details(&self, i: usize) -> serde_json::Value {
        let (p, st) = (&self.ddos.policies[i], &self.ddos.states[i]);
        json!({
            "policy": p.name,
            "prefix_group": p.group,
            "metric": p.metric.name(),
            "value": (st.value * 10.0).round() / 10.0,
            "threshold": p.threshold,
            "for_seconds": p.for_seconds,
            "hold_down_seconds": p.hold_down_seconds,
            "order": p.order_id(),
        })
    }

    /// Puts policy `i`'s mitigation in force (its state is active already).
    fn start_mitigation(&mut self, i: usize) {
        let now = Utc::now();
        let policy = self.ddos.policies[i].clone();
        let value = self.ddos.states[i].value;
        let order = policy.order(now, value);
        let details = self.mitigation_details(i);
        eprintln!(
            "attack: {} of prefix group {} at {} > {} for {} s: installing mitigation {} (policy {})",
            policy.metric.name(),
            policy.group,
            crate::ddos::si(value),
            policy.threshold,
            policy.for_seconds,
            order.id,
            policy.name
        );
        // A mitigation is not a reload: a rejected reload stays reported.
        let reload_error = self.last_error.clone();
        let result = if self.file_orders.iter().chain(&self.api_orders).any(|o| o.id == order.id) {
            Err(anyhow::anyhow!("an order with id {} exists already", order.id))
        } else {
            self.auto_orders.retain(|o| o.id != order.id);
            self.auto_orders.push(order);
            self.apply(None, "mitigation-start", AGENT, details.clone(), Instant::now())
        };
        self.last_error = reload_error;
        let st = &mut self.ddos.states[i];
        match result {
            Ok(()) => {
                st.started += 1;
                st.since = Some(now);
                st.error = None;
            }
            Err(e) => {
                // Not in force: the policy starts over (for_seconds again).
                self.auto_orders.retain(|o| o.id != policy.order_id());
                st.active = false;
                st.since = None;
                let e = format!("{e:#}");
                let again = st.error.as_ref() == Some(&e);
                st.error = Some(e.clone());
                if !again {
                    eprintln!("error: mitigation {} could not be applied (tried again while the attack lasts): {e}", policy.order_id());
                    let mut details = details;
                    details["error"] = json!(e);
                    if let Err(e) = self.audit.append(AGENT, "mitigation-failed", details) {
                        eprintln!("error: audit log: {e:#}");
                    }
                }
            }
        }
    }

    /// Withdraws policy `i`'s mitigation (its state is idle already).
    fn stop_mitigation(&mut self, i: usize) {
        let policy = self.ddos.policies[i].clone();
        let mut details = self.mitigation_details(i);
        let st = &self.ddos.states[i];
        details["peak"] = json!(st.peak.round());
        if let Some(since) = st.since {
            details["seconds"] = json!((Utc::now() - since).num_milliseconds() as f64 / 1000.0);
        }
        let id = policy.order_id();
        let Some(pos) = self.auto_orders.iter().position(|o| o.id == id) else { return };
        let order = self.auto_orders.remove(pos);
        eprintln!(
            "attack over: {} of prefix group {} at or below {} for {} s: mitigation {} withdrawn",
            policy.metric.name(),
            policy.group,
            policy.threshold,
            policy.hold_down_seconds.max(1),
            id
        );
        let reload_error = self.last_error.clone();
        let result = self.apply(None, "mitigation-stop", AGENT, details, Instant::now());
        self.last_error = reload_error;
        match result {
            Ok(()) => {
                let st = &mut self.ddos.states[i];
                st.since = None;
                st.error = None;
            }
            Err(e) => {
                // Still in force: try again at the next sample.
                self.auto_orders.push(order);
                let st = &mut self.ddos.states[i];
                st.active = true;
                st.below = policy.hold_down_seconds;
                eprintln!("error: withdrawing mitigation {id}: {e:#}");
                st.error = Some(format!("{e:#}"));
            }
        }
    }

    /// The journal's live orders, as rules (at start). Each was valid when
    /// received.
    fn load_api_orders(&mut self) -> Result<()> {
        let Some(journal) = &self.journal else { return Ok(()) };
        let journal = journal.lock().expect("journal lock");
        let limits = crate::orders::wire::Limits { max_entries: usize::MAX };
        self.api_orders = journal
            .store
            .orders()
            .filter(|s| s.revoked.is_none())
            .map(|s| {
                crate::orders::wire::parse_order(&s.signed.order, &limits, s.received)
                    .map_err(|e| anyhow::anyhow!("journaled order {} no longer parses: {e:?}", s.id))
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Enforces every journaled but not yet applied push; returns the
    /// journal position now settled (pushes journaled meanwhile are not).
    /// If the rule set cannot be applied, the orders of this batch are
    /// revoked in the journal with the reason (so a restart does not
    /// resurrect them; their waiters see it) and the error is returned.
    pub fn apply_pushed(&mut self) -> (u64, Result<()>) {
        let Some(journal) = self.journal.clone() else { return (0, Ok(())) };
        let (batch, seq) = {
            let mut j = journal.lock().expect("journal lock");
            (std::mem::take(&mut j.pending), j.store.seq())
        };
        (seq, self.apply_batch(&journal, batch))
    }

    fn apply_batch(&mut self, journal: &SharedJournal, batch: Vec<PendingPush>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let before = self.api_orders.len();
        let ids: Vec<String> = batch.iter().map(|p| p.order.id.clone()).collect();
        let clients: BTreeSet<&str> = batch.iter().map(|p| p.client.as_str()).collect();
        let actor = clients.into_iter().collect::<Vec<_>>().join(",");
        self.api_orders.extend(batch.into_iter().map(|p| p.order));
        if let Err(e) = self.apply(None, "push", &actor, json!({ "orders": ids }), Instant::now()) {
            let reason = format!("could not be applied: {e:#}");
            self.api_orders.truncate(before);
            {
                let mut j = journal.lock().expect("journal lock");
                for id in &ids {
                    j.store.revoke(id, AGENT, &reason)?;
                }
            }
            self.audit_event(AGENT, "push-failed", json!({ "orders": ids, "error": reason }))?;
            return Err(e);
        }
        Ok(())
    }

    /// Journals (fsync) then lifts a pushed order.
    pub fn revoke_order(&mut self, id: &str, actor: &str, reason: &str) -> Result<crate::orders::store::RevokeOutcome> {
        use crate::orders::store::RevokeOutcome;
        let journal = self.journal.clone().context("the order API is not configured")?;
        let outcome = journal.lock().expect("journal lock").store.revoke(id, actor, reason)?;
        if outcome == RevokeOutcome::Revoked {
            // Not applied yet (still pending)? Then it never will be.
            journal.lock().expect("journal lock").pending.retain(|p| p.order.id != id);
            self.api_orders.retain(|o| o.id != id);
            self.apply(None, "revoke", actor, json!({ "order": id, "reason": reason }), Instant::now())?;
        }
        Ok(outcome)
    }

    /// Orders as the API shows them (all, or one by id).
    pub fn order_views(&self, only: Option<&str>) -> Vec<serde_json::Value> {
        let now = Utc::now();
        let counts: std::collections::BTreeMap<String, (u64, u64)> = crate::report::snapshot(self)
            .map(|s| s.orders_hits.into_iter().map(|o| (o.order, (o.packets, o.bytes))).collect())
            .unwrap_or_default();
        let state = |o: &Order| if o.is_active(now) { "in-force" } else if now < o.effective { "pending" } else { "expired" };
        let mut out = Vec::new();
        for o in self.file_orders.iter().filter(|o| only.is_none_or(|id| id == o.id)) {
            let (packets, bytes) = counts.get(&o.id).copied().unwrap_or_default();
            out.push(json!({ "id": o.id, "source": o.file, "authority": o.authority, "category": o.category.name(),
                "state": state(o), "effective": o.effective, "expires": o.expires, "entries": o.entries.len(), "packets": packets, "bytes": bytes }));
        }
        if let Some(journal) = &self.journal {
            let journal = journal.lock().expect("journal lock");
            for s in journal.store.orders().filter(|s| only.is_none_or(|id| id == s.id)) {
                let live = self.api_orders.iter().find(|o| o.id == s.id);
                let (packets, bytes) = counts.get(&s.id).copied().unwrap_or_default();
                let st = match (&s.revoked, live) {
                    (Some(_), _) => "revoked",
                    (None, Some(o)) => state(o),
                    (None, None) => "invalid",
                };
                out.push(json!({ "id": s.id, "source": "api", "client": s.client, "received": s.received, "authority": s.signed.order["authority"],
                    "category": s.signed.order["category"], "state": st, "effective": s.signed.order["effective"], "expires": s.signed.order["expires"],
                    "entries": s.signed.order["entries"].as_array().map_or(0, |e| e.len()), "packets": packets, "bytes": bytes,
                    "revoked": s.revoked, "order": if only.is_some() { s.signed.order.clone() } else { serde_json::Value::Null } }));
            }
        }
        for o in &self.auto_orders {
            let (packets, bytes) = counts.get(&o.id).copied().unwrap_or_default();
            if only.is_none_or(|id| id == o.id) {
                out.push(json!({ "id": o.id, "source": "auto", "authority": o.authority, "category": o.category.name(),
                    "state": state(o), "effective": o.effective, "expires": null, "entries": o.entries.len(), "packets": packets, "bytes": bytes }));
            }
        }
        out
    }

    /// Once a second: rule files changed, or an order became effective or
    /// expired.
    pub fn tick(&mut self) {
        if ruleload::fingerprint(&self.config.sources) != self.fingerprint {
            return self.reload(AGENT, "rule files changed");
        }
        let now = Utc::now();
        let forced = in_force(self.all_orders(), now);
        if forced != self.in_force {
            let expired: Vec<&String> = self.in_force.difference(&forced).collect();
            let activated: Vec<&String> = forced.difference(&self.in_force).collect();
            let action = if activated.is_empty() { "expire" } else if expired.is_empty() { "activate" } else { "expire-activate" };
            let details = json!({ "expired": expired, "activated": activated });
            if let Err(e) = self.apply(None, action, AGENT, details, Instant::now()) {
                self.metrics.reload_errors.inc();
                eprintln!("error: applying order validity changes: {e:#}");
                self.last_error = Some(format!("{e:#}"));
            }
        }
    }
}

pub fn run(mut config: Config) -> Result<()> {
    let mut state = Persisted::open(&config.state_dir)?;
    let mut audit = AuditLog::open(&config.state_dir.join("audit.jsonl"))?;
    let actor = format!("operator:uid={}", unsafe { libc::getuid() });
    // Validate before touching the kernel: a bad rule set changes nothing.
    let started = Instant::now();
    let fingerprint = ruleload::fingerprint(&config.sources);
    let orders = match ruleload::load_sources(&config.sources) {
        Ok(o) => o,
        Err(errors) => {
            let list: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
            audit.append(&actor, "start-rejected", json!({ "errors": list }))?;
            return Err(errors.into());
        }
    };
    dataplane::ensure_bpffs(&config.bpffs)?;
    let pin_dir = config.pin_dir();
    let dp = Dataplane::open_pinned(&pin_dir, config.capacity)?;
    let adopted = dp.adopted();
    if adopted {
        eprintln!("adopting the data plane pinned at {}: the running rules stay in force until the new set is applied", pin_dir.display());
    }
    // Domain names are hashed with the seeds the pinned DOMAINS map is
    // keyed by, else with this installation's own.
    config.settings.name_seeds = match dp.adopted_name_seeds() {
        Some(seeds) => {
            state.set_name_seeds(seeds)?;
            seeds
        }
        None => state.name_seeds()?,
    };
    let mut attached = Vec::new();
    // Slots first: counters are per interface and must keep their meaning.
    let slots: Vec<u32> = config.interfaces.iter().map(|i| state.slot(i)).collect::<Result<_>>()?;
    let metrics = Metrics {
        reload_duration: prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("edgefilter_reload_duration_seconds", "Time to validate, compile and apply a rule set.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0]),
        )?,
        reload_errors: prometheus::IntCounter::new("edgefilter_reload_errors_total", "Rule sets rejected (the previous one stayed in force).")?,
        order_enforcement: prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("edgefilter_order_enforcement_seconds", "From an order push received to its entries live in the kernel maps.")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?,
        last_reload: 0.0,
        sequence: state.sequence,
    };
    let inspector = Arc::new(Inspector::new(dp.bans_handle()?, Some(dp.config_handle()?)));
    let mut agent = Agent {
        config: config.clone(),
        dataplane: dp,
        file_orders: Vec::new(),
        api_orders: Vec::new(),
        auto_orders: Vec::new(),
        ddos: crate::ddos::Detector::new(config.settings.protect.iter().map(|(name, _)| name.clone()).collect(), config.ddos.clone()),
        journal: None,
        rules: RuleSet::default(),
        in_force: BTreeSet::new(),
        fingerprint,
        state,
        audit,
        metrics,
        last_error: None,
        inspector: inspector.clone(),
        sweep_error: None,
    };
    if config.api.is_some() {
        let (store, torn) = crate::orders::store::OrderStore::open(&config.state_dir.join("orders.journal"))?;
        if let Some(bytes) = torn {
            eprintln!("order journal: cut off a torn last record ({bytes} bytes): it was never acknowledged");
            agent.audit.append(AGENT, "journal-torn-tail", json!({ "bytes": bytes }))?;
        }
        agent.journal = Some(Arc::new(Mutex::new(Journal { store, pending: Vec::new() })));
        agent.load_api_orders()?;
    }
    let action = if adopted { "adopt" } else { "load" };
    agent.apply(Some(orders), action, &actor, json!({ "pins": pin_dir }), started)?;
    for (iface, slot) in config.interfaces.iter().zip(slots) {
        let mode = agent.dataplane.attach(iface, config.attach_mode, slot)?;
        let a = agent.dataplane.attached().last().expect("just attached");
        eprintln!("{} {iface} ({mode} mode, counter slot {slot})", if a.adopted { "took over" } else { "attached to" });
        attached.push(json!({ "interface": iface, "mode": mode, "slot": slot, "took_over": a.adopted }));
    }
    agent.audit.append(&actor, "attach", json!({ "interfaces": attached }))?;
    let sig_events = agent.dataplane.take_sig_events()?;
    let samples = agent.dataplane.take_traffic_samples()?;
    let top: crate::top::SharedWindow =
        Arc::new(Mutex::new(crate::top::Window::new(config.settings.sample_every, config.settings.protect.clone(), Instant::now())));
    let detecting = !config.settings.protect.is_empty();
    let shared: Shared = Arc::new(Mutex::new(agent));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let metrics_addr = config.metrics;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/status", get(status_text))
            .route("/status.json", get(status_json))
            .with_state(shared.clone())
            .merge(Router::new().route("/top.json", get(top_json)).with_state(top.clone()));
        let listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("binding the metrics address {metrics_addr}"))?;
        eprintln!("metrics on http://{metrics_addr}/metrics, status on http://{metrics_addr}/status");
        tokio::spawn(maintain(shared.clone()));
        if detecting {
            tokio::spawn(detect(shared.clone()));
        }
        match samples {
            Some(ring) => {
                tokio::spawn(crate::top::read_samples(top, ring));
            }
            None => eprintln!("warning: the XDP program has no {} ring buffer: `filter-agent top` has no data", filter_common::maps::names::TRAFFIC_SAMPLES),
        }
        match sig_events {
            Some(ring) => {
                let agent = shared.clone();
                let set_flag: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                    if let Err(e) = agent.lock().expect("agent lock").dataplane.set_bans_flag() {
                        eprintln!("error: setting CONFIG bans after a ban: {e:#}");
                    }
                });
                tokio::spawn(inspect::read_events(inspector, ring, set_flag));
            }
            None => eprintln!("warning: the XDP program has no {} ring buffer: no deep inspection", filter_common::maps::names::SIG_EVENTS),
        }
        if let Some(api) = config.api.clone() {
            let wake = std::sync::Arc::new(tokio::sync::Notify::new());
            let (applied_tx, applied) = tokio::sync::watch::channel(0u64);
            tokio::spawn(apply_pushes(shared.clone(), wake.clone(), applied_tx));
            let (journal, order_enforcement) = {
                let agent = shared.lock().expect("agent lock");
                (agent.journal.clone().expect("journal opened with the API"), agent.metrics.order_enforcement.clone())
            };
            let state = std::sync::Arc::new(crate::orders::api::ApiState {
                agent: shared.clone(),
                journal,
                order_enforcement,
                api: api.clone(),
                authorities: config.authorities.clone(),
                wake,
                applied,
            });
            let app = crate::orders::api::router(state);
            match &api.tls {
                Some((cert, key)) => {
                    // ring: no C toolchain beyond gcc needed (aws-lc wants cmake).
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                        .await
                        .with_context(|| format!("loading the API certificate {} and key {}", cert.display(), key.display()))?;
                    eprintln!("order API on https://{}", api.listen);
                    tokio::spawn(axum_server::bind_rustls(api.listen, tls).serve(app.into_make_service()));
                }
                None => {
                    let listener = tokio::net::TcpListener::bind(api.listen).await.with_context(|| format!("binding the API address {}", api.listen))?;
                    eprintln!("order API on http://{} (loopback only, no TLS)", api.listen);
                    tokio::spawn(async move { axum::serve(listener, app).await });
                }
            }
        }
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
        let mut agent = shared.lock().expect("agent lock");
        let pins = agent.config.pin_dir();
        agent.audit.append(AGENT, "stop", json!({ "filtering": "stays in force", "pins": pins }))?;
        eprintln!("stopping; filtering stays in force (pinned at {}); `filter-agent detach` removes it", pins.display());
        Ok::<_, anyhow::Error>(())
    })
}

pub type Shared = Arc<Mutex<Agent>>;

/// The once-a-second tick, SIGHUP reloads and the ban sweep, off the async
/// threads (a large rule set takes a second or two to apply).
async fn maintain(shared: Shared) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let reload = tokio::select! {
            _ = tick.tick() => false,
            _ = hup.recv() => true,
        };
        let shared = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut agent = shared.lock().expect("agent lock");
            if reload {
                agent.reload("operator:SIGHUP", "SIGHUP");
            } else {
                agent.tick();
            }
            agent.sweep_bans();
        })
        .await;
    }
}

/// Attack detection, once a second (off the async threads: a mitigation
/// is a rule-set apply).
async fn detect(shared: Shared) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let shared = shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.lock().expect("agent lock").detect()).await;
    }
}

/// `/top.json?by=pps|bps&n=10`: the busiest destinations and sources of
/// the last 10 seconds, from the traffic samples.
async fn top_json(State(top): State<crate::top::SharedWindow>, uri: axum::http::Uri) -> impl IntoResponse {
    let (by, n) = crate::top::query_args(uri.query());
    let report = tokio::task::spawn_blocking(move || top.lock().expect("top window lock").report(Instant::now(), by, n)).await;
    match report {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

/// Group commit: whenever pushes were journaled, enforce all of them with
/// one rule-set apply, then publish the journal position now settled.
async fn apply_pushes(shared: Shared, wake: std::sync::Arc<tokio::sync::Notify>, applied: tokio::sync::watch::Sender<u64>) {
    loop {
        wake.notified().await;
        let shared = shared.clone();
        let settled = tokio::task::spawn_blocking(move || {
            let mut agent = shared.lock().expect("agent lock");
            let (settled, result) = agent.apply_pushed();
            if let Err(e) = result {
                // The batch was revoked in the journal; its waiters see that.
                eprintln!("error: applying pushed orders: {e:#}");
                agent.last_error = Some(format!("{e:#}"));
            }
            settled
        })
        .await
        .unwrap_or(0);
        applied.send_replace(settled);
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn snapshot(state: &Shared) -> Result<report::Snapshot> {
    let agent = state.lock().expect("agent lock");
    report::snapshot(&agent)
}

async fn metrics_handler(State(state): State<Shared>) -> impl IntoResponse {
    let result = tokio::task::spawn_blocking(move || {
        let s = snapshot(&state)?;
        let agent = state.lock().expect("agent lock");
        report::render_metrics(&s, &agent.metrics)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    match result {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

async fn status_text(State(state): State<Shared>) -> impl IntoResponse {
    match tokio::task::spawn_blocking(move || snapshot(&state)).await.map_err(anyhow::Error::from).and_then(|r| r) {
        Ok(s) => report::render_status(&s).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

async fn status_json(State(state): State<Shared>) -> impl IntoResponse {
    match tokio::task::spawn_blocking(move || snapshot(&state)).await.map_err(anyhow::Error::from).and_then(|r| r) {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}
