//! Helpers shared by the end-to-end tests: network namespaces, seeded
//! packet and rule-set generators, scratch directories, the agent binary.
pub mod counters;
pub mod flood;
pub mod harness;
pub mod l7gen;
pub mod netns;
pub mod pktgen;
pub mod rulegen;

/// Seed from `EDGEFILTER_SEED` (to replay a failure) or from the clock.
pub fn seed() -> u64 {
    match std::env::var("EDGEFILTER_SEED") {
        Ok(s) => s.parse().expect("EDGEFILTER_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

/// A scratch directory removed on drop, even when the test fails.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("edgefilter-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `filter-agent` binary cargo built next to this test executable.
pub fn agent_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/filter-agent
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("filter-agent");
    assert!(bin.exists(), "{} not built; run the tests with `cargo test --workspace`", bin.display());
    bin
}
