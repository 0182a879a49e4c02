//! `cargo xtask test` and `cargo xtask bench`: thin wrappers that set up the
//! machine, then hand over to cargo and pass its exit code through.
use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;

use crate::cmd;

/// Builds the agent (and with it the XDP program), then runs every test of
/// the workspace (except the eBPF crate, which has no host tests). Tests need root and a BPF-capable kernel. Returns cargo
/// test's exit code.
pub fn test(root: &Path, extra: &[String]) -> Result<i32> {
    crate::build(root)?;
    // filter-ebpf builds only for bpfel-unknown-none (filter-agent's build.rs
    // does that); as a host test binary it cannot link, so it is excluded.
    let mut c = cmd::cargo(["test", "--workspace", "--exclude", "filter-ebpf", "--release"]);
    c.args(extra).current_dir(root).stdout(std::process::Stdio::piped());
    println!("$ {}", cmd::display(&c));
    let mut child = c.spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut totals = Totals::default();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        totals.add(&line);
    }
    let code = exit_code(child.wait()?);
    // One summary line for the whole suite: cargo prints one `test result`
    // per test binary, the last ones often for crates without doc tests.
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    Ok(code)
}

/// Sums of cargo's `test result: ... N passed; M failed; ...` lines.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Bench {
    /// XDP data plane throughput and latency (edgefilter-bench).
    Dataplane,
    /// Rule set load/reload time and peak memory of the real agent with
    /// 1,000,000 IPv4 + 250,000 IPv6 feed prefixes (edgefilter-reload-bench).
    Reload,
    /// Sustained order pushes through the API: orders/s and enforcement
    /// latency p50/p99 (edgefilter-orders-bench).
    Orders,
    /// Domain stage ns/packet (DNS queries, TLS ClientHellos, HTTP Host;
    /// blocked and not) with 1 and 1,000,000 domain rules, next to the IPv4
    /// pass path, and the rules' load time and memory
    /// (edgefilter-domains-bench).
    Domains,
    /// Attack-signature stage ns/packet: an HTTP request with 0, 1, 100
    /// and 1,000 signatures (no match, candidates checked, a Log4Shell
    /// exploit dropped), a TLS ClientHello and the UDP pass path next to
    /// the IPv4 pass path (edgefilter-signatures-bench).
    Signatures,
    /// Flood drop rates at a veth (UDP reflection, SYN flood): edgefilter
    /// with rate-limit rules next to nftables (netdev ingress) and
    /// xdp-filter, and the pass path's ns/packet with rate-limit rules
    /// (edgefilter-ddos-bench).
    Ddos,
}

/// Runs a benchmark; returns its exit code.
pub fn bench(root: &Path, what: Bench, extra: &[String]) -> Result<i32> {
    let mut c = match what {
        Bench::Dataplane => cmd::cargo([
            "run",
            "--release",
            "-p",
            "filter-agent",
            "--bin",
            "edgefilter-bench",
            "--",
            "--out",
            "bench-results/dataplane.json",
            "--markdown",
            "BENCHMARKS.md",
        ]),
        Bench::Reload => cmd::cargo([
            "run",
            "--release",
            "-p",
            "filter-agent",
            "--bin",
            "edgefilter-reload-bench",
            "--",
            "--out",
            "bench-results/reload.json",
            "--markdown",
            "BENCHMARKS.md",
        ]),
        Bench::Orders => {
            // The benchmark starts the agent binary itself.
            crate::build(root)?;
            cmd::cargo([
                "run",
                "--release",
                "-p",
                "filter-agent",
                "--bin",
                "edgefilter-orders-bench",
                "--",
                "--out",
                "bench-results/orders.json",
                "--markdown",
                "BENCHMARKS.md",
            ])
        }
        Bench::Domains => cmd::cargo([
            "run",
            "--release",
            "-p",
            "filter-agent",
            "--bin",
            "edgefilter-domains-bench",
            "--",
            "--out",
            "bench-results/domains.json",
            "--markdown",
            "BENCHMARKS.md",
        ]),
        Bench::Signatures => cmd::cargo([
            "run",
            "--release",
            "-p",
            "filter-agent",
            "--bin",
            "edgefilter-signatures-bench",
            "--",
            "--out",
            "bench-results/signatures.json",
            "--markdown",
            "BENCHMARKS.md",
        ]),
        Bench::Ddos => cmd::cargo([
            "run",
            "--release",
            "-p",
            "filter-agent",
            "--bin",
            "edgefilter-ddos-bench",
            "--",
            "--out",
            "bench-results/ddos.json",
            "--markdown",
            "BENCHMARKS.md",
        ]),
    };
    c.args(extra).current_dir(root);
    println!("$ {}", cmd::display(&c));
    Ok(exit_code(cmd::status(&mut c)?))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
