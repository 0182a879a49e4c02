//! `cargo xtask`: set up the machine, build, run the demo, the tests and
//! the benchmarks. See README.md.
mod cmd;
mod demo;
mod netns;
mod package;
mod setup;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Developer commands for the edge filter (run as root)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build and tests need (Debian packages, rust-src for
    /// nightly, bpf-linker); skips what is already there.
    Setup,
    /// Setup, then build the agent and its XDP program (release).
    Build,
    /// Setup, build, then show the filter on a router in three network
    /// namespaces with the example orders; cleans up after itself.
    Demo,
    /// Setup, build, then run the whole test suite (`cargo test --workspace --exclude filter-ebpf --release`).
    Test {
        /// Passed on to `cargo test` (e.g. a test name filter, or `-- --nocapture`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, then run a benchmark.
    Bench {
        what: test::Bench,
        /// Passed on to the benchmark binary.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, build, then make the Debian package
    /// target/debian/edgefilter_<version>_<arch>.deb (agent, systemd unit,
    /// default config that enforces nothing, docs; see deploy/RUNBOOK.md).
    Package,
}

/// The workspace root (xtask/..).
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `cargo build --release -p filter-agent` (build.rs builds the XDP program too).
pub fn build(root: &Path) -> Result<()> {
    let mut c = cmd::cargo(["build", "--release", "-p", "filter-agent"]);
    c.current_dir(root);
    println!("$ {}", cmd::display(&c));
    cmd::run(&mut c)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = root();
    let result = (|| -> Result<i32> {
        let verbose = matches!(cli.command, Command::Setup);
        setup::run(&root, verbose)?;
        match cli.command {
            Command::Setup => Ok(0),
            Command::Build => build(&root).map(|()| 0),
            Command::Demo => demo::run(&root).map(|()| 0),
            Command::Test { args } => test::test(&root, &args),
            Command::Bench { what, args } => test::bench(&root, what, &args),
            Command::Package => package::run(&root).map(|_| 0),
        }
    })();
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
