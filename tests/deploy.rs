//! The deploy files: what can be checked without Docker or a cluster. Every YAML file parses, the
//! PrometheusRule carries exactly the rules Prometheus is tested with, the files the compose
//! project and kustomization name exist, and systemd accepts the unit and rates it as hardened.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

/// Every document of a YAML file.
fn documents(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

fn document(rel: &str) -> Value {
    let mut docs = documents(rel);
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.remove(0)
}

fn yaml_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let rel = p.strip_prefix(ROOT).expect("under root");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    yaml_files(&path("deploy"), &mut files);
    files.sort();
    assert_eq!(files.len(), 15, "{files:?}");
    for f in &files {
        for doc in documents(f) {
            assert!(doc.is_mapping(), "{f}: a mapping at the top");
        }
    }
}

#[test]
fn the_prometheus_rule_carries_the_tested_rules() {
    let rules = document("deploy/prometheus/rules.yml");
    let wrapped = document("deploy/kubernetes/prometheusrule.yaml");
    assert_eq!(wrapped["kind"], "PrometheusRule");
    assert_eq!(wrapped["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        wrapped["spec"]["groups"], rules["groups"],
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/rules.yml"
    );
}

#[test]
fn kubernetes_manifests_fit_together() {
    let kustomization = document("deploy/kubernetes/kustomization.yaml");
    let mut kinds = Vec::new();
    for r in kustomization["resources"].as_sequence().expect("resources") {
        let file = format!("deploy/kubernetes/{}", r.as_str().expect("file name"));
        kinds.push(document(&file)["kind"].as_str().expect("kind").to_string());
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "PrometheusRule",
            "Secret",
            "Service",
            "ServiceMonitor"
        ]
    );
    let deployment = document("deploy/kubernetes/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // One writer per state file.
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect();
    let state_mount = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "state")
        .expect("state mount");
    let state_dir = state_mount["mountPath"].as_str().expect("mountPath");
    assert!(
        args.contains(&format!("--state.file={state_dir}/crocodial-exporter.db").as_str()),
        "{args:?}"
    );
    let claim = document("deploy/kubernetes/pvc.yaml");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        claim["metadata"]["name"]
    );
    let secret = document("deploy/kubernetes/secret.yaml");
    assert_eq!(
        pod["volumes"][1]["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    assert!(args.contains(&"--api.password-file=/etc/crocodial-exporter/api-password"));
    assert!(secret["stringData"]["api-password"].is_string());
    // The ServiceMonitor's job label is the one the ExporterDown alert looks for.
    let monitor = document("deploy/kubernetes/servicemonitor.yaml");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"],
        "crocodial"
    );
    let rules = std::fs::read_to_string(path("deploy/prometheus/rules.yml")).expect("rules");
    assert!(rules.contains(r#"up{job="crocodial"}"#));
}

#[test]
fn the_compose_project_names_files_that_exist() {
    let compose = document("deploy/compose/docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().map(|k| k.as_str().expect("name")).collect();
    assert_eq!(names, ["exporter", "prometheus", "alertmanager", "grafana"]);
    let exporter = &compose["services"]["exporter"];
    assert_eq!(exporter["command"][0], "--demo");
    let dockerfile = Path::new(ROOT)
        .join("deploy/compose")
        .join(exporter["build"]["context"].as_str().expect("context"))
        .join(
            exporter["build"]["dockerfile"]
                .as_str()
                .expect("dockerfile"),
        );
    assert!(dockerfile.is_file(), "{}", dockerfile.display());
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = volume.as_str().expect("short volume syntax");
            let host = spec.split(':').next().expect("source");
            if host.starts_with('.') {
                let p = path("deploy/compose").join(host);
                assert!(p.exists(), "{name:?}: {} does not exist", p.display());
            }
        }
    }
    // Grafana finds the dashboards where the provider looks.
    let provider = document("deploy/compose/grafana/provisioning/dashboards/crocodial.yml");
    let dashboards_at = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("path");
    let grafana_volumes = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .expect("volumes");
    assert!(grafana_volumes
        .iter()
        .any(|v| v.as_str() == Some(&format!("../../dashboards:{dashboards_at}:ro"))));
}

/// `systemd-analyze verify` accepts the unit (with ExecStart pointed at the built binary, which it
/// insists exists) and `systemd-analyze security` rates its exposure at most 1.5 of 10.
#[test]
fn systemd_accepts_the_unit_and_rates_it_hardened() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is required in CI"
        );
        eprintln!("SKIPPED: no systemd-analyze");
        return;
    }
    let unit =
        std::fs::read_to_string(path("deploy/systemd/crocodial-exporter.service")).expect("unit");
    assert!(unit.contains("/usr/local/bin/crocodial-exporter"));
    let dir = std::env::temp_dir().join(format!("crocodial-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("crocodial-exporter.service");
    std::fs::write(
        &file,
        unit.replace(
            "/usr/local/bin/crocodial-exporter",
            env!("CARGO_BIN_EXE_crocodial-exporter"),
        ),
    )
    .expect("write");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
        .expect("systemd-analyze verify");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "verify: {said}");
    assert_eq!(said.trim(), "", "verify had something to say");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=15"])
        .arg(&file)
        .output()
        .expect("systemd-analyze security");
    assert!(
        security.status.success(),
        "exposure above 1.5: {}",
        String::from_utf8_lossy(&security.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
