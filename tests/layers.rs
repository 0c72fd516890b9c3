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
    ("config_file", 3),
    ("api", 3),
    ("metrics", 4),
    ("state", 5),
    ("events", 5),
    ("ingest", 6),
    ("http", 7),
    ("backfill", 7),
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
    if unit == "lib" {
        return u8::MAX;
    }
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

/// The `crate::` (and, resolved, `super::`) paths a file's product code uses: every path of a
/// grouped import (`crate::{a::X, b::{Y, Z}}`), outside comments, up to the unit tests.
fn uses(module: &str, text: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut code = String::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let next = lines.get(i + 1).map(|l| l.trim_start()).unwrap_or("");
        if trimmed.starts_with("#[cfg(test)]") && next.starts_with("mod tests") {
            break;
        }
        if !trimmed.starts_with("//") {
            code.push_str(line);
            code.push('\n');
        }
    }
    let segments: Vec<&str> = module.split("::").collect();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let starts_path =
            !code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if starts_path && rest.starts_with("crate::") {
            found.extend(paths(&rest["crate::".len()..]));
        } else if starts_path && rest.starts_with("super::") {
            let mut after = rest;
            let mut up = 0;
            while let Some(r) = after.strip_prefix("super::") {
                after = r;
                up += 1;
            }
            let base = segments[..segments.len().saturating_sub(up)].join("::");
            found.extend(paths(after).into_iter().map(|p| {
                if base.is_empty() {
                    p
                } else {
                    format!("{base}::{p}")
                }
            }));
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    found
}

/// The paths written at the start of `s`: one, or every one of a `{...}` group.
fn paths(s: &str) -> Vec<String> {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .filter(|item| !item.trim().is_empty())
            .flat_map(paths)
            .collect();
    }
    let head: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let after = &s[head.len()..];
    match head.strip_suffix("::") {
        Some(base) if after.starts_with('{') => paths(after)
            .into_iter()
            .map(|p| {
                if p == "self" {
                    base.to_string()
                } else {
                    format!("{base}::{p}")
                }
            })
            .collect(),
        _ => vec![head.trim_end_matches(':').to_string()],
    }
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
            // An item of the crate root (`crate::Config`, `crate::run`) is the top layer's.
            let to = unit(&path).unwrap_or("lib");
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

/// The checker itself sees every form of import, so that the test above cannot pass vacuously.
#[test]
fn the_checker_sees_uses() {
    let text = "use crate::ingest::dedup::Plan;
// crate::server in a comment
use crate::{api::Row, metrics::{aggregates::Label, health::Health}, config::{self}};
fn f() { super::codec::x(); super::super::server::App::new(); crate::Config::defaults(); }
impl X {
    #[cfg(test)]
    fn only_for_tests() { crate::http::serve(); }
}
#[cfg(test)]
mod tests { use crate::sim; }
";
    let found = uses("state::mod_x", text);
    let want = [
        "api::Row",
        "config",
        "http::serve",
        "ingest::dedup::Plan",
        "metrics::aggregates::Label",
        "metrics::health::Health",
        "Config::defaults",
        "server::App::new",
        "state::codec::x",
    ];
    assert_eq!(found, want.iter().map(|s| s.to_string()).collect());
    assert_eq!(unit("ingest::dedup::Plan"), Some("ingest"));
    assert_eq!(unit("sim::traffic::Traffic"), Some("sim::traffic"));
    assert_eq!(unit("sim::SimHandle"), Some("sim"));
    assert_eq!(unit("Config::defaults"), None);
}
