//! The crate's imports form the layers that the crate doc's *Layout* section describes: each
//! module uses only modules of lower layers (and itself), so there is no cycle, and the
//! simulator uses nothing of the exporter but the clock and the HTTP plumbing.
//!
//! Read from the source: every `crate::` path outside comments and outside the unit tests.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Each unit of the crate and its layer, bottom (0) up. `sim::traffic`, the traffic model, is a
/// unit of its own: `config` builds it from the `--sim.*` flags.
const LAYERS: &[(&str, u8)] = &[
    ("vocab", 0),
    ("clock", 0),
    ("web", 0),
    ("sim::traffic", 1),
    ("config", 2),
    ("api", 3),
    ("metrics", 4),
    ("state", 5),
    ("events", 5),
    ("ingest", 6),
    ("http", 7),
    ("server", 8),
    ("sim", 8),
    ("healthcheck", 8),
];

/// The unit a `crate::` path (or a file's module path) belongs to.
fn unit(path: &str) -> Option<&'static str> {
    LAYERS
        .iter()
        .map(|(u, _)| *u)
        .filter(|u| path == *u || path.starts_with(&format!("{u}::")))
        .max_by_key(|u| u.len())
}

fn layer(unit: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, l)| *l)
        .expect("a unit of LAYERS")
}

/// The module path of a source file: `src/ingest/poller.rs` is `ingest::poller`.
fn module_of(file: &Path) -> String {
    let rel = file
        .strip_prefix(Path::new(ROOT).join("src"))
        .expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::` (and, resolved, `super::`) paths a file's product code uses.
fn uses(module: &str, text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let parent: Vec<&str> = module.split("::").collect();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for (prefix, base) in [
            ("crate::", String::new()),
            ("super::", {
                let up = &parent[..parent.len().saturating_sub(1)];
                up.join("::")
            }),
        ] {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                let after = &rest[i + prefix.len()..];
                let path: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let path = path.trim_end_matches(':');
                let full = if base.is_empty() {
                    path.to_string()
                } else {
                    format!("{base}::{path}")
                };
                found.insert(full);
                rest = after;
            }
        }
    }
    found
}

#[test]
fn imports_only_point_down() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut sim_uses = BTreeSet::new();
    for file in &files {
        let module = module_of(file);
        if module == "lib" || module == "main" {
            continue;
        }
        let from = unit(&module).unwrap_or_else(|| panic!("{module} has no layer in LAYERS"));
        let text = std::fs::read_to_string(file).expect("read");
        for path in uses(&module, &text) {
            let Some(to) = unit(&path) else {
                continue;
            };
            if to == from {
                continue;
            }
            if from.starts_with("sim") {
                sim_uses.insert(to);
            }
            if layer(to) >= layer(from) && !(from == "sim" && to == "sim::traffic") {
                wrong.push(format!(
                    "{module} (layer {}) uses {path} (layer {})",
                    layer(from),
                    layer(to)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.join("\n")
    );
    // The HTTP plumbing: the server loop (`http`) and the TLS and auth settings it takes (`web`).
    let allowed: BTreeSet<&str> = ["clock", "http", "web", "sim::traffic"].into();
    assert!(
        sim_uses.is_subset(&allowed),
        "the simulator uses {sim_uses:?}; it may use only {allowed:?}"
    );
}

/// The checker itself sees an upward import, so that the test above cannot pass vacuously.
#[test]
fn the_checker_sees_uses() {
    let text = "use crate::ingest::dedup::Plan;\n// crate::server in a comment\nfn f() { super::codec::x(); }\n#[cfg(test)]\nmod tests { use crate::server; }\n";
    let found = uses("state::mod_x", text);
    assert_eq!(
        found,
        BTreeSet::from([
            "ingest::dedup::Plan".to_string(),
            "state::codec::x".to_string()
        ])
    );
    assert_eq!(unit("ingest::dedup::Plan"), Some("ingest"));
    assert_eq!(unit("sim::traffic::Traffic"), Some("sim::traffic"));
    assert_eq!(unit("sim::SimHandle"), Some("sim"));
}
