//! The operator's view, proven against a real Prometheus: the real agent
//! (harness) enforces orders on real UDP flows while a real Prometheus
//! (Debian's `prometheus`, from `cargo xtask setup`) scrapes it every second
//! with the shipped `deploy/prometheus/prometheus.yml` and evaluates the
//! shipped `deploy/prometheus/alerts.yml`. Prometheus runs inside the
//! server namespace, on its loopback, so it reaches nothing but the agent.
//!
//! Then every PromQL expression of the Grafana dashboard
//! (`deploy/grafana/edgefilter.json`, template variables substituted as
//! Grafana would) and every alert rule is evaluated through the HTTP API:
//! each must parse, and each dashboard query must return series, except
//! panels marked `"edgefilterFuture": true` (metrics the agent does not
//! export yet). The alerts that the run provokes (an order expiring within
//! 24 h, a rejected reload, the agent killed) are seen by the rules' own
//! queries, and those it must not provoke stay quiet.
//! `promtool check metrics` must find the agent's /metrics clean.
//!
//! With `EDGEFILTER_RENDER_DASHBOARD=1` the run is longer and the main
//! panels, fetched with `/api/v1/query_range`, are written to
//! `target/<profile>/edgefilter-dashboard-series.json` and rendered with
//! plotters to `deploy/grafana/dashboard.png` (the README's picture).
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgefilter_tests::harness::{Harness, SERVER};
use edgefilter_tests::TempDir;
use serde_json::{json, Value};

const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";
/// Prometheus' `instance` label for the agent (the shipped scrape target).
const AGENT_INSTANCE: &str = "127.0.0.1:9960";
/// What Grafana's `$__rate_interval` and `$__interval` become here (1 s scrapes).
const RATE_INTERVAL: &str = "10s";
const INTERVAL: &str = "5s";
/// The dashboard panels drawn in dashboard.png (the overview stats come too).
const PNG_PANELS: &[&str] = &[
    "Packets passed by reason",
    "Packets dropped by reason",
    "Traffic by interface and verdict",
    "Drops per order",
    "Rules in force by kind and category",
    "Reloads applied and rejected",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// /usr/bin/<name> from Debian's `prometheus` package, or a clear failure.
fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: install the Debian package `prometheus` (`cargo xtask setup` does, or `apt-get install prometheus`)",
        path.display()
    );
    path
}

fn run_tool(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn alert_rules_pass_promtool() {
    let promtool = tool("promtool");
    let dir = repo().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "deploy/prometheus/alerts.yml"],
        vec!["test", "rules", "deploy/prometheus/alerts_test.yml"],
        vec!["check", "config", "deploy/prometheus/prometheus.yml"],
    ] {
        let (ok, out) = run_tool(Command::new(&promtool).args(&args).current_dir(repo()));
        assert!(ok, "promtool {} failed:\n{out}", args.join(" "));
        assert!(out.contains("SUCCESS"), "promtool {}:\n{out}", args.join(" "));
    }
    // Every alert carries a severity and the three annotations.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let alerts = rules.matches("- alert:").count();
    let lines: Vec<&str> = rules.lines().map(str::trim_start).filter(|l| !l.starts_with('#')).collect();
    for key in ["severity:", "summary:", "description:", "runbook_url: \"deploy/RUNBOOK.md#"] {
        assert_eq!(lines.iter().filter(|l| l.starts_with(key)).count(), alerts, "every alert needs `{key}`");
    }
}

/// Prometheus running in the server namespace; killed and its storage
/// removed on drop, also when the test fails.
struct Prometheus {
    child: Child,
    dir: TempDir,
}

impl Prometheus {
    fn start(h: &Harness, bin: &Path) -> Prometheus {
        let dir = TempDir::new("obs-prometheus");
        let shipped = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
        for want in ["scrape_interval: 15s", "evaluation_interval: 15s", "- alerts.yml", "job_name: edgefilter", "\"127.0.0.1:9960\""] {
            assert!(shipped.contains(want), "deploy/prometheus/prometheus.yml lacks `{want}`");
        }
        // The shipped configuration, scraping and evaluating every second.
        let config = shipped.replace("scrape_interval: 15s", "scrape_interval: 1s").replace("evaluation_interval: 15s", "evaluation_interval: 1s");
        std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
        std::fs::copy(repo().join("deploy/prometheus/alerts.yml"), dir.0.join("alerts.yml")).unwrap();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns.names[SERVER]])
            .arg(bin)
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address={PROMETHEUS_ADDR}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", p.log());
            }
            if http_get(h, "/-/ready", vec![]).0 == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "prometheus not ready within 30 s:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("prometheus log (last lines):\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        // `dir` (configuration and TSDB) is removed when it drops.
    }
}

/// GET on Prometheus from a thread inside the server namespace: (status, body).
fn http_get(h: &Harness, path: &str, params: Vec<(String, String)>) -> (u16, String) {
    let url = format!("http://{PROMETHEUS_ADDR}{path}");
    h.ns.within(SERVER, move || {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().new_agent();
        let mut req = agent.get(&url);
        for (k, v) in &params {
            req = req.query(k, v);
        }
        match req.call() {
            Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
}

/// A Prometheus API call; the decoded JSON answer (status success or error).
fn api(h: &Harness, path: &str, params: &[(&str, &str)]) -> Value {
    let (code, body) = http_get(h, path, params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} {params:?}: HTTP {code}, not JSON ({e}): {body}"))
}

/// Instant query: the result vector, or the error Prometheus gave.
fn query(h: &Harness, expr: &str) -> Result<Vec<Value>, String> {
    let v = api(h, "/api/v1/query", &[("query", expr)]);
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(match &v["data"]["result"] {
        Value::Array(a) => a.clone(),
        // scalar or string results count as one series
        other => vec![json!({ "metric": {}, "value": other })],
    })
}

fn value_of(sample: &Value) -> f64 {
    sample["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Grafana's escaping of a variable value used in a regex matcher.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\^$.|?*+()[]{}/".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// Template variables as Grafana substitutes them.
struct Vars {
    instance: String,
    interface: String,
    range: String,
}

impl Vars {
    fn apply(&self, expr: &str) -> String {
        let out = expr
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__interval", INTERVAL)
            .replace("$__range", &self.range)
            .replace("$instance", &regex_escape(&self.instance))
            .replace("$interface", &regex_escape(&self.interface));
        assert!(!out.contains('$'), "unknown template variable in {expr}");
        out
    }
}

/// `{{label}}` in a legend format filled from a series' labels.
fn legend(format: &str, metric: &Value) -> String {
    let mut out = format.to_string();
    if let Some(m) = metric.as_object() {
        for (k, v) in m {
            out = out.replace(&format!("{{{{{k}}}}}"), v.as_str().unwrap_or(""));
        }
    }
    if out.is_empty() {
        metric.to_string()
    } else {
        out
    }
}

/// An order in force since a day ago, expiring in `hours`.
fn order(id: &str, category: &str, action: &str, hours: i64, entries: &str) -> String {
    let at = |h: i64| (chrono::Utc::now() + chrono::Duration::hours(h)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        "id = \"{id}\"\nauthority = \"Example Test Authority\"\nreference = \"observability test {id}\"\ncategory = \"{category}\"\n\
         received = {}\neffective = {}\nexpires = {}\naction = \"{action}\"\n{entries}",
        at(-24),
        at(-24),
        at(hours)
    )
}

fn panels(dash: &Value) -> Vec<&Value> {
    dash["panels"].as_array().expect("panels").iter().filter(|p| p["type"] != "row").collect()
}

fn is_future(panel: &Value) -> bool {
    panel["edgefilterFuture"] == true
}

/// Every `expr` anywhere in the dashboard (panel targets, annotations).
fn all_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => all_exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| all_exprs(x, out)),
        _ => {}
    }
}

/// The dashboard's shape: what Grafana needs to provision and lay it out.
fn check_dashboard_shape(dash: &Value) {
    assert_eq!(dash["uid"], "edgefilter");
    let vars: Vec<&str> = dash["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    for want in ["datasource", "instance", "interface"] {
        assert!(vars.contains(&want), "dashboard lacks the `{want}` variable: {vars:?}");
    }
    let all = dash["panels"].as_array().unwrap();
    let mut ids: Vec<u64> = all.iter().map(|p| p["id"].as_u64().expect("panel id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "panel ids must be unique");
    let rect = |p: &Value| {
        let g = &p["gridPos"];
        (g["x"].as_i64().unwrap(), g["y"].as_i64().unwrap(), g["w"].as_i64().unwrap(), g["h"].as_i64().unwrap())
    };
    for (i, a) in all.iter().enumerate() {
        let (x, _, w, _) = rect(a);
        assert!(x >= 0 && w > 0 && x + w <= 24, "panel {} outside the 24-column grid", a["title"]);
        for b in &all[i + 1..] {
            let (ax, ay, aw, ah) = rect(a);
            let (bx, by, bw, bh) = rect(b);
            let overlap = ax < bx + bw && bx < ax + aw && ay < by + bh && by < ay + ah;
            assert!(!overlap, "panels {} and {} overlap", a["title"], b["title"]);
        }
    }
    for p in panels(dash) {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}: use the datasource variable");
        assert!(!p["description"].as_str().unwrap_or("").is_empty(), "{title}: needs a description");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{title}: target without expr"));
            assert!(expr.contains("$instance"), "{title}: every query filters by $instance: {expr}");
        }
        if is_future(p) {
            assert!(p["description"].as_str().unwrap().contains("Available once"), "{title}: a future panel says what it waits for");
        }
    }
}

#[test]
fn dashboard_and_alerts_against_real_prometheus() {
    let prometheus_bin = tool("prometheus");
    let promtool = tool("promtool");
    let render = std::env::var("EDGEFILTER_RENDER_DASHBOARD").is_ok_and(|v| v == "1");
    // Seconds per traffic phase; longer when rendering the README's picture.
    let phase = Duration::from_secs(if render { 20 } else { 5 });
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/edgefilter.json")).unwrap()).expect("edgefilter.json");
    check_dashboard_shape(&dash);

    let mut h = Harness::new("obs", &["2001:db8:f1::1", "2001:db8:f2::1", "2001:db8:f3::1"]);
    let prefix = "\n[[entry]]\nprefixes = [\"2001:db8:f1::/48\"]\ndirection = \"src\"\n";
    std::fs::write(h.rules_dir().join("legal.toml"), order("OBS-LEGAL-1", "legal", "drop", 24 * 365, prefix)).unwrap();
    let udp = |port: u16| format!("\n[[entry]]\nprotocol = \"udp\"\ndestination_ports = [{port}]\n");
    std::fs::write(h.rules_dir().join("attack.toml"), order("OBS-ATTACK-1", "attack", "drop", 24 * 30, &udp(7302))).unwrap();
    std::fs::write(h.rules_dir().join("trial.toml"), order("OBS-TRIAL-1", "operator", "dry-run", 12, &udp(7303))).unwrap();
    // A signature that counts the allowed flow (alert: it passes), so the
    // signature panels have series.
    let pack = h.dir.0.join("obs.rules");
    std::fs::write(&pack, "alert udp $EXTERNAL_NET any -> $HOME_NET 7301 (msg:\"OBS flow marker\"; content:\"edgefilter flow\"; sid:9100001;)\n").unwrap();
    // A protected prefix group (the server) and an attack policy that this
    // traffic never fires: its gauge is exported at 0, the protected-prefix
    // panels have series.
    let protect = "[[protect]]\nname = \"customers\"\nprefixes = [\"2001:db8:e2e::/64\"]\n\n[[ddos_policy]]\nname = \"udp-flood\"\n\
                   prefix_group = \"customers\"\nmetric = \"udp_pps\"\nthreshold = 1000000\n[ddos_policy.mitigation]\nprotocol = \"udp\"\n\
                   rate_limit = { per = \"destination\", pps = 100000 }\n";
    h.write_config(&format!(
        "{protect}\n[signatures]\npacks = [\"{}\"]\n[signatures.vars]\nHOME_NET = \"[2001:db8:e2e::2]\"\nEXTERNAL_NET = \"!$HOME_NET\"\n",
        pack.display()
    ));
    h.start();
    // Dropped last, so it goes first: Prometheus and its storage.
    let prom = Prometheus::start(&h, &prometheus_bin);
    let started = now();
    let vars = |end: f64| Vars { instance: AGENT_INSTANCE.into(), interface: h.server_if.clone(), range: format!("{}s", (end - started).ceil() as u64 + 1) };

    // Traffic, in phases: passed, dropped by a prefix order, would-drop of a
    // dry-run order; then an attack (dropped by an L4 order); then a reload
    // and a rejected reload; then the attack ends.
    let allowed = h.flow("2001:db8:f2::1", 7301);
    let legal = h.flow("2001:db8:f1::1", 7304);
    let trial = h.flow("2001:db8:f2::1", 7303);
    std::thread::sleep(phase);
    let attack = h.flow("2001:db8:f3::1", 7302);
    std::thread::sleep(phase);

    let sequence = h.status()["ruleset_sequence"].as_u64().unwrap();
    let more = "\n[[entry]]\nprefixes = [\"2001:db8:f9::/48\", \"2001:db8:fa::/48\"]\ndirection = \"src\"\n";
    std::fs::write(h.rules_dir().join("legal2.toml"), order("OBS-LEGAL-2", "legal", "drop", 24 * 365, more)).unwrap();
    let sequence = h.wait_for_sequence(sequence);
    std::thread::sleep(Duration::from_secs(2));
    // A bad file: the agent keeps the old rules and says so.
    let bad = "\n[[entry]]\nprefixes = [\"2001:db8:f2::1/48\"]\n";
    std::fs::write(h.rules_dir().join("bad.toml"), order("OBS-BAD", "legal", "drop", 24 * 365, bad)).unwrap();
    let rules = wait_for_rules(&h);
    let alert_query = |name: &str| -> String {
        rules.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("alert {name} not loaded"))["query"].as_str().unwrap().to_string()
    };
    let rejected = alert_query("EdgefilterReloadRejected");
    let seen = wait_for(&h, &rejected, Duration::from_secs(15));
    assert_eq!(seen[0]["metric"]["instance"], AGENT_INSTANCE, "{seen:?}");
    assert_eq!(seen[0]["metric"]["job"], "edgefilter", "{seen:?}");
    // Prometheus evaluates the rule itself: pending (for: 1m).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !active_alerts(&h).iter().any(|a| a["labels"]["alertname"] == "EdgefilterReloadRejected") {
        assert!(Instant::now() < deadline, "EdgefilterReloadRejected never became active: {:?}", active_alerts(&h));
        std::thread::sleep(Duration::from_millis(250));
    }
    std::fs::remove_file(h.rules_dir().join("bad.toml")).unwrap();
    h.wait_for_sequence(sequence);
    std::thread::sleep(phase.saturating_sub(Duration::from_secs(2)));
    let (_, attack_got) = attack.stop();
    std::thread::sleep(phase);

    // Several scrapes at least, all of them successful.
    let scrapes = query(&h, "count_over_time(up{job=\"edgefilter\"}[10m])").unwrap();
    let ups = query(&h, "sum_over_time(up{job=\"edgefilter\"}[10m])").unwrap();
    let (scrapes, ups) = (value_of(&scrapes[0]), value_of(&ups[0]));
    assert!(scrapes >= 10.0 && ups == scrapes, "{scrapes} scrapes, {ups} successful");

    // The agent's exposition, with traffic, reloads and a rejected reload
    // counted, is clean by promtool's rules.
    let metrics = h.fetch("/metrics");
    for family in [
        "edgefilter_packets_total",
        "edgefilter_rule_packets_total",
        "edgefilter_reload_duration_seconds_bucket",
        "edgefilter_reload_errors_total 1",
        "edgefilter_signature_hits_total{action=\"alert\",pack=\"obs\",sid=\"9100001\"}",
        "edgefilter_attack_active{policy=\"udp-flood\",prefix_group=\"customers\"} 0",
        "edgefilter_mitigations_total{policy=\"udp-flood\"} 0",
        "edgefilter_protected_packets_total{prefix_group=\"customers\",protocol=\"udp\"}",
    ]
    {
        assert!(metrics.contains(family), "/metrics lacks {family}:\n{metrics}");
    }
    let mut check = Command::new(&promtool).args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    check.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics on /metrics:\n{report}\n--- /metrics:\n{metrics}");

    // Template variables: label_values() as Grafana resolves them.
    let end = now();
    let v = vars(end);
    for var in dash["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
        let def = var["definition"].as_str().unwrap();
        let inner = def.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')).unwrap_or_else(|| panic!("not label_values(): {def}"));
        let (selector, label) = inner.rsplit_once(',').unwrap_or(("", inner));
        let mut params = vec![];
        let selector = v.apply(selector.trim());
        if !selector.is_empty() {
            params.push(("match[]", selector.as_str()));
        }
        let values = api(&h, &format!("/api/v1/label/{}/values", label.trim()), &params);
        assert_eq!(values["status"], "success", "{def}: {values}");
        let want = if var["name"] == "instance" { AGENT_INSTANCE } else { h.server_if.as_str() };
        assert!(values["data"].as_array().unwrap().iter().any(|x| x == want), "variable {} ({def}) lacks {want}: {values}", var["name"]);
    }

    // Every dashboard expression parses; every query of a panel returns series
    // unless the panel waits for a future metric.
    let mut exprs = Vec::new();
    all_exprs(&dash, &mut exprs);
    for expr in &exprs {
        query(&h, &v.apply(expr)).unwrap_or_else(|e| panic!("dashboard expression does not parse: {expr}\n{e}"));
    }
    let mut checked = 0;
    let mut results: Vec<(String, String, Vec<Value>)> = Vec::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap();
        for t in p["targets"].as_array().unwrap() {
            let expr = v.apply(t["expr"].as_str().unwrap());
            let series = query(&h, &expr).unwrap();
            if is_future(p) {
                if !series.is_empty() {
                    println!("note: panel \"{title}\" is marked edgefilterFuture but returns series now: remove the flag");
                }
            } else {
                assert!(!series.is_empty(), "panel \"{title}\" returns no series: {expr}");
                checked += 1;
            }
            results.push((title.to_string(), t["legendFormat"].as_str().unwrap_or("").to_string(), series));
        }
    }
    let future = panels(&dash).iter().filter(|p| is_future(p)).count();
    println!("dashboard: {} expressions parse; {checked} panel queries return series; {future} future panels not required to", exprs.len());

    // What the dashboard shows is what happened.
    let shown = |title: &str| -> Vec<(String, f64)> {
        results.iter().filter(|r| r.0 == title).flat_map(|r| r.2.iter().map(|s| (legend(&r.1, &s["metric"]), value_of(s)))).collect()
    };
    let per_order = shown("Top orders in the time range");
    for o in ["OBS-LEGAL-1 (legal)", "OBS-ATTACK-1 (attack)", "OBS-TRIAL-1 (operator)"] {
        assert!(per_order.iter().any(|(n, x)| n == o && *x > 100.0), "top orders lack {o}: {per_order:?}");
    }
    let dropped = shown("Packets dropped by reason");
    assert!(dropped.iter().any(|(n, x)| n.ends_with(" prefix") && *x > 100.0), "{dropped:?}");
    let rules_shown = shown("Rules in force by kind and category");
    assert!(rules_shown.iter().any(|(n, x)| n == "prefix legal" && *x == 3.0), "{rules_shown:?}");
    assert_eq!(shown("Last reload"), vec![(AGENT_INSTANCE.to_string(), 1.0)]);

    // Every alert rule parses and evaluates without error, on real data.
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap().matches("- alert:").count();
    let rules = wait_for_rules(&h);
    assert_eq!(rules.len(), alerts, "Prometheus loaded {} of {alerts} alerts", rules.len());
    for r in &rules {
        let q = r["query"].as_str().unwrap();
        query(&h, q).unwrap_or_else(|e| panic!("alert {} does not evaluate: {q}\n{e}", r["name"]));
    }
    // The dry-run trial order expires in 12 h, the others later.
    let expiring = wait_for(&h, &alert_query("EdgefilterOrderExpiringSoon"), Duration::from_secs(5));
    let names: Vec<&Value> = expiring.iter().map(|s| &s["metric"]["order"]).collect();
    assert_eq!(names, vec!["OBS-TRIAL-1"], "{expiring:?}");
    let left = value_of(&expiring[0]);
    assert!((11.9 * 3600.0..12.0 * 3600.0).contains(&left), "expires in {left} s");
    // The rejected reload is over but recent: EdgefilterReloadErrors fires.
    let errors = wait_for(&h, &alert_query("EdgefilterReloadErrors"), Duration::from_secs(10));
    assert_eq!(errors[0]["metric"]["instance"], AGENT_INSTANCE);
    let firing: Vec<String> = active_alerts(&h).iter().map(|a| format!("{} {}", a["labels"]["alertname"], a["state"])).collect();
    for quiet in
        ["EdgefilterAgentDown", "EdgefilterNotEnforcing", "EdgefilterMapNearlyFull", "EdgefilterOrderEnforcementSlow", "EdgefilterAttackMitigationActive"]
    {
        assert!(!firing.iter().any(|a| a.starts_with(&format!("{quiet} "))), "{quiet} must not be active: {firing:?}");
    }

    let series_file = if render { Some(write_series(&h, &dash, &vars(now()), started, now())) } else { None };

    // The agent dies: the AgentDown rule's query sees it at the next scrape.
    let (_, allowed_got) = allowed.stop();
    let (_, legal_got) = legal.stop();
    let (_, trial_got) = trial.stop();
    assert!(allowed_got > 1000 && trial_got > 1000, "passed flows: {allowed_got}, {trial_got}");
    assert_eq!((legal_got, attack_got), (0, 0), "blocked flows got through");
    h.kill9();
    let down = wait_for(&h, &alert_query("EdgefilterAgentDown"), Duration::from_secs(10));
    assert_eq!(down[0]["metric"]["instance"], AGENT_INSTANCE);
    drop(prom);

    if let Some(file) = series_file {
        let png = repo().join("deploy/grafana/dashboard.png");
        render_png(&file, &png);
        println!("rendered {} from {}", png.display(), file.display());
    }
}

/// Redraws dashboard.png from the series the last rendering run saved
/// (`cargo test --release -p edgefilter-tests --test observability -- --ignored`).
#[test]
#[ignore = "redraws deploy/grafana/dashboard.png from saved series"]
fn redraw_dashboard_png() {
    let file = series_file();
    assert!(file.exists(), "{} missing: run with EDGEFILTER_RENDER_DASHBOARD=1 first", file.display());
    render_png(&file, &repo().join("deploy/grafana/dashboard.png"));
}

fn series_file() -> PathBuf {
    edgefilter_tests::agent_binary().parent().unwrap().join("edgefilter-dashboard-series.json")
}

/// The alerting rules Prometheus loaded, once each has been evaluated.
fn wait_for_rules(h: &Harness) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = api(h, "/api/v1/rules", &[("type", "alert")]);
        let rules: Vec<Value> = v["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
        if !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok") {
            return rules;
        }
        let bad: Vec<&Value> = rules.iter().filter(|r| r["health"] == "err").collect();
        assert!(bad.is_empty(), "alert rules failing on real data: {bad:?}");
        assert!(Instant::now() < deadline, "alert rules not evaluated: {v}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn active_alerts(h: &Harness) -> Vec<Value> {
    api(h, "/api/v1/alerts", &[])["data"]["alerts"].as_array().cloned().unwrap_or_default()
}

/// Polls an instant query until it returns series.
fn wait_for(h: &Harness, expr: &str, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let r = query(h, expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        if !r.is_empty() {
            return r;
        }
        assert!(Instant::now() < deadline, "no series within {limit:?}: {expr}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Fetches what dashboard.png shows (query_range, 1 s steps) and writes it
/// to target/<profile>/edgefilter-dashboard-series.json.
fn write_series(h: &Harness, dash: &Value, vars: &Vars, start: f64, end: f64) -> PathBuf {
    let (start_s, end_s) = (format!("{start:.3}"), format!("{end:.3}"));
    let mut stats = Vec::new();
    for p in panels(dash).into_iter().filter(|p| p["type"] == "stat") {
        let t = &p["targets"][0];
        let r = query(h, &vars.apply(t["expr"].as_str().unwrap())).unwrap();
        let first = r.first().cloned().unwrap_or(Value::Null);
        let x = value_of(&first);
        let defaults = &p["fieldConfig"]["defaults"];
        let mapping = &defaults["mappings"][0]["options"][format!("{x}")];
        let (text, color) = if p["options"]["textMode"] == "name" {
            (legend(t["legendFormat"].as_str().unwrap(), &first["metric"]), defaults["color"]["fixedColor"].clone())
        } else if mapping.is_object() {
            (mapping["text"].as_str().unwrap().to_string(), mapping["color"].clone())
        } else {
            let text = match defaults["unit"].as_str() {
                Some("percentunit") => format!("{:.1}%", x * 100.0),
                Some("s") => format!("{x:.0} s"),
                _ => format!("{x}"),
            };
            (text, defaults["color"]["fixedColor"].clone())
        };
        stats.push(json!({ "title": p["title"], "text": text, "color": color }));
    }
    let mut out_panels = Vec::new();
    for title in PNG_PANELS {
        let p = panels(dash).into_iter().find(|p| p["title"] == *title).unwrap_or_else(|| panic!("no panel {title}"));
        let mut series = Vec::new();
        for t in p["targets"].as_array().unwrap() {
            let expr = vars.apply(t["expr"].as_str().unwrap());
            let v = api(h, "/api/v1/query_range", &[("query", &expr), ("start", &start_s), ("end", &end_s), ("step", "1")]);
            assert_eq!(v["status"], "success", "{expr}: {v}");
            let matrix = v["data"]["result"].as_array().unwrap();
            assert!(!matrix.is_empty(), "{title}: no range data for {expr}");
            for s in matrix {
                let points: Vec<Value> = s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|pt| json!([pt[0].as_f64().unwrap(), pt[1].as_str().unwrap().parse::<f64>().unwrap_or(f64::NAN)]))
                    .collect();
                series.push(json!({ "name": legend(t["legendFormat"].as_str().unwrap(), &s["metric"]), "points": points }));
            }
        }
        out_panels.push(json!({ "title": title, "unit": p["fieldConfig"]["defaults"]["unit"], "series": series }));
    }
    let doc = json!({
        "instance": vars.instance,
        "interface": vars.interface,
        "start": start,
        "end": end,
        "stats": stats,
        "panels": out_panels,
    });
    let file = series_file();
    // NaN is not JSON: serde_json writes null, read back as a gap.
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    file
}

// ---------------------------------------------------------------------------
// dashboard.png: plotters' bitmap backend; text drawn from the font8x8
// bitmap font (no system fonts, no freetype).

mod png {
    use plotters::coord::Shift;
    use plotters::prelude::*;

    pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

    pub const BG: RGBColor = RGBColor(17, 18, 23);
    pub const PANEL: RGBColor = RGBColor(24, 27, 31);
    pub const BORDER: RGBColor = RGBColor(44, 48, 56);
    pub const GRID: RGBColor = RGBColor(38, 41, 47);
    pub const TEXT: RGBColor = RGBColor(216, 217, 218);
    pub const DIM: RGBColor = RGBColor(142, 142, 150);
    /// Grafana's classic palette.
    pub const PALETTE: &[RGBColor] = &[
        RGBColor(115, 191, 105),
        RGBColor(242, 204, 12),
        RGBColor(138, 184, 255),
        RGBColor(255, 120, 10),
        RGBColor(242, 73, 92),
        RGBColor(87, 148, 242),
        RGBColor(184, 119, 217),
        RGBColor(112, 219, 237),
    ];

    pub fn named(color: &str) -> RGBColor {
        match color {
            "green" => RGBColor(55, 135, 45),
            "red" => RGBColor(196, 22, 42),
            "orange" => RGBColor(250, 100, 0),
            "blue" => RGBColor(31, 96, 196),
            _ => RGBColor(70, 75, 85),
        }
    }

    pub fn text_width(s: &str, scale: i32) -> i32 {
        s.chars().count() as i32 * 8 * scale
    }

    /// `s` with its top-left corner at (x, y), 8x8 glyphs times `scale`.
    pub fn text(area: &Area, x: i32, y: i32, s: &str, scale: i32, color: RGBColor) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() { ch as usize } else { '?' as usize }];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) == 0 {
                        continue;
                    }
                    let (px, py) = (x + (i as i32 * 8 + col) * scale, y + row as i32 * scale);
                    if scale == 1 {
                        area.draw_pixel((px, py), &color).unwrap();
                    } else {
                        area.draw(&Rectangle::new([(px, py), (px + scale, py + scale)], color.filled())).unwrap();
                    }
                }
            }
        }
    }

    pub fn rect(area: &Area, x: i32, y: i32, w: i32, h: i32, fill: RGBColor, border: Option<RGBColor>) {
        area.draw(&Rectangle::new([(x, y), (x + w, y + h)], fill.filled())).unwrap();
        if let Some(b) = border {
            area.draw(&Rectangle::new([(x, y), (x + w, y + h)], b.stroke_width(1))).unwrap();
        }
    }

    /// 1234567 -> "1.23M", with a unit suffix.
    pub fn si(x: f64, unit: &str) -> String {
        let (v, p) = match x.abs() {
            a if a >= 1e9 => (x / 1e9, "G"),
            a if a >= 1e6 => (x / 1e6, "M"),
            a if a >= 1e3 => (x / 1e3, "k"),
            _ => (x, ""),
        };
        let num = if v == v.trunc() {
            format!("{v:.0}")
        } else if v.abs() >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        };
        let u = match unit {
            "pps" => " p/s",
            "bps" => "b/s",
            "s" => " s",
            _ => "",
        };
        format!("{num}{p}{u}")
    }

    pub fn unit_name(unit: &str) -> &'static str {
        match unit {
            "pps" => "packets/s",
            "bps" => "bits/s",
            "s" => "seconds",
            _ => "",
        }
    }

    /// A round upper bound for the axis.
    pub fn nice_max(x: f64) -> f64 {
        if x.is_nan() || x <= 0.0 {
            return 1.0;
        }
        let mag = 10f64.powf(x.log10().floor());
        for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
            if m * mag >= x {
                return m * mag;
            }
        }
        10.0 * mag
    }
}

fn render_png(series_file: &Path, png_path: &Path) {
    use plotters::prelude::*;
    use png::*;

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(series_file).unwrap()).unwrap();
    let (start, end) = (doc["start"].as_f64().unwrap(), doc["end"].as_f64().unwrap());
    let (w, h) = (1600i32, 1330i32);
    let root = BitMapBackend::new(png_path, (w as u32, h as u32)).into_drawing_area();
    root.fill(&BG).unwrap();

    // Header.
    text(&root, 16, 14, "edgefilter", 3, TEXT);
    let sub = format!(
        "instance {}   interface {}   last {:.0} s   (real agent and Prometheus: tests/tests/observability.rs)",
        doc["instance"].as_str().unwrap(),
        doc["interface"].as_str().unwrap(),
        end - start
    );
    text(&root, 16 + text_width("edgefilter", 3) + 24, 22, &sub, 1, DIM);

    // Overview stats.
    let stats = doc["stats"].as_array().unwrap();
    let (gap, top) = (10, 50);
    let sw = (w - gap * (stats.len() as i32 + 1)) / stats.len() as i32;
    for (i, s) in stats.iter().enumerate() {
        let x = gap + i as i32 * (sw + gap);
        rect(&root, x, top, sw, 84, named(s["color"].as_str().unwrap_or("")), Some(BORDER));
        text(&root, x + 10, top + 10, s["title"].as_str().unwrap(), 1, TEXT);
        let value = s["text"].as_str().unwrap();
        let scale = if text_width(value, 4) <= sw - 20 { 4 } else { 3 };
        text(&root, x + (sw - text_width(value, scale)) / 2, top + 34, value, scale, TEXT);
    }

    // Time series panels, 2 x 3.
    let panels = doc["panels"].as_array().unwrap();
    let (cols, rows) = (2, 3);
    let top = 144;
    let pw = (w - gap * (cols + 1)) / cols;
    let ph = (h - top - gap * rows) / rows;
    for (i, p) in panels.iter().enumerate() {
        let (px, py) = (gap + (i as i32 % cols) * (pw + gap), top + (i as i32 / cols) * (ph + gap));
        rect(&root, px, py, pw, ph, PANEL, Some(BORDER));
        let unit = p["unit"].as_str().unwrap_or("");
        let title = p["title"].as_str().unwrap();
        text(&root, px + 10, py + 10, title, 2, TEXT);
        text(&root, px + 10 + text_width(title, 2) + 12, py + 18, unit_name(unit), 1, DIM);
        // Like Grafana's "hide series with only zeros": they add nothing here.
        let all = p["series"].as_array().unwrap();
        let series: Vec<&Value> = all.iter().filter(|s| s["points"].as_array().unwrap().iter().any(|pt| pt[1].as_f64().is_some_and(|v| v != 0.0))).collect();
        let hidden = all.len() - series.len();
        let legend_rows = series.len() as i32 + i32::from(hidden > 0);
        let legend_h = legend_rows * 13 + 8;
        let (left, right, ptop) = (px + 70, px + pw - 14, py + 38);
        let pbottom = py + ph - legend_h - 20;
        let ymax = nice_max(series.iter().flat_map(|s| s["points"].as_array().unwrap().iter().filter_map(|pt| pt[1].as_f64())).fold(0.0, f64::max) * 1.05);
        // Grid and axis labels.
        for k in 0..=4 {
            let y = pbottom - (pbottom - ptop) * k / 4;
            root.draw(&PathElement::new(vec![(left, y), (right, y)], GRID.stroke_width(1))).unwrap();
            let label = si(ymax * k as f64 / 4.0, "");
            text(&root, left - 6 - text_width(&label, 1), y - 4, &label, 1, DIM);
        }
        let span = end - start;
        let tick = if span > 120.0 {
            30.0
        } else if span > 40.0 {
            15.0
        } else {
            5.0
        };
        let mut t = 0.0;
        while t <= span {
            let x = right - ((right - left) as f64 * t / span) as i32;
            root.draw(&PathElement::new(vec![(x, ptop), (x, pbottom)], GRID.stroke_width(1))).unwrap();
            let label = if t == 0.0 { "now".to_string() } else { format!("-{t:.0}s") };
            text(&root, x - text_width(&label, 1) / 2, pbottom + 6, &label, 1, DIM);
            t += tick;
        }
        // Lines: one chart on the plot rectangle, series split at gaps.
        let plot = root.clone().shrink((left, ptop), ((right - left) as u32, (pbottom - ptop) as u32));
        let mut chart = ChartBuilder::on(&plot).build_cartesian_2d(start..end, 0.0..ymax).unwrap();
        for (j, s) in series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            let mut segment: Vec<(f64, f64)> = Vec::new();
            let mut segments = Vec::new();
            for pt in s["points"].as_array().unwrap() {
                match pt[1].as_f64() {
                    Some(v) if v.is_finite() => segment.push((pt[0].as_f64().unwrap(), v)),
                    _ => segments.push(std::mem::take(&mut segment)),
                }
            }
            segments.push(segment);
            for seg in segments.into_iter().filter(|s| !s.is_empty()) {
                chart.draw_series(AreaSeries::new(seg.clone(), 0.0, color.mix(0.12))).unwrap();
                chart.draw_series(LineSeries::new(seg, color.stroke_width(2))).unwrap();
            }
            // Legend: colour, name, last value.
            let ly = py + ph - legend_h + 2 + j as i32 * 13;
            rect(&root, px + 12, ly, 10, 8, color, None);
            let last = s["points"].as_array().unwrap().iter().rev().find_map(|pt| pt[1].as_f64().filter(|v| v.is_finite()));
            let name = s["name"].as_str().unwrap();
            text(&root, px + 30, ly, name, 1, TEXT);
            if let Some(last) = last {
                let l = format!("last {}", si(last, unit));
                text(&root, px + pw - 14 - text_width(&l, 1), ly, &l, 1, DIM);
            }
        }
        if hidden > 0 {
            let note = format!("({hidden} series at 0 all along not shown)");
            text(&root, px + 30, py + ph - legend_h + 2 + series.len() as i32 * 13, &note, 1, DIM);
        }
    }
    root.present().unwrap();
}
