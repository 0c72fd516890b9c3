//! Records the git revision for `crocodial_exporter_build_info`.

fn main() {
    let revision = std::env::var("CROCODIAL_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CROCODIAL_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=CROCODIAL_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
