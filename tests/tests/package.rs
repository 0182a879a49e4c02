//! The Debian package. `cargo xtask package` builds it once for this file
//! (from the workspace root, as an operator would); each test unpacks it
//! with `dpkg -x` / `dpkg -e` into its own scratch root, removed afterwards.
//! Nothing is installed on this machine: the maintainer scripts run in a
//! private mount namespace against logging stubs.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use edgefilter_tests::TempDir;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const CONFIG: &str = "/etc/edgefilter/agent.toml";
const UNIT: &str = "lib/systemd/system/edgefilter.service";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `cargo xtask package`, once for all tests here: the .deb's path.
fn deb() -> &'static Path {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DEB.get_or_init(|| {
        let root = workspace();
        let log_path = std::env::temp_dir().join(format!("edgefilter-package-build-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut c = Command::new("cargo");
        c.args(["xtask", "package"]).current_dir(&root).stdin(Stdio::null());
        c.stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
        // What cargo set for this test process (toolchain, package
        // variables) must not leak into the nested build.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let set_by_cargo = ["CARGO", "CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&k.as_str())
                || k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_");
            if set_by_cargo || ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "RUSTC_WRAPPER", "LD_LIBRARY_PATH"].contains(&k.as_str()) {
                c.env_remove(&k);
            }
        }
        let mut child = c.spawn().map_err(|e| format!("cannot start cargo xtask package: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30 * 60);
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let _ = std::fs::remove_file(&log_path);
        match status {
            Some(s) if s.success() => {}
            Some(s) => return Err(format!("`cargo xtask package` failed ({s}):\n{text}")),
            None => return Err(format!("`cargo xtask package` did not finish within 30 minutes:\n{text}")),
        }
        let arch = String::from_utf8_lossy(&Command::new("dpkg").arg("--print-architecture").output().map_err(|e| e.to_string())?.stdout).trim().to_string();
        let deb = root.join(format!("target/debian/edgefilter_{VERSION}_{arch}.deb"));
        if !deb.is_file() {
            return Err(format!("{} missing after `cargo xtask package`:\n{text}", deb.display()));
        }
        // What xtask checked itself, for the test log.
        for line in text.lines().filter(|l| l.starts_with("package:")) {
            println!("{line}");
        }
        Ok(deb)
    });
    built.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

/// The package unpacked into a scratch root: files under `root`, control
/// files under `root/DEBIAN`.
struct Unpacked {
    dir: TempDir,
}

impl Unpacked {
    fn new(tag: &str) -> Unpacked {
        let deb = deb();
        let dir = TempDir::new(&format!("pkg-{tag}"));
        let u = Unpacked { dir };
        run(Command::new("dpkg").arg("-x").arg(deb).arg(u.root()));
        run(Command::new("dpkg").arg("-e").arg(deb).arg(u.root().join("DEBIAN")));
        u
    }

    fn root(&self) -> PathBuf {
        self.dir.0.join("root")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn agent(&self) -> Command {
        Command::new(self.path("usr/sbin/filter-agent"))
    }

    /// `text` with the installed paths pointing into the scratch root.
    fn redirect(&self, text: &str) -> String {
        text.replace("/etc/edgefilter", &self.path("etc/edgefilter").display().to_string())
            .replace("/usr/share/doc/edgefilter", &self.path("usr/share/doc/edgefilter").display().to_string())
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

/// Non-comment lines of a unit or config file.
fn settings(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

#[test]
fn package_holds_the_agent_unit_config_and_docs_owned_by_root() {
    let listing = stdout(Command::new("dpkg-deb").arg("--contents").arg(deb()));
    for path in [
        "./usr/sbin/filter-agent",
        "./etc/edgefilter/agent.toml",
        "./etc/edgefilter/rules/orders/README",
        "./lib/systemd/system/edgefilter.service",
        "./usr/share/doc/edgefilter/README.md",
        "./usr/share/doc/edgefilter/RUNBOOK.md",
        "./usr/share/doc/edgefilter/ORDERS.md",
        "./usr/share/doc/edgefilter/copyright",
        "./usr/share/doc/edgefilter/examples/orders/attack-memcached-reflection.toml",
        "./usr/share/doc/edgefilter/examples/feeds/example-spamhaus-drop.txt",
    ] {
        assert!(listing.lines().any(|l| l.ends_with(&format!(" {path}"))), "{path} missing:\n{listing}");
    }
    for line in listing.lines() {
        assert!(line.contains(" root/root "), "not owned by root: {line}");
    }
    let u = Unpacked::new("contents");
    assert_eq!(mode(&u.path("usr/sbin/filter-agent")), 0o755);
    assert_eq!(mode(&u.path("etc/edgefilter/agent.toml")), 0o644);
    assert_eq!(mode(&u.path("etc/edgefilter/rules/orders")), 0o750, "order files may be confidential");
    // Nothing to enforce on a fresh install: the order directory holds only its README.
    let orders: Vec<String> = std::fs::read_dir(u.path("etc/edgefilter/rules/orders")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(orders, ["README"]);
    // The binary runs (the XDP object is embedded in it).
    let version = stdout(u.agent().arg("--version"));
    assert_eq!(version.trim(), format!("filter-agent {VERSION}"));
    let help = stdout(u.agent().arg("--help"));
    for sub in ["run", "check", "status", "detach", "audit"] {
        assert!(help.contains(&format!("\n  {sub} ")), "`{sub}` missing from --help:\n{help}");
    }
    // The shipped example orders are valid.
    let out = stdout(u.agent().args(["check", "--rules"]).arg(u.path("usr/share/doc/edgefilter/examples/orders")));
    assert!(out.contains(": OK"), "{out}");
}

#[test]
fn control_files_conffiles_and_maintainer_scripts() {
    let u = Unpacked::new("control");
    let control = u.read("DEBIAN/control");
    let field = |name: &str| control.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap_or_else(|| panic!("no {name}:\n{control}")).to_string();
    assert_eq!(field("Package"), "edgefilter");
    assert_eq!(field("Version"), VERSION);
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field("Architecture"), arch.trim());
    assert!(field("Maintainer").contains('<') && field("Maintainer").ends_with('>'), "{control}");
    let depends = field("Depends");
    assert!(depends.starts_with("libc6") || depends.contains(" libc6"), "{depends}");
    assert!(depends.contains("procps"), "/bin/kill (ExecReload=) comes from procps: {depends}");
    assert!(!field("Description").is_empty());
    assert!(field("Installed-Size").parse::<u64>().unwrap() > 1000);

    let mut conffiles: Vec<String> = u.read("DEBIAN/conffiles").lines().map(String::from).collect();
    conffiles.sort();
    assert_eq!(conffiles, ["/etc/edgefilter/agent.toml", "/etc/edgefilter/rules/orders/README"]);
    for c in &conffiles {
        assert!(u.path(c).is_file(), "{c}");
    }
    // md5sums covers every file outside DEBIAN, and matches.
    let sums = u.read("DEBIAN/md5sums");
    assert!(sums.contains("  usr/sbin/filter-agent\n") && sums.contains("  etc/edgefilter/agent.toml\n"), "{sums}");
    let mut check = Command::new("md5sum");
    check.args(["--check", "--quiet"]).current_dir(u.root()).stdin(std::fs::File::open(u.path("DEBIAN/md5sums")).unwrap());
    let out = check.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    for script in ["postinst", "prerm", "postrm"] {
        let path = u.path(&format!("DEBIAN/{script}"));
        assert_eq!(mode(&path) & 0o111, 0o111, "{script} must be executable");
        assert!(u.read(&format!("DEBIAN/{script}")).starts_with("#!/bin/sh\n"), "{script}");
        run(Command::new("sh").arg("-n").arg(&path));
    }
}

#[test]
fn default_config_is_valid_and_enforces_nothing() {
    let u = Unpacked::new("config");
    let shipped = u.read(CONFIG);
    let lines = settings(&shipped);
    assert!(lines.contains(&"rules = [\"/etc/edgefilter/rules/orders\"]"), "{shipped}");
    assert!(lines.contains(&"state_dir = \"/var/lib/edgefilter\"") && lines.contains(&"bpffs = \"/sys/fs/bpf\""), "the unit's ReadWritePaths= grant these:\n{shipped}");
    assert!(!lines.iter().any(|l| l.starts_with("[[feed]]")), "no feed is loaded by default:\n{shipped}");
    assert!(!lines.iter().any(|l| l.contains("drop")), "nothing dropped by default:\n{shipped}");
    assert!(!lines.iter().any(|l| l.contains("../")), "no path into the source tree:\n{shipped}");

    let dir = TempDir::new("pkg-config-check");
    let config = dir.0.join("agent.toml");
    std::fs::write(&config, u.redirect(&shipped)).unwrap();
    let out = stdout(u.agent().args(["check", "--config"]).arg(&config));
    assert!(out.contains("(+0 feeds): 0 orders (0 in force now), 0 entries: OK"), "{out}");

    // An operator uncommenting the example feeds gets a valid config whose
    // feeds are still only counting (dry-run).
    let mut feeds = String::new();
    let mut in_feed = false;
    for line in shipped.lines() {
        in_feed = (in_feed || line == "# [[feed]]") && !line.starts_with('[');
        let setting = line.strip_prefix("# ").filter(|r| in_feed && (*r == "[[feed]]" || r.split_once(" = ").is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))));
        feeds.push_str(setting.unwrap_or(line));
        feeds.push('\n');
    }
    assert_eq!(feeds.matches("\n[[feed]]\n").count(), 2, "{feeds}");
    std::fs::write(&config, u.redirect(&feeds)).unwrap();
    let out = stdout(u.agent().args(["check", "--config"]).arg(&config));
    assert!(out.contains("(+2 feeds): 2 orders"), "{out}");
    let list = stdout(u.agent().args(["rules", "list", "--config"]).arg(&config));
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{list}");
    for row in rows {
        assert!(row.contains(" dry-run "), "example feeds must start in dry-run: {row}");
    }
}

#[test]
fn unit_runs_the_agent_with_only_the_capabilities_it_needs_and_verifies_clean() {
    let u = Unpacked::new("unit");
    let unit = u.read(UNIT);
    let lines = settings(&unit);
    for want in [
        "Type=simple",
        "ExecStartPre=/usr/sbin/filter-agent check --config /etc/edgefilter/agent.toml",
        "ExecStart=/usr/sbin/filter-agent run --config /etc/edgefilter/agent.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/edgefilter /sys/fs/bpf",
        "StateDirectory=edgefilter",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "SystemCallArchitectures=native",
        "MemoryDenyWriteExecute=yes",
        "WantedBy=multi-user.target",
    ] {
        assert!(lines.contains(&want), "`{want}` missing from the unit:\n{unit}");
    }
    assert!(!lines.iter().any(|l| l.contains("CAP_SYS_ADMIN")), "CAP_SYS_ADMIN must not be granted");
    assert!(!lines.iter().any(|l| l.starts_with("StandardOutput=") && !l.ends_with("journal")), "logs go to the journal");
    // The packaged unit is the one in the tree.
    assert_eq!(unit, std::fs::read_to_string(workspace().join("deploy/systemd/edgefilter.service")).unwrap());

    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed; the unit was not verified");
        return;
    }
    // systemd need not run: --root makes verify look up the unit's
    // executables and dependencies in the scratch root, which holds the
    // packaged binary; /bin/kill (from procps) and sysinit.target (the
    // default dependencies) are stubs. Warnings (unknown keys, bad values)
    // do not change the exit code, so clean means no output at all.
    let root = u.root();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/kill"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("bin/kill"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("lib/systemd/system/sysinit.target"), "[Unit]\nDescription=stub\n").unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(format!("--root={}", root.display())).arg(u.path(UNIT)).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify is not clean ({}):\n{text}", out.status);
    // The check catches what it should: a missing binary.
    std::fs::remove_file(u.path("usr/sbin/filter-agent")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(format!("--root={}", root.display())).arg(u.path(UNIT)).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("/usr/sbin/filter-agent"), "{out:?}");
}

/// Runs a maintainer script as dpkg would, in a private mount namespace
/// where /usr/sbin (filter-agent), /var/lib and /run are scratch tmpfs and
/// deb-systemd-helper, deb-systemd-invoke, systemctl and filter-agent are
/// stubs that log their arguments. `systemd`: whether /run/systemd/system
/// exists (systemd running). Returns the log lines.
fn maintainer_script(u: &Unpacked, script: &str, args: &[&str], systemd: bool, env: &[(&str, &str)]) -> Vec<String> {
    let stubs = u.dir.0.join("stubs");
    let log = u.dir.0.join("calls.log");
    let _ = std::fs::remove_file(&log);
    std::fs::create_dir_all(&stubs).unwrap();
    for (name, body) in [
        ("deb-systemd-helper", "case \"$1\" in debian-installed) exit \"${DSH_INSTALLED:-1}\";; esac"),
        ("deb-systemd-invoke", ""),
        ("systemctl", ""),
        ("filter-agent", "exit \"${FA_EXIT:-0}\""),
    ] {
        let path = stubs.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho \"{name} $*\" >> \"$CALLS\"\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let inner = format!(
        "set -e; mount -t tmpfs tmpfs /usr/sbin; cp \"$STUBS/filter-agent\" /usr/sbin/; mount -t tmpfs tmpfs /var/lib; mount -t tmpfs tmpfs /run; {} \
         \"$SCRIPT\" \"$@\"; if [ -d /var/lib/edgefilter ]; then echo \"state dir $(stat -c %a /var/lib/edgefilter)\" >> \"$CALLS\"; fi",
        if systemd { "mkdir -p /run/systemd/system;" } else { "" }
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &inner, "sh"]).args(args);
    c.env("STUBS", &stubs).env("CALLS", &log).env("SCRIPT", u.path(&format!("DEBIAN/{script}")));
    c.env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", stubs.display())).env_remove("DPKG_ROOT");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{script} {args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(&log).unwrap_or_default().lines().map(String::from).collect()
}

#[test]
fn maintainer_scripts_detach_on_remove_but_never_on_upgrade() {
    let probe = Command::new("unshare").args(["--mount", "true"]).stderr(Stdio::null()).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot create a mount namespace (unshare --mount; needs root)");
        return;
    }
    let u = Unpacked::new("scripts");
    let unit = "edgefilter.service";
    let detach = format!("filter-agent detach --config {CONFIG}");

    // Fresh install: state directory 0700; not enabled, not started.
    let calls = maintainer_script(&u, "postinst", &["configure"], true, &[]);
    assert!(calls.contains(&"state dir 700".to_string()), "{calls:?}");
    assert!(calls.contains(&format!("deb-systemd-helper update-state {unit}")), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("deb-systemd-invoke") || c.contains(" enable ")), "fresh install must not start or enable: {calls:?}");

    // Upgrade: the old agent was never stopped (prerm upgrade does nothing)
    // and the new one replaces it only if it was running: no detach, no stop.
    let calls = maintainer_script(&u, "prerm", &["upgrade", "9.9.9"], true, &[]);
    assert!(calls.is_empty(), "prerm upgrade must leave the filter and the agent alone: {calls:?}");
    let calls = maintainer_script(&u, "postinst", &["configure", "0.0.1"], true, &[("DSH_INSTALLED", "0")]);
    assert!(calls.contains(&format!("deb-systemd-invoke try-restart {unit}")), "{calls:?}");
    assert!(calls.contains(&format!("deb-systemd-helper enable {unit}")), "an enabled unit stays enabled: {calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("filter-agent") || c.contains(" stop ")), "{calls:?}");

    // Remove: stop first, then detach with the packaged config.
    let calls = maintainer_script(&u, "prerm", &["remove"], true, &[]);
    assert_eq!(calls, [format!("deb-systemd-invoke stop {unit}"), detach.clone()]);
    // Also when systemd is not running (container, chroot).
    let calls = maintainer_script(&u, "prerm", &["remove"], false, &[]);
    assert_eq!(calls, std::slice::from_ref(&detach));
    // A config that no longer loads: the default pin directory is tried.
    let calls = maintainer_script(&u, "prerm", &["remove"], false, &[("FA_EXIT", "1")]);
    assert_eq!(calls, [detach.clone(), "filter-agent detach --bpffs /sys/fs/bpf --instance edgefilter --state-dir /var/lib/edgefilter".to_string()]);

    // postrm: systemd bookkeeping only (guarded when systemd is not running).
    if Path::new("/usr/bin/deb-systemd-helper").exists() {
        let calls = maintainer_script(&u, "postrm", &["remove"], true, &[]);
        assert_eq!(calls, ["systemctl --system daemon-reload".to_string(), format!("deb-systemd-helper mask {unit}")]);
        let calls = maintainer_script(&u, "postrm", &["purge"], false, &[]);
        assert_eq!(calls, [format!("deb-systemd-helper purge {unit}"), format!("deb-systemd-helper unmask {unit}")]);
    }
    let calls = maintainer_script(&u, "postinst", &["configure"], false, &[]);
    assert!(!calls.iter().any(|c| c.starts_with("systemctl") || c.starts_with("deb-systemd-invoke")), "{calls:?}");
}

#[test]
fn runbook_has_a_section_for_every_alert() {
    let u = Unpacked::new("docs");
    let runbook = u.read("usr/share/doc/edgefilter/RUNBOOK.md");
    let copyright = u.read("usr/share/doc/edgefilter/copyright");
    assert!(copyright.contains("License: MIT or Apache-2.0"), "{copyright}");
    for section in ["## Install", "## Emergency detach", "## Upgrade"] {
        assert!(runbook.lines().any(|l| l.starts_with(section)), "`{section}` missing from RUNBOOK.md");
    }
    let alerts_path = u.path("usr/share/doc/edgefilter/examples/prometheus/alerts.yml");
    let Ok(alerts) = std::fs::read_to_string(&alerts_path) else {
        eprintln!("SKIPPED: no alerts.yml in the package (deploy/prometheus/alerts.yml absent)");
        return;
    };
    let mut names = 0;
    for line in alerts.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            names += 1;
            assert!(runbook.lines().any(|l| l == format!("## {name}")), "RUNBOOK.md has no `## {name}` section");
        }
        if let Some(url) = line.strip_prefix("runbook_url: ") {
            let anchor = url.trim_matches('"').rsplit_once('#').map(|(_, a)| a).unwrap_or_else(|| panic!("{url}: no anchor"));
            let by_heading = runbook.lines().any(|l| l.strip_prefix("## ").is_some_and(|h| h.to_lowercase().replace(' ', "-") == anchor));
            assert!(by_heading || runbook.contains(&format!("<a id=\"{anchor}\"></a>")), "RUNBOOK.md has no anchor `{anchor}` ({url})");
        }
    }
    assert!(names > 0, "no alerts found in alerts.yml");
}
