//! `cargo xtask setup`: installs, idempotently, what building and testing
//! need (see shared/TOOLCHAIN.md): Debian packages, rust-src for the
//! preinstalled nightly, and bpf-linker built against nightly's libLLVM.
//! Every other command runs it first, silently when nothing is missing.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd;

/// Debian packages the build, the tests and the demo use.
pub const PACKAGES: &[&str] = &[
    "iproute2",       // ip netns / ip link (demo, tests)
    "bpftool",        // inspecting loaded programs and maps
    "iputils-ping",   // ping in the demo
    "tcpdump",        // looking at demo/test traffic
    "xdp-tools",      // xdp-loader status, xdp-filter
    "netcat-openbsd", // nc -u -p <port> in the demo
    "prometheus",     // prometheus + promtool: dashboard and alert tests
    "xz-utils",       // unpacking the rust-src tarball
    "gcc",            // the linker cargo calls
    "libc6-dev",
    "dnsmasq-base",   // DNS server in the domain blocking test (domains_e2e)
    "bind9-dnsutils", // dig in the domain blocking test
    "openssl",        // s_server / s_client in the domain blocking test
    "curl",           // HTTP client in the domain blocking test
    "python3",        // python3 -m http.server in the domain blocking test
    "nftables",       // nft: the netdev-ingress drop the DDoS benchmark compares with
];

/// The only nightly this project can use (TOOLCHAIN.md).
const NIGHTLY_COMMIT: &str = "e50aa6fba";
const RUST_SRC_TARBALL: &str = "rust-src-1.97.0-nightly-e50aa6fba.tar.xz";
const BPF_LINKER: &str = "bpf-linker@0.13.0";

pub struct Setup {
    /// Print a line for what is already present, too.
    verbose: bool,
    root: PathBuf,
}

pub fn run(root: &Path, verbose: bool) -> Result<()> {
    let s = Setup {
        verbose,
        root: root.to_path_buf(),
    };
    s.packages().context("setup: Debian packages")?;
    s.rust_src().context("setup: rust-src for the nightly toolchain")?;
    s.bpf_linker().context("setup: bpf-linker")?;
    if verbose {
        println!("setup: everything the build, tests and demo need is installed");
    }
    Ok(())
}

impl Setup {
    fn skip(&self, what: &str) {
        if self.verbose {
            println!("setup: {what} (skipped)");
        }
    }

    fn packages(&self) -> Result<()> {
        let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
        if missing.is_empty() {
            self.skip(&format!("Debian packages present: {}", PACKAGES.join(" ")));
            return Ok(());
        }
        println!("setup: installing Debian packages: {}", missing.join(" "));
        if !cmd::succeeds(Command::new("apt-get").arg("--version")) {
            bail!("apt-get is not available; install these packages by hand: {}", missing.join(" "));
        }
        cmd::run(&mut cmd::new("apt-get", ["update"])).context("apt-get update (are you root?)")?;
        cmd::run(
            cmd::new("apt-get", ["install", "-y", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| format!("apt-get install {}", missing.join(" ")))?;
        let still: Vec<&str> = missing.iter().copied().filter(|p| !installed(p)).collect();
        if !still.is_empty() {
            bail!("packages still missing after apt-get install: {}", still.join(" "));
        }
        Ok(())
    }

    fn rust_src(&self) -> Result<()> {
        let sysroot = nightly_sysroot()?;
        let src_dir = sysroot.join("lib/rustlib/src");
        let core = src_dir.join("rust/library/core");
        if core.is_dir() {
            self.skip(&format!("rust-src present: {}", core.display()));
            return Ok(());
        }
        println!("setup: rust-src missing for nightly; trying `rustup component add rust-src --toolchain nightly`");
        let mut add = cmd::new("rustup", ["component", "add", "rust-src", "--toolchain", "nightly"]);
        cmd::scrub(&mut add);
        match cmd::status_with_timeout(&mut add, Duration::from_secs(180)) {
            Ok(Some(s)) if s.success() && core.is_dir() => {
                println!("setup: rust-src installed by rustup");
                return Ok(());
            }
            Ok(Some(s)) if s.success() => println!("setup: rustup answered but {} is still missing; using the shared tarball", core.display()),
            Ok(Some(s)) => println!("setup: rustup could not install rust-src ({s}); using the shared tarball"),
            Ok(None) => println!("setup: rustup timed out; using the shared tarball"),
            Err(e) => println!("setup: rustup not usable ({e:#}); using the shared tarball"),
        }

        let vv = cmd::capture(&mut nightly("rustc", ["-vV"]))?;
        let commit = vv.lines().find_map(|l| l.strip_prefix("commit-hash: ")).unwrap_or("").trim();
        if !commit.starts_with(NIGHTLY_COMMIT) {
            bail!("the nightly toolchain is commit `{commit}`, but the shared rust-src tarball is for {NIGHTLY_COMMIT}; install rust-src for this nightly by hand");
        }
        let dir = self.root.join("../shared/toolchain");
        let dir = dir.canonicalize().unwrap_or(dir);
        let tarball = dir.join(RUST_SRC_TARBALL);
        if !tarball.is_file() {
            bail!("{} not found (the repository is expected next to shared/)", tarball.display());
        }
        verify_sha256(&tarball, &dir.join("SHA256SUMS"))?;
        fs::create_dir_all(&src_dir).with_context(|| format!("create {}", src_dir.display()))?;
        // The tarball holds rust/library/..., rust/src/...: no strip needed.
        println!("setup: unpacking {} into {}", tarball.display(), src_dir.display());
        cmd::run(cmd::new("tar", ["-xJf"]).arg(&tarball).arg("-C").arg(&src_dir))?;
        if !core.is_dir() {
            bail!("unpacked {} but {} does not exist", tarball.display(), core.display());
        }
        println!("setup: rust-src installed from the shared tarball");
        Ok(())
    }

    fn bpf_linker(&self) -> Result<()> {
        if let Ok(v) = cmd::capture(&mut cmd::new("bpf-linker", ["--version"])) {
            self.skip(&format!("bpf-linker present: {}", v.trim()));
            return Ok(());
        }
        println!("setup: building {BPF_LINKER} against nightly's libLLVM (takes a minute or two)");
        let sysroot = nightly_sysroot()?;
        let lib = sysroot.join("lib");
        let mut candidates: Vec<String> = fs::read_dir(&lib)
            .with_context(|| format!("read {}", lib.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("libLLVM.so.") && n.ends_with("-nightly"))
            .collect();
        candidates.sort();
        let Some(llvm) = candidates.first() else {
            bail!("no libLLVM.so.*-nightly in {} (is the nightly toolchain complete?)", lib.display());
        };
        let link = lib.join("libLLVM.so");
        if fs::read_link(&link).ok().as_deref() != Some(Path::new(llvm)) {
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(llvm, &link).with_context(|| format!("symlink {} -> {llvm}", link.display()))?;
            println!("setup: linked {} -> {llvm}", link.display());
        }
        let mut install = cmd::cargo(["+nightly", "install", BPF_LINKER, "--locked", "--no-default-features", "--features", "llvm-22"]);
        install.env("LLVM_PREFIX", &sysroot);
        println!("setup: {}", cmd::display(&install));
        cmd::run(&mut install)?;
        match cmd::capture(&mut cmd::new("bpf-linker", ["--version"])) {
            Ok(v) => println!("setup: installed {}", v.trim()),
            Err(_) => bail!("bpf-linker was installed but `bpf-linker --version` does not answer: is ~/.cargo/bin on PATH?"),
        }
        Ok(())
    }
}

fn installed(package: &str) -> bool {
    cmd::output(&mut cmd::new("dpkg-query", ["-W", "-f=${Status}", package]))
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "install ok installed")
}

/// `<tool> +nightly <args>` through the rustup proxy.
fn nightly<const N: usize>(tool: &str, args: [&str; N]) -> Command {
    let mut c = cmd::new(tool, ["+nightly"]);
    c.args(args);
    cmd::scrub(&mut c);
    c
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = cmd::capture(&mut nightly("rustc", ["--print", "sysroot"]))
        .context("the nightly toolchain is needed (preinstalled on these machines, see shared/TOOLCHAIN.md)")?;
    Ok(PathBuf::from(out.trim()))
}

fn verify_sha256(file: &Path, sums: &Path) -> Result<()> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let text = fs::read_to_string(sums).with_context(|| format!("read {}", sums.display()))?;
    let Some(expected) = text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (sum, f) = (it.next()?, it.next()?);
        (f.trim_start_matches('*') == name).then(|| sum.to_ascii_lowercase())
    }) else {
        bail!("{} has no line for {name}", sums.display());
    };
    let out = cmd::capture(cmd::new("sha256sum", ["--"]).arg(file))?;
    let actual = out.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
    if actual != expected {
        bail!("checksum mismatch for {}: expected {expected}, got {actual}", file.display());
    }
    println!("setup: {name}: sha256 OK");
    Ok(())
}
