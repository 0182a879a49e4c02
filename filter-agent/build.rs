//! Builds the XDP program (filter-ebpf) with nightly and embeds it.
//! With AYA_BUILD_SKIP=1 (e.g. on a machine without the eBPF toolchain) an
//! empty placeholder is embedded instead and the agent refuses to attach,
//! saying why; everything that does not touch the kernel still works.
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest.join("../filter-ebpf").canonicalize()?;
    let common_dir = manifest.join("../filter-common/src").canonicalize()?;
    // The program's map layouts come from filter-common.
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("edgefilter");
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        if !out.exists() {
            std::fs::write(&out, [])?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    let package = aya_build::Package {
        name: "filter-ebpf",
        root_dir: ebpf_dir.to_str().expect("utf-8 path"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
