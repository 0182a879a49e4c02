//! `cargo xtask package`: the Debian package
//! `target/debian/edgefilter_<version>_<arch>.deb`, staged by hand and
//! built with `dpkg-deb --build --root-owner-group` (no cargo-deb, no
//! debhelper).
//!
//! ```text
//! /usr/sbin/filter-agent                      the agent (XDP program embedded)
//! /etc/edgefilter/agent.toml                  conffile, derived from deploy/agent.toml:
//!                                             enforces nothing (no orders, feeds commented out)
//! /etc/edgefilter/rules/orders/README         conffile; the order directory starts empty
//! /lib/systemd/system/edgefilter.service      deploy/systemd/edgefilter.service
//! /usr/share/doc/edgefilter/                  README.md, RUNBOOK.md, ORDERS.md, copyright,
//!                                             examples/{orders,feeds,prometheus,grafana}/
//! DEBIAN/{control,conffiles,md5sums}          generated
//! DEBIAN/{postinst,prerm,postrm}              deploy/debian/
//! ```
//!
//! The unit is neither enabled nor started on a fresh install (the config
//! names a placeholder interface); upgrades restart a running agent, which
//! takes over the pinned program without a gap; removal detaches. Before
//! building, the packaged config is checked with the packaged binary and the
//! unit with `systemd-analyze verify` in a scratch root.
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;

const PACKAGE: &str = "edgefilter";
const ETC: &str = "/etc/edgefilter";
const ORDERS_DIR: &str = "/etc/edgefilter/rules/orders";
const DOC: &str = "/usr/share/doc/edgefilter";
const UNIT: &str = "lib/systemd/system/edgefilter.service";
/// Paths the unit's ReadWritePaths= grants; the packaged config must use them.
const STATE_DIR: &str = "/var/lib/edgefilter";
const BPFFS: &str = "/sys/fs/bpf";
/// Used unless DEBFULLNAME / DEBEMAIL say otherwise.
const MAINTAINER: &str = "edgefilter maintainers <edgefilter@example.net>";

const DESCRIPTION: &str = "\
ISP edge filter: XDP/eBPF packet filter and its agent
 edgefilter drops attack traffic and lawfully ordered blocks at line rate
 with an XDP program on a router's internet-facing interfaces, before the
 kernel's network stack sees the packets. Every rule comes from an order
 (attack mitigation, legal blocking order, operator change) with an
 effective and an expiry date, and every drop is counted against its order.
 .
 This package contains filter-agent (the daemon and operator CLI, with the
 XDP program embedded), a hardened systemd unit and a default configuration
 that enforces nothing until orders are added. Filtering survives agent
 restarts and upgrades (pinned program and maps); removing the package
 detaches it.";

/// Builds the agent and the .deb; returns the .deb's path.
pub fn run(root: &Path) -> Result<PathBuf> {
    crate::build(root)?;
    let version = env!("CARGO_PKG_VERSION");
    let binary = root.join("target/release/filter-agent");
    let said = cmd::capture(Command::new(&binary).arg("--version"))?;
    if said.trim() != format!("filter-agent {version}") {
        bail!("{} reports `{}`, but the workspace version is {version}", binary.display(), said.trim());
    }
    let arch = cmd::capture(&mut cmd::new("dpkg", ["--print-architecture"]))?.trim().to_string();
    let name = format!("{PACKAGE}_{version}_{arch}");
    let out_dir = root.join("target/debian");
    // <work>/debian/control and <work>/debian/edgefilter/ (the staged tree)
    // is the layout dpkg-shlibdeps expects; the scratch checks go beside it.
    let work = out_dir.join(&name);
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let stage = work.join("debian").join(PACKAGE);
    println!("package: staging {}", stage.display());

    // Files.
    install(&binary, &stage.join("usr/sbin/filter-agent"), 0o755)?;
    let example = read(&root.join("deploy/agent.toml"))?;
    write(&stage.join("etc/edgefilter/agent.toml"), &packaged_config(&example)?, 0o644)?;
    install(&root.join("deploy/debian/orders-README"), &stage.join("etc/edgefilter/rules/orders/README"), 0o644)?;
    install(&root.join("deploy/systemd/edgefilter.service"), &stage.join(UNIT), 0o644)?;
    let doc = stage.join(DOC.trim_start_matches('/'));
    install(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    install(&root.join("deploy/RUNBOOK.md"), &doc.join("RUNBOOK.md"), 0o644)?;
    install(&root.join("rules/README.md"), &doc.join("ORDERS.md"), 0o644)?;
    install(&root.join("deploy/debian/copyright"), &doc.join("copyright"), 0o644)?;
    for (from, to) in [("rules/orders", "examples/orders"), ("rules/feeds", "examples/feeds"), ("rules/signatures", "examples/signatures")] {
        for file in files_in(&root.join(from))? {
            install(&file, &doc.join(to).join(file.file_name().expect("file name")), 0o644)?;
        }
    }
    // Monitoring material, when present in the tree.
    for (from, to) in [("deploy/prometheus/alerts.yml", "examples/prometheus/alerts.yml"), ("deploy/grafana/edgefilter.json", "examples/grafana/edgefilter.json")] {
        if root.join(from).is_file() {
            install(&root.join(from), &doc.join(to), 0o644)?;
        }
    }
    // Directories: 0755, whatever the umask; order files may be confidential.
    for dir in walk(&stage)?.into_iter().filter(|p| p.is_dir()) {
        set_mode(&dir, 0o755)?;
    }
    set_mode(&stage, 0o755)?;
    for d in ["etc/edgefilter/rules", "etc/edgefilter/rules/orders"] {
        set_mode(&stage.join(d), 0o750)?;
    }

    // Checks before anything is built from it.
    check_config(&work, &stage)?;
    verify_unit(&work, &stage)?;

    // Control files.
    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        install(&root.join("deploy/debian").join(script), &debian.join(script), 0o755)?;
    }
    let conffiles: Vec<String> = walk(&stage.join("etc"))?
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| format!("/{}", p.strip_prefix(&stage).expect("below stage").display()))
        .collect();
    write(&debian.join("conffiles"), &lines(&conffiles), 0o644)?;
    let mut depends = shlibdeps(&work, &stage)?;
    // ExecReload= uses /bin/kill.
    depends.push_str(", procps");
    let control = format!(
        "Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {}\nInstalled-Size: {}\nDepends: {depends}\nSuggests: bpftool\nSection: net\nPriority: optional\nDescription: {DESCRIPTION}\n",
        maintainer(),
        installed_size(&stage)?
    );
    write(&debian.join("control"), &control, 0o644)?;
    write(&debian.join("md5sums"), &md5sums(&stage)?, 0o644)?;

    let deb = out_dir.join(format!("{name}.deb"));
    if deb.exists() {
        fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    }
    let mut build = cmd::new("dpkg-deb", ["--build", "--root-owner-group"]);
    build.arg(&stage).arg(&deb);
    // Reproducible: every timestamp is SOURCE_DATE_EPOCH, by default the
    // last commit's, so the same tree and binary give the same .deb.
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(e) => Some(e),
        Err(_) => cmd::capture(cmd::new("git", ["log", "-1", "--format=%ct"]).current_dir(root)).ok().map(|e| e.trim().to_string()),
    };
    if let Some(epoch) = epoch.filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())) {
        cmd::run(cmd::new("find", [".", "-exec", "touch", "--no-dereference", &format!("--date=@{epoch}"), "{}", "+"]).current_dir(&stage))?;
        build.env("SOURCE_DATE_EPOCH", epoch);
    }
    println!("$ {}", cmd::display(&build));
    cmd::run(&mut build)?;
    println!("package: {} ({} conffiles, Depends: {depends})", deb.display(), conffiles.len());
    println!("package: inspect with `dpkg-deb --info {0}` and `dpkg-deb --contents {0}`", deb.display());
    Ok(deb)
}

/// `deploy/agent.toml` made fit for the installed layout and safe on a
/// fresh install: orders from /etc/edgefilter/rules/orders (shipped empty),
/// the example feeds commented out and in dry-run, every
/// fragment passed. Fails if the example no longer has the lines it adapts,
/// so a change there cannot silently produce a bad packaged config.
pub fn packaged_config(example: &str) -> Result<String> {
    let mut out = String::from(HEADER);
    let mut seen_rules = false;
    let mut seen_fragments = false;
    let mut in_feed = false;
    let mut feed_action = false;
    let mut feeds = 0;
    let prefix = "# ";
    for line in example.lines() {
        let trimmed = line.trim();
        let key = trimmed.split('=').next().unwrap_or("").trim();
        if trimmed.starts_with('[') {
            if in_feed && !feed_action {
                out.push_str(&format!("{prefix}action = \"dry-run\"\n"));
            }
            in_feed = trimmed == "[[feed]]";
            feed_action = false;
            if in_feed {
                if feeds == 0 {
                    out.push_str(FEEDS_NOTE);
                }
                feeds += 1;
            }
        }
        if in_feed {
            if trimmed.is_empty() || trimmed.starts_with('#') {
                out.push_str(line);
            } else if key == "path" {
                let value = toml_string(trimmed).with_context(|| format!("deploy/agent.toml: feed path in `{trimmed}`"))?;
                let Some(rest) = value.strip_prefix("../rules/") else {
                    bail!("deploy/agent.toml: feed path `{value}` is not under ../rules/ (its documentation copy is shipped from there)");
                };
                out.push_str(&format!("{prefix}path = \"{DOC}/examples/{rest}\""));
            } else if key == "action" {
                feed_action = true;
                out.push_str(&format!("{prefix}action = \"dry-run\""));
            } else {
                out.push_str(prefix);
                out.push_str(line);
            }
        } else if key == "rules" && !trimmed.starts_with('#') {
            seen_rules = true;
            out.push_str(&format!("rules = [\"{ORDERS_DIR}\"]"));
        } else if key == "bpffs" && !trimmed.starts_with('#') {
            out.push_str("# Under systemd the agent cannot mount it (the unit does not grant\n");
            out.push_str("# CAP_SYS_ADMIN); systemd mounts /sys/fs/bpf at boot.\n");
            out.push_str(line);
        } else if key == "fragment_policy" && !trimmed.starts_with('#') {
            seen_fragments = true;
            out.push_str("# The example drops non-first ICMP fragments; nothing is dropped\n");
            out.push_str("# until you decide (e.g. \"udp=pass,tcp=pass,icmp=drop-non-first,other=pass\").\n");
            out.push_str("fragment_policy = \"udp=pass,tcp=pass,icmp=pass,other=pass\"");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if in_feed && !feed_action {
        out.push_str(&format!("{prefix}action = \"dry-run\"\n"));
    }
    if !seen_rules || !seen_fragments {
        bail!("deploy/agent.toml: expected top-level `rules = ...` and `fragment_policy = ...` lines to adapt");
    }
    for (key, value) in [("state_dir", STATE_DIR), ("bpffs", BPFFS)] {
        if !out.lines().any(|l| l.trim() == format!("{key} = \"{value}\"")) {
            bail!("deploy/agent.toml: expected `{key} = \"{value}\"` (the systemd unit's ReadWritePaths= grants that path)");
        }
    }
    if let Some(l) = out.lines().find(|l| !l.trim_start().starts_with('#') && l.contains("../")) {
        bail!("packaged agent.toml would keep a path relative to the source tree: `{l}`");
    }
    Ok(out)
}

const HEADER: &str = "\
# /etc/edgefilter/agent.toml, installed by the edgefilter package (a conffile:
# your changes are kept on upgrade). Derived from the documented example
# deploy/agent.toml; the comments below are the example's.
#
# AS INSTALLED, THIS CONFIGURATION ENFORCES NOTHING: the order directory
# /etc/edgefilter/rules/orders/ is empty, the example feeds are commented out
# and in dry-run, and every fragment is passed. The service is not enabled.
# Before `systemctl enable --now edgefilter`:
#   1. set `interfaces` (eth0 is a placeholder) and `allow` (management
#      networks, BGP peers: always passed) below;
#   2. filter-agent check --config /etc/edgefilter/agent.toml
#   3. add orders in dry-run first (action = \"dry-run\"; examples in
#      /usr/share/doc/edgefilter/examples/orders/).
# See /usr/share/doc/edgefilter/RUNBOOK.md. The systemd unit may write only
# to state_dir and bpffs as set here; if you change them, add the new paths
# to ReadWritePaths= with `systemctl edit edgefilter`.
#
";

const FEEDS_NOTE: &str = "\
# The package loads no feed. These examples read documentation copies of
# the feeds; for a real one, uncomment a block, point `path` at a file you
# keep current and start it in dry-run.
";

/// The string value of a `key = \"value\"` line (no escapes needed here).
fn toml_string(line: &str) -> Option<String> {
    let value = line.split_once('=')?.1.trim();
    let value = value.split(" #").next()?.trim();
    Some(value.strip_prefix('"')?.strip_suffix('"')?.to_string())
}

/// The packaged binary accepts the packaged config (paths redirected into
/// the staged tree), and also with the example feeds uncommented.
fn check_config(work: &Path, stage: &Path) -> Result<()> {
    let agent = stage.join("usr/sbin/filter-agent");
    let shipped = read(&stage.join("etc/edgefilter/agent.toml"))?;
    let redirect = |text: &str| {
        text.replace(ETC, &stage.join(ETC.trim_start_matches('/')).display().to_string())
            .replace(DOC, &stage.join(DOC.trim_start_matches('/')).display().to_string())
    };
    let dir = work.join("check");
    fs::create_dir_all(&dir)?;
    let with_feeds = uncomment_feeds(&shipped);
    for (name, text) in [("agent.toml", redirect(&shipped)), ("agent-with-feeds.toml", redirect(&with_feeds))] {
        let path = dir.join(name);
        fs::write(&path, text)?;
        let out = cmd::capture(Command::new(&agent).args(["check", "--config"]).arg(&path))
            .with_context(|| format!("the packaged agent.toml ({name}) does not pass `filter-agent check`"))?;
        println!("package: check {name}: {}", out.trim());
    }
    Ok(())
}

/// The packaged config with its commented-out `[[feed]]` blocks enabled
/// (what an operator does to use one).
pub fn uncomment_feeds(config: &str) -> String {
    let setting = |s: &str| s == "[[feed]]" || s.split_once(" = ").is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    let mut out = String::new();
    let mut in_feed = false;
    for line in config.lines() {
        if line == "# [[feed]]" {
            in_feed = true;
        } else if line.starts_with('[') {
            in_feed = false;
        }
        match line.strip_prefix("# ") {
            Some(rest) if in_feed && setting(rest) => out.push_str(rest),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `systemd-analyze verify` of the unit, in a scratch root holding what it
/// checks for: the unit, the binary it runs, /bin/kill (ExecReload=; a stub,
/// the package depends on procps) and sysinit.target (default
/// dependencies; a stub). systemd need not be running. Clean means exit 0
/// and no output: unknown keys and bad values are only warnings.
fn verify_unit(work: &Path, stage: &Path) -> Result<()> {
    if !cmd::succeeds(&mut cmd::new("systemd-analyze", ["--version"])) {
        println!("package: systemd-analyze not found; the unit was not verified");
        return Ok(());
    }
    let vroot = work.join("verify-root");
    install(&stage.join("usr/sbin/filter-agent"), &vroot.join("usr/sbin/filter-agent"), 0o755)?;
    install(&stage.join(UNIT), &vroot.join(UNIT), 0o644)?;
    write(&vroot.join("bin/kill"), "#!/bin/sh\n", 0o755)?;
    write(&vroot.join("lib/systemd/system/sysinit.target"), "[Unit]\nDescription=stub\n", 0o644)?;
    let unit = vroot.join(UNIT);
    let mut c = cmd::new("systemd-analyze", ["verify"]);
    c.arg(format!("--root={}", vroot.display())).arg(&unit);
    let out = cmd::output(&mut c)?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !text.trim().is_empty() {
        bail!("`{}` is not clean ({}):\n{}", cmd::display(&c), out.status, text.trim());
    }
    println!("package: `systemd-analyze verify` of {UNIT}: clean");
    let mut sec = cmd::new("systemd-analyze", ["security", "--offline=true"]);
    sec.arg(format!("--root={}", vroot.display())).arg(&unit);
    if let Ok(out) = cmd::output(&mut sec) {
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = text.lines().find(|l| l.contains("Overall exposure level")) {
            println!("package: systemd-analyze security: {}", line.trim_start_matches(['→', ' ']).trim());
        }
    }
    fs::remove_dir_all(&vroot)?;
    Ok(())
}

/// Shared-library dependencies of the binary: dpkg-shlibdeps (dpkg-dev) when
/// available, else from its NEEDED entries and glibc symbol versions.
fn shlibdeps(work: &Path, stage: &Path) -> Result<String> {
    let binary = stage.join("usr/sbin/filter-agent");
    let rel = binary.strip_prefix(work).expect("below work");
    if cmd::succeeds(&mut cmd::new("dpkg-shlibdeps", ["--version"])) {
        write(&work.join("debian/control"), &format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"), 0o644)?;
        let mut c = cmd::new("dpkg-shlibdeps", ["-O", "-e"]);
        c.arg(rel).current_dir(work);
        let out = cmd::capture(&mut c)?;
        let deps = out.lines().find_map(|l| l.strip_prefix("shlibs:Depends=")).map(str::trim);
        fs::remove_file(work.join("debian/control"))?;
        match deps {
            Some(d) if !d.is_empty() => return Ok(d.to_string()),
            _ => bail!("dpkg-shlibdeps printed no shlibs:Depends: {out}"),
        }
    }
    println!("package: dpkg-shlibdeps (dpkg-dev) not found; deriving Depends from the binary's NEEDED entries");
    let dump = cmd::capture(cmd::new("objdump", ["-p"]).arg(&binary))?;
    let mut deps: Vec<String> = Vec::new();
    let glibc = dump
        .split(|c: char| c.is_whitespace())
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next().flatten().unwrap_or(0)))
        })
        .max();
    for lib in dump.lines().filter_map(|l| l.trim().strip_prefix("NEEDED")).map(str::trim) {
        let dep = if lib.starts_with("libc.so") || lib.starts_with("libm.so") || lib.starts_with("ld-linux") || ["libpthread", "libdl", "librt"].iter().any(|p| lib.starts_with(p)) {
            match glibc {
                Some((a, b)) => format!("libc6 (>= {a}.{b})"),
                None => "libc6".to_string(),
            }
        } else if lib.starts_with("libgcc_s.so") {
            "libgcc-s1".to_string()
        } else {
            bail!("filter-agent needs {lib}: install dpkg-dev so dpkg-shlibdeps can name its package");
        };
        if !deps.contains(&dep) {
            deps.push(dep);
        }
    }
    Ok(deps.join(", "))
}

/// `Name <email>` from DEBFULLNAME and DEBEMAIL (as dch uses them), or the default.
fn maintainer() -> String {
    match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
        (Ok(n), Ok(e)) if !n.trim().is_empty() && !e.trim().is_empty() => format!("{} <{}>", n.trim(), e.trim()),
        _ => MAINTAINER.to_string(),
    }
}

/// KiB, as dpkg-gencontrol counts: each file rounded up, 1 per directory.
fn installed_size(stage: &Path) -> Result<u64> {
    let mut kib = 0;
    for p in walk(stage)? {
        if p.starts_with(stage.join("DEBIAN")) {
            continue;
        }
        let meta = fs::symlink_metadata(&p)?;
        kib += if meta.is_file() { meta.len().div_ceil(1024) } else { 1 };
    }
    Ok(kib)
}

fn md5sums(stage: &Path) -> Result<String> {
    let files: Vec<PathBuf> = walk(stage)?
        .into_iter()
        .filter(|p| p.is_file() && !p.starts_with(stage.join("DEBIAN")))
        .map(|p| p.strip_prefix(stage).expect("below stage").to_path_buf())
        .collect();
    cmd::capture(cmd::new("md5sum", ["--"]).args(&files).current_dir(stage))
}

/// Every path below `dir` (not `dir` itself), sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The regular files directly in `dir`, sorted.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = walk(dir)?.into_iter().filter(|p| p.is_file() && p.parent() == Some(dir)).collect();
    files.sort();
    Ok(files)
}

fn lines(items: &[String]) -> String {
    items.iter().map(|i| format!("{i}\n")).collect()
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    set_mode(to, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {mode:o} {}", path.display()))
}
