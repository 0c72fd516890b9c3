//! The deploy files: what can be checked without Docker or a cluster. Every YAML file parses, the
//! PrometheusRule carries exactly the rules Prometheus is tested with, the files the compose
//! project names exist and every service has a health check, the image's health check works
//! against a running exporter, systemd accepts the unit and rates it as hardened, and the
//! kustomizations, rendered by `kubectl kustomize` as users apply them, carry the labels where
//! prometheus-operator reads them and keep two exporters from selecting each other's objects.
//!
//! No Debian, PyPI or npm package ships prometheus-operator's CRD schemas, so the ServiceMonitor
//! and PrometheusRule are checked here field by field against prometheus-operator's v1 API: only
//! fields the operator knows, in the places it reads them, with the values it accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml_ng::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const INSTANCE: &str = "app.kubernetes.io/instance";
const NAMESPACE: &str = "monitoring";

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn parse_documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Every document of a YAML file.
fn documents(rel: &str) -> Vec<Value> {
    parse_documents(&read(rel), rel)
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

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {v:?}"))
}

fn keys(v: &Value) -> Vec<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .map(|k| k.as_str().unwrap_or("<non-string key>").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A mapping of strings to strings (labels, selectors), or None when it is anything else.
fn string_map(v: &Value) -> Option<BTreeMap<String, String>> {
    let m = v.as_mapping()?;
    let mut out = BTreeMap::new();
    for (k, v) in m {
        out.insert(k.as_str()?.to_string(), v.as_str()?.to_string());
    }
    Some(out)
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    string_map(&obj["metadata"]["labels"]).unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn kind(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or("")
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn of_kind<'a>(objects: &[&'a Value], k: &str) -> Vec<&'a Value> {
    objects.iter().copied().filter(|o| kind(o) == k).collect()
}

/// The value of the app.kubernetes.io/instance label.
fn instance(o: &Value) -> String {
    labels_of(o)
        .get(INSTANCE)
        .cloned()
        .unwrap_or_else(|| panic!("{} {}: no {INSTANCE}", kind(o), name(o)))
}

fn the<'a>(objects: &'a [Value], k: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| kind(o) == k).collect();
    assert_eq!(found.len(), 1, "one {k}");
    found[0]
}

/// Unknown keys of a mapping, against the fields the API defines there.
fn unknown_keys(v: &Value, allowed: &[&str], at: &str, problems: &mut Vec<String>) {
    if !v.is_mapping() {
        problems.push(format!("{at}: not a mapping"));
        return;
    }
    for k in keys(v) {
        if !allowed.contains(&k.as_str()) {
            problems.push(format!("{at}.{k}: not a field of the API"));
        }
    }
}

/// A Prometheus duration as the operator's CRDs accept it
/// (`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`),
/// in milliseconds.
fn duration_ms(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut next_unit = 0;
    let mut total = 0u64;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let i = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        total += n * UNITS[i].1;
        next_unit = i + 1;
    }
    (!s.is_empty()).then_some(total)
}

/// A Kubernetes label name (optional DNS prefix, `/`, then up to 63 characters) or value.
fn label_part_ok(s: &str) -> bool {
    s.len() <= 63
        && (s.is_empty()
            || (s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()))
}

fn label_key_ok(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    !name.is_empty()
        && label_part_ok(name)
        && prefix.is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 253
                && p.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                })
        })
}

/// What the operator reads of any of its objects: name, namespace (its namespace selectors) and
/// labels (its serviceMonitorSelector and ruleSelector).
fn check_metadata(obj: &Value, problems: &mut Vec<String>) {
    let at = format!("{}/{}", kind(obj), name(obj));
    unknown_keys(
        obj,
        &["apiVersion", "kind", "metadata", "spec"],
        &at,
        problems,
    );
    if obj["apiVersion"] != "monitoring.coreos.com/v1" {
        problems.push(format!("{at}: apiVersion {:?}", obj["apiVersion"]));
    }
    let meta = &obj["metadata"];
    unknown_keys(
        meta,
        &["name", "namespace", "labels", "annotations"],
        &format!("{at}.metadata"),
        problems,
    );
    if name(obj).is_empty() || meta["namespace"].as_str().is_none() {
        problems.push(format!("{at}: no name or namespace"));
    }
    match string_map(&meta["labels"]) {
        None => problems.push(format!("{at}.metadata.labels: not a map of strings")),
        Some(labels) => {
            for (k, v) in labels {
                if !label_key_ok(&k) || !label_part_ok(&v) {
                    problems.push(format!("{at}: label {k}={v} is not a valid label"));
                }
            }
        }
    }
}

const RELABEL_FIELDS: &[&str] = &[
    "sourceLabels",
    "separator",
    "targetLabel",
    "regex",
    "modulus",
    "replacement",
    "action",
];
const RELABEL_ACTIONS: &[&str] = &[
    "replace",
    "keep",
    "drop",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
    "keepequal",
    "dropequal",
];

fn check_relabelings(list: &Value, at: &str, problems: &mut Vec<String>) {
    if list.is_null() {
        return;
    }
    let Some(list) = list.as_sequence() else {
        problems.push(format!("{at}: not a list"));
        return;
    };
    for (i, r) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        unknown_keys(r, RELABEL_FIELDS, &at, problems);
        let action = r["action"].as_str().unwrap_or("replace").to_lowercase();
        if !RELABEL_ACTIONS.contains(&action.as_str()) {
            problems.push(format!("{at}.action: {action:?} is no relabel action"));
        }
        if matches!(
            action.as_str(),
            "replace" | "hashmod" | "lowercase" | "uppercase"
        ) && r["targetLabel"].as_str().is_none_or(str::is_empty)
        {
            problems.push(format!("{at}: {action} needs targetLabel"));
        }
        if r["sourceLabels"]
            .as_sequence()
            .is_some_and(|l| l.iter().any(|l| l.as_str().is_none()))
        {
            problems.push(format!("{at}.sourceLabels: not strings"));
        }
    }
}

/// A ServiceMonitor against prometheus-operator's v1 ServiceMonitorSpec and Endpoint, and what
/// it selects: the Services (by labels, in its namespace) and, of each, the port it names.
fn check_service_monitor(sm: &Value, services: &[&Value], problems: &mut Vec<String>) {
    check_metadata(sm, problems);
    let at = format!("ServiceMonitor/{}", name(sm));
    let spec = &sm["spec"];
    unknown_keys(
        spec,
        &[
            "jobLabel",
            "targetLabels",
            "podTargetLabels",
            "endpoints",
            "selector",
            "selectorMechanism",
            "namespaceSelector",
            "sampleLimit",
            "scrapeProtocols",
            "fallbackScrapeProtocol",
            "targetLimit",
            "labelLimit",
            "labelNameLengthLimit",
            "labelValueLengthLimit",
            "scrapeClassicHistograms",
            "nativeHistogramBucketLimit",
            "nativeHistogramMinBucketFactor",
            "convertClassicHistogramsToNHCB",
            "keepDroppedTargets",
            "attachMetadata",
            "scrapeClass",
            "bodySizeLimit",
            "serviceDiscoveryRole",
        ],
        &format!("{at}.spec"),
        problems,
    );
    unknown_keys(
        &spec["selector"],
        &["matchLabels", "matchExpressions"],
        &format!("{at}.spec.selector"),
        problems,
    );
    let Some(selector) = string_map(&spec["selector"]["matchLabels"]) else {
        problems.push(format!("{at}: no spec.selector.matchLabels"));
        return;
    };
    if selector.is_empty() {
        problems.push(format!("{at}: an empty selector selects every Service"));
    }
    if !spec["namespaceSelector"].is_null() {
        problems.push(format!(
            "{at}: a namespaceSelector; the Service is in the ServiceMonitor's namespace"
        ));
    }
    let ns = sm["metadata"]["namespace"].as_str();
    let selected: Vec<&&Value> = services
        .iter()
        .filter(|s| s["metadata"]["namespace"].as_str() == ns)
        .filter(|s| selects(&selector, &labels_of(s)))
        .collect();
    if selected.is_empty() {
        problems.push(format!("{at}: selects no Service"));
    }
    let Some(endpoints) = spec["endpoints"].as_sequence().filter(|e| !e.is_empty()) else {
        problems.push(format!("{at}: no spec.endpoints"));
        return;
    };
    for (i, ep) in endpoints.iter().enumerate() {
        let at = format!("{at}.spec.endpoints[{i}]");
        unknown_keys(
            ep,
            &[
                "port",
                "targetPort",
                "path",
                "scheme",
                "params",
                "interval",
                "scrapeTimeout",
                "tlsConfig",
                "bearerTokenFile",
                "bearerTokenSecret",
                "authorization",
                "honorLabels",
                "honorTimestamps",
                "trackTimestampsStaleness",
                "basicAuth",
                "oauth2",
                "metricRelabelings",
                "relabelings",
                "proxyUrl",
                "noProxy",
                "proxyFromEnvironment",
                "proxyConnectHeader",
                "followRedirects",
                "enableHttp2",
                "filterRunning",
            ],
            &at,
            problems,
        );
        // The operator keeps the Service's endpoints whose port has this name.
        let port = ep["port"].as_str().unwrap_or("");
        for s in &selected {
            let names: Vec<&str> = s["spec"]["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            if !names.contains(&port) {
                problems.push(format!(
                    "{at}.port {port:?}: Service {} has ports {names:?}",
                    name(s)
                ));
            }
        }
        if let Some(scheme) = ep["scheme"]
            .as_str()
            .filter(|s| !matches!(*s, "http" | "https" | "HTTP" | "HTTPS"))
        {
            problems.push(format!("{at}.scheme {scheme:?}"));
        }
        let mut ms = BTreeMap::new();
        for field in ["interval", "scrapeTimeout"] {
            if let Some(d) = ep[field].as_str() {
                match duration_ms(d) {
                    Some(v) => {
                        ms.insert(field, v);
                    }
                    None => problems.push(format!("{at}.{field} {d:?}: not a duration")),
                }
            }
        }
        if matches!(
            (ms.get("interval"), ms.get("scrapeTimeout")),
            (Some(i), Some(t)) if t > i
        ) {
            problems.push(format!("{at}: scrapeTimeout longer than interval"));
        }
        check_relabelings(&ep["relabelings"], &format!("{at}.relabelings"), problems);
        check_relabelings(
            &ep["metricRelabelings"],
            &format!("{at}.metricRelabelings"),
            problems,
        );
    }
}

/// A PrometheusRule against prometheus-operator's v1 PrometheusRuleSpec, RuleGroup and Rule.
fn check_prometheus_rule(pr: &Value, problems: &mut Vec<String>) {
    check_metadata(pr, problems);
    let at = format!("PrometheusRule/{}", name(pr));
    unknown_keys(&pr["spec"], &["groups"], &format!("{at}.spec"), problems);
    let Some(groups) = pr["spec"]["groups"].as_sequence() else {
        problems.push(format!("{at}: no spec.groups"));
        return;
    };
    let mut group_names = BTreeSet::new();
    for (g, group) in groups.iter().enumerate() {
        let gat = format!("{at}.spec.groups[{g}]");
        unknown_keys(
            group,
            &[
                "name",
                "labels",
                "interval",
                "query_offset",
                "rules",
                "partial_response_strategy",
                "limit",
            ],
            &gat,
            problems,
        );
        match group["name"].as_str() {
            Some(n) if !n.is_empty() => {
                if !group_names.insert(n.to_string()) {
                    problems.push(format!("{gat}: group name {n:?} twice"));
                }
            }
            _ => problems.push(format!("{gat}: no name")),
        }
        for field in ["interval", "query_offset"] {
            if let Some(d) = group[field].as_str().filter(|d| duration_ms(d).is_none()) {
                problems.push(format!("{gat}.{field} {d:?}: not a duration"));
            }
        }
        let Some(rules) = group["rules"].as_sequence() else {
            problems.push(format!("{gat}: no rules"));
            continue;
        };
        for (r, rule) in rules.iter().enumerate() {
            let rat = format!("{gat}.rules[{r}]");
            unknown_keys(
                rule,
                &[
                    "record",
                    "alert",
                    "expr",
                    "for",
                    "keep_firing_for",
                    "labels",
                    "annotations",
                ],
                &rat,
                problems,
            );
            let record = rule["record"].as_str();
            let alert = rule["alert"].as_str();
            if record.is_some() == alert.is_some() {
                problems.push(format!("{rat}: needs exactly one of record and alert"));
            }
            if record.is_some()
                && ["for", "keep_firing_for", "annotations"]
                    .iter()
                    .any(|f| !rule[*f].is_null())
            {
                problems.push(format!("{rat}: a recording rule with alerting fields"));
            }
            if rule["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("{rat}: no expr"));
            }
            for field in ["for", "keep_firing_for"] {
                if let Some(d) = rule[field].as_str().filter(|d| duration_ms(d).is_none()) {
                    problems.push(format!("{rat}.{field} {d:?}: not a duration"));
                }
            }
            for field in ["labels", "annotations"] {
                if !rule[field].is_null() && string_map(&rule[field]).is_none() {
                    problems.push(format!("{rat}.{field}: not a map of strings"));
                }
            }
        }
    }
}

/// The kustomizations that users apply, rendered by `kubectl kustomize` from a copy of
/// deploy/kubernetes with a made-up password file where README *Deploying* has users put theirs
/// (never the real files: the copy leaves out every api-password). None without kubectl outside
/// CI.
struct Renders {
    with_operator: Vec<Value>,
    without_operator: Vec<Value>,
    second_domain: Vec<Value>,
    domains_a: Vec<Value>,
    domains_b: Vec<Value>,
}

const APPLIED: [&str; 5] = [
    ".",
    "without-operator",
    "overlays/second-domain",
    "overlays/domains-a",
    "overlays/domains-b",
];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let p = entry.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(entry.file_name()));
        } else if entry.file_name() != "api-password" && entry.file_name() != "passwords.env" {
            std::fs::copy(&p, to.join(entry.file_name())).expect("copy");
        }
    }
}

fn renders() -> Option<&'static Renders> {
    static RENDERS: OnceLock<Option<Renders>> = OnceLock::new();
    RENDERS
        .get_or_init(|| {
            if Command::new("kubectl")
                .args(["version", "--client"])
                .output()
                .is_err()
            {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "kubectl is required in CI (.ci/run installs it)"
                );
                eprintln!("SKIPPED: no kubectl to render the kustomizations");
                return None;
            }
            let dir =
                std::env::temp_dir().join(format!("crocodial-kustomize-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            copy_tree(&path("deploy/kubernetes"), &dir);
            let render = |applied: &str| {
                let at = dir.join(applied);
                std::fs::write(
                    at.join("api-password"),
                    format!("test-password-{applied}\n"),
                )
                .expect("password file");
                std::fs::write(
                    at.join("passwords.env"),
                    "acme=test-acme\nglobex=test-globex\ninitech=test-initech\numbrella=test-umbrella\n",
                )
                .expect("passwords file");
                let out = Command::new("kubectl")
                    .arg("kustomize")
                    .arg(&at)
                    .output()
                    .expect("kubectl kustomize");
                assert!(
                    out.status.success(),
                    "kubectl kustomize deploy/kubernetes/{applied}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                parse_documents(
                    &String::from_utf8(out.stdout).expect("utf-8"),
                    &format!("rendered {applied}"),
                )
            };
            let renders = Renders {
                with_operator: render(APPLIED[0]),
                without_operator: render(APPLIED[1]),
                second_domain: render(APPLIED[2]),
                domains_a: render(APPLIED[3]),
                domains_b: render(APPLIED[4]),
            };
            let _ = std::fs::remove_dir_all(&dir);
            Some(renders)
        })
        .as_ref()
}

/// The value of the `release` label, from the one place it is set.
fn release_label() -> String {
    let component = document("deploy/kubernetes/components/prometheus-operator/kustomization.yaml");
    let patches = component["patches"].as_sequence().expect("patches");
    let mut values = Vec::new();
    for p in patches {
        for op in parse_documents(str_of(&p["patch"], "patch"), "patch") {
            for op in op.as_sequence().into_iter().flatten() {
                if op["path"] == "/metadata/labels/release" {
                    values.push(str_of(&op["value"], "release").to_string());
                }
            }
        }
    }
    assert_eq!(values.len(), 1, "one release label: {values:?}");
    values.remove(0)
}

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    yaml_files(&path("deploy"), &mut files);
    files.sort();
    assert_eq!(files.len(), 25, "{files:?}");
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

/// `kubectl kustomize deploy/kubernetes`, as applied: the labels sit where the operator reads
/// them, the custom resources hold only fields it knows, and the Deployment is wired to the
/// generated Secret, ConfigMap and claim.
#[test]
fn the_rendered_kustomization_has_the_labels_where_the_operator_reads_them() {
    let Some(r) = renders() else { return };
    let objects = &r.with_operator;
    let mut kinds: Vec<&str> = objects.iter().map(kind).collect();
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
    for o in objects {
        assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{}", name(o));
        assert_eq!(
            labels_of(o).get(INSTANCE).map(String::as_str),
            Some("crocodial-exporter"),
            "{} {}: {INSTANCE}",
            kind(o),
            name(o)
        );
    }
    let release = release_label();
    let services: Vec<&Value> = objects.iter().filter(|o| kind(o) == "Service").collect();
    let mut problems = Vec::new();
    let sm = the(objects, "ServiceMonitor");
    let pr = the(objects, "PrometheusRule");
    check_service_monitor(sm, &services, &mut problems);
    check_prometheus_rule(pr, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    for cr in [sm, pr] {
        // kube-prometheus-stack's serviceMonitorSelector and ruleSelector.
        assert_eq!(
            labels_of(cr).get("release"),
            Some(&release),
            "{} has no release label",
            kind(cr)
        );
    }
    // The job label is the one the CrocodialExporterDown alert looks for.
    let relabel = &sm["spec"]["endpoints"][0]["relabelings"];
    assert!(
        relabel.as_sequence().expect("relabelings").iter().any(|r| {
            r["targetLabel"] == "job"
                && r["replacement"] == "crocodial"
                && r["action"].as_str().unwrap_or("replace") == "replace"
        }),
        "{relabel:?}"
    );
    assert!(read("deploy/prometheus/rules.yml").contains(r#"up{job="crocodial"}"#));
    assert_eq!(
        pr["spec"]["groups"],
        document("deploy/prometheus/rules.yml")["groups"],
        "the rendered PrometheusRule differs from deploy/prometheus/rules.yml"
    );

    // The Deployment, wired to the generated objects.
    let deployment = the(objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        deployment["spec"]["replicas"], 1,
        "one writer per state file"
    );
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let volume = |n: &str| {
        pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("volume {n}"))
    };
    let mount = |n: &str| {
        let m = container["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == n)
            .unwrap_or_else(|| panic!("mount {n}"));
        str_of(&m["mountPath"], "mountPath").to_string()
    };
    assert!(
        args.contains(&format!("--state.file={}/crocodial-exporter.db", mount("state")).as_str()),
        "{args:?}"
    );
    assert_eq!(
        volume("state")["persistentVolumeClaim"]["claimName"],
        the(objects, "PersistentVolumeClaim")["metadata"]["name"]
    );
    let secret = the(objects, "Secret");
    assert_eq!(
        volume("api-password")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    assert!(secret["data"]["api-password"].is_string(), "{secret:?}");
    assert!(
        args.contains(
            &format!("--api.password-file={}/api-password", mount("api-password")).as_str()
        ),
        "{args:?}"
    );
    let config_map = the(objects, "ConfigMap");
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        config_map["metadata"]["name"]
    );
    for var in [
        "CROCODIAL_API_URL",
        "CROCODIAL_API_USER",
        "CROCODIAL_API_TIMEZONE",
    ] {
        assert!(config_map["data"][var].is_string(), "{var}");
    }
    // The Service sends to the container's port by name.
    let service = the(objects, "Service");
    let port_names: Vec<&str> = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in service["spec"]["ports"].as_sequence().expect("ports") {
        assert!(port_names.contains(&str_of(&p["targetPort"], "targetPort")));
    }
}

/// The first domain (deploy/kubernetes) and the example second one
/// (deploy/kubernetes/overlays/second-domain) in one namespace: no name is taken twice, and each
/// exporter's ServiceMonitor, Service and Deployment selects its own objects only.
#[test]
fn exporters_do_not_select_each_others_objects() {
    let Some(r) = renders() else { return };
    let first = &r.with_operator;
    let others: Vec<&Value> = r
        .second_domain
        .iter()
        .chain(&r.domains_a)
        .chain(&r.domains_b)
        .collect();
    assert!(
        others.iter().all(|o| kind(o) != "PrometheusRule"),
        "one PrometheusRule per Prometheus: the rules aggregate by target"
    );
    let all: Vec<&Value> = first.iter().chain(others).collect();
    let mut ids = BTreeSet::new();
    for o in &all {
        let id = (
            kind(o).to_string(),
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name(o).to_string(),
        );
        assert!(ids.insert(id.clone()), "{id:?} twice");
    }
    let instances: BTreeSet<String> = all.iter().copied().map(instance).collect();
    assert_eq!(instances.len(), 4, "{instances:?}");
    let services = of_kind(&all, "Service");
    let deployments = of_kind(&all, "Deployment");
    let mut problems = Vec::new();
    for sm in of_kind(&all, "ServiceMonitor") {
        check_service_monitor(sm, &services, &mut problems);
        let selector = string_map(&sm["spec"]["selector"]["matchLabels"]).expect("matchLabels");
        assert!(
            selector.contains_key(INSTANCE),
            "{}: {selector:?}",
            name(sm)
        );
        let selected: Vec<&str> = services
            .iter()
            .copied()
            .filter(|s| s["metadata"]["namespace"] == sm["metadata"]["namespace"])
            .filter(|s| selects(&selector, &labels_of(s)))
            .map(name)
            .collect();
        let own: Vec<&str> = services
            .iter()
            .copied()
            .filter(|s| instance(s) == instance(sm))
            .map(name)
            .collect();
        assert_eq!(selected, own, "ServiceMonitor {}", name(sm));
    }
    assert!(problems.is_empty(), "{problems:#?}");
    let pod_labels =
        |d: &Value| string_map(&d["spec"]["template"]["metadata"]["labels"]).expect("pod labels");
    for s in &services {
        let selector = string_map(&s["spec"]["selector"]).expect("Service selector");
        assert!(selector.contains_key(INSTANCE), "{}: {selector:?}", name(s));
        let selected: Vec<&str> = deployments
            .iter()
            .copied()
            .filter(|d| selects(&selector, &pod_labels(d)))
            .map(name)
            .collect();
        let own: Vec<&str> = deployments
            .iter()
            .copied()
            .filter(|d| instance(d) == instance(s))
            .map(name)
            .collect();
        assert_eq!(selected, own, "Service {}", name(s));
        assert_eq!(own.len(), 1);
    }
    for d in &deployments {
        let selector = string_map(&d["spec"]["selector"]["matchLabels"]).expect("selector");
        assert!(selector.contains_key(INSTANCE), "{}: {selector:?}", name(d));
        assert!(selects(&selector, &pod_labels(d)));
        for other in &deployments {
            if name(other) != name(d) {
                assert!(
                    !selects(&selector, &pod_labels(other)),
                    "Deployment {} selects the pods of {}",
                    name(d),
                    name(other)
                );
            }
        }
        // Its claim, Secret and ConfigMap are its own instance's.
        let pod = &d["spec"]["template"]["spec"];
        let mut refs = vec![(
            "ConfigMap",
            pod["containers"][0]["envFrom"][0]["configMapRef"]["name"].clone(),
        )];
        for v in pod["volumes"].as_sequence().expect("volumes") {
            if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                refs.push(("PersistentVolumeClaim", Value::from(c)));
            }
            if let Some(s) = v["secret"]["secretName"].as_str() {
                refs.push(("Secret", Value::from(s)));
            }
        }
        for (k, n) in refs {
            let target = all
                .iter()
                .find(|o| kind(o) == k && o["metadata"]["name"] == n)
                .unwrap_or_else(|| panic!("{}: no {k} {n:?}", name(d)));
            assert_eq!(instance(target), instance(d), "{}: {k} {n:?}", name(d));
        }
    }
}

/// `kubectl kustomize deploy/kubernetes/without-operator`: the exporter alone, no custom
/// resource, and the scrape job of prometheus-scrape.yml names its Service.
#[test]
fn without_the_operator_the_exporter_renders_alone_and_the_scrape_job_finds_it() {
    let Some(r) = renders() else { return };
    let objects = &r.without_operator;
    let mut kinds: Vec<&str> = objects.iter().map(kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "Secret",
            "Service"
        ]
    );
    for o in objects {
        assert_eq!(
            labels_of(o).get(INSTANCE).map(String::as_str),
            Some("crocodial-exporter")
        );
    }
    let service = the(objects, "Service");
    let scrape = document("deploy/kubernetes/without-operator/prometheus-scrape.yml");
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["job_name"], "crocodial");
    let target = format!(
        "{}.{}.svc:{}",
        name(service),
        str_of(&service["metadata"]["namespace"], "namespace"),
        service["spec"]["ports"][0]["port"].as_u64().expect("port")
    );
    assert_eq!(job["static_configs"][0]["targets"][0], target.as_str());
}

/// No password is committed: no Secret manifest, every Secret comes from a password file that git
/// ignores, and the image's build context leaves those files out.
#[test]
fn no_password_is_committed() {
    let mut files = Vec::new();
    yaml_files(&path("deploy"), &mut files);
    for f in &files {
        for doc in documents(f) {
            assert_ne!(doc["kind"], "Secret", "{f}: a committed Secret");
        }
    }
    for applied in APPLIED {
        let rel = format!("deploy/kubernetes/{applied}/kustomization.yaml").replace("/./", "/");
        let k = document(&rel);
        let generators = k["secretGenerator"].as_sequence().expect("secretGenerator");
        assert_eq!(generators.len(), 1, "{rel}");
        let g = &generators[0];
        assert_eq!(g["name"], "crocodial-exporter-api", "{rel}");
        // One password file (api-password), or for many domains one file of NAME=password
        // lines (passwords.env): never literals.
        let (source, file) = if applied.contains("domains-") {
            ("envs", "passwords.env")
        } else {
            ("files", "api-password")
        };
        assert_eq!(
            keys(g),
            ["name", source],
            "{rel}: the Secret only from files, never literals"
        );
        assert_eq!(
            g[source],
            serde_yaml_ng::from_str::<Value>(&format!("[{file}]")).unwrap()
        );
        let password = format!("deploy/kubernetes/{applied}/{file}").replace("/./", "/");
        if Path::new(ROOT).join(".git").exists() {
            let ignored = Command::new("git")
                .args(["check-ignore", "-q", "--no-index", &password])
                .current_dir(ROOT)
                .status()
                .expect("git");
            assert!(ignored.success(), "git does not ignore {password}");
        }
    }
    let dockerignore = read("deploy/docker/Dockerfile.dockerignore");
    let patterns: Vec<&str> = dockerignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(patterns[0], "*", "the build context starts from nothing");
    assert!(patterns[1..]
        .iter()
        .all(|p| p.starts_with('!') && !p.contains("deploy")));
}

/// Dockerfile: the build stage's Rust is Cargo.toml's rust-version, the runtime image has a
/// version tag, the OCI labels carry the version and the revision build argument, the health
/// check is the exporter's own, and no password or whole build context goes into a layer.
#[test]
fn the_dockerfile_is_pinned_labelled_and_checks_health() {
    let dockerfile = read("deploy/docker/Dockerfile");
    let cargo = read("Cargo.toml");
    let field = |k: &str| {
        cargo
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("Cargo.toml {k}"))
            .to_string()
    };
    let rust_version = field("rust-version");
    let version = field("version");
    // Instructions, with continuation lines joined.
    let mut instructions: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if (t.starts_with('#') && pending.is_empty()) || t.is_empty() {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(t);
                instructions.push(std::mem::take(&mut pending));
            }
        }
    }
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|i| i.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    let build_image = froms[0].split_whitespace().nth(1).expect("image");
    let rust = build_image
        .strip_prefix("rust:")
        .expect("the build stage is the rust image");
    assert!(
        rust == rust_version
            || rust.starts_with(&format!("{rust_version}."))
            || rust.starts_with(&format!("{rust_version}-")),
        "build image {build_image}, Cargo.toml rust-version {rust_version}: they must match, \
         and the locked dependencies must build with that Rust"
    );
    let runtime = froms[1].split_whitespace().nth(1).expect("image");
    let tag = runtime.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian") && !tag.is_empty() && tag != "latest",
        "runtime image {runtime}"
    );
    assert!(
        build_image.contains("bookworm") && runtime.contains("debian12"),
        "build and runtime on the same Debian (glibc)"
    );
    let final_stage: Vec<&String> = instructions.iter().skip_while(|i| *i != froms[1]).collect();
    let has = |s: &str| final_stage.iter().any(|i| i.contains(s));
    assert!(
        has(&format!("ARG VERSION={version}")),
        "ARG VERSION={version}"
    );
    assert!(has("ARG REVISION"));
    for label in [
        "org.opencontainers.image.title=",
        "org.opencontainers.image.source=",
        "org.opencontainers.image.licenses=",
        "org.opencontainers.image.version=\"${VERSION}\"",
        "org.opencontainers.image.revision=\"${REVISION}\"",
    ] {
        assert!(
            final_stage
                .iter()
                .any(|i| i.starts_with("LABEL ") && i.contains(label)),
            "LABEL {label}"
        );
    }
    assert!(cargo.contains("license = \"Apache-2.0\"") && has("licenses=\"Apache-2.0\""));
    for i in &instructions {
        let upper = i.to_uppercase();
        if upper.starts_with("ENV ") || upper.starts_with("ARG ") {
            for word in ["PASSWORD", "SECRET", "TOKEN"] {
                assert!(!upper.contains(word), "{i}");
            }
        }
        if i.starts_with("COPY ") && !i.contains("--from=") {
            assert!(!i.contains(" . "), "the whole context copied: {i}");
        }
    }
    assert_eq!(
        healthcheck_command(),
        ["/usr/local/bin/crocodial-exporter", "healthcheck"]
    );
}

/// The exec form of the Dockerfile's HEALTHCHECK, which the compose file repeats.
fn healthcheck_command() -> Vec<String> {
    let dockerfile = read("deploy/docker/Dockerfile").replace("\\\n", " ");
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("HEALTHCHECK");
    let exec = line
        .split_once(" CMD ")
        .expect("HEALTHCHECK ... CMD")
        .1
        .trim();
    serde_yaml_ng::from_str(exec).expect("exec form")
}

#[test]
fn the_compose_project_names_files_that_exist_and_checks_health() {
    let compose = document("deploy/compose/docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().map(|k| k.as_str().expect("name")).collect();
    assert_eq!(
        names,
        [
            "history",
            "history-blocks",
            "exporter",
            "prometheus",
            "alertmanager",
            "grafana"
        ]
    );
    // Jobs that run once at each start, and what waits for them.
    let jobs = ["history", "history-blocks"];
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
        if jobs.contains(&name.as_str().expect("name")) {
            assert_eq!(service["restart"], "no", "{name:?}");
            continue;
        }
        // A health check each, and every dependency started once it is healthy (a job: once it
        // has run).
        let test = service["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name:?}: no healthcheck"));
        assert_eq!(test[0], "CMD", "{name:?}: exec form");
        for (dep, how) in service["depends_on"].as_mapping().into_iter().flatten() {
            assert!(services.contains_key(dep), "{name:?} depends on {dep:?}");
            let condition = if jobs.contains(&dep.as_str().expect("name")) {
                "service_completed_successfully"
            } else {
                "service_healthy"
            };
            assert_eq!(how["condition"], condition, "{name:?} on {dep:?}");
        }
        assert!(
            service["depends_on"].is_null() || service["depends_on"].is_mapping(),
            "{name:?}: depends_on with conditions"
        );
    }
    let exporter_check: Vec<String> = exporter["healthcheck"]["test"].as_sequence().expect("test")
        [1..]
        .iter()
        .map(|a| str_of(a, "arg").to_string())
        .collect();
    assert_eq!(
        exporter_check,
        healthcheck_command(),
        "the image's own health check"
    );
    assert_eq!(
        compose["services"]["prometheus"]["depends_on"]["exporter"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        compose["services"]["grafana"]["depends_on"]["prometheus"]["condition"],
        "service_healthy"
    );
    // The history is of the exporter's own simulated dialer, into the exporter's state file
    // and Prometheus's volume, with flags `backfill` has.
    let history = &compose["services"]["history"];
    let args: Vec<&str> = history["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert_eq!(args[..2], ["backfill", "--demo"]);
    let sim_flags = |args: &[&str]| -> Vec<String> {
        args.iter()
            .filter(|a| a.starts_with("--sim."))
            .map(|a| a.to_string())
            .collect()
    };
    let exporter_args: Vec<&str> = exporter["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert_eq!(sim_flags(&args), sim_flags(&exporter_args));
    assert!(args.contains(&"--state.file=/var/lib/crocodial-exporter/crocodial-exporter.db"));
    assert!(args.contains(&"--skip-if-state-exists"));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_crocodial-exporter"))
        .args(["backfill", "--help"])
        .output()
        .expect("backfill --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or(flag);
        assert!(help.contains(flag), "{flag}");
    }
    let output = args
        .iter()
        .find_map(|a| a.strip_prefix("--output="))
        .expect("--output");
    // history-blocks sees the exporter's volume at /history.
    let output = output
        .strip_prefix("/var/lib/crocodial-exporter/")
        .expect("in the exporter's volume");
    let blocks = str_of(
        &compose["services"]["history-blocks"]["command"][0],
        "command",
    );
    let blocks = blocks.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(blocks.contains(&format!(
        "openmetrics --max-block-duration=24h /history/{output} /prometheus"
    )));
    let volumes: Vec<&str> = compose["services"]["history-blocks"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(|v| str_of(v, "volume"))
        .collect();
    assert_eq!(
        volumes,
        ["exporter-state:/history", "prometheus-data:/prometheus"]
    );
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

/// The image's HEALTHCHECK, as Docker runs it (with the image's CROCODIAL_WEB_LISTEN_ADDRESS, the
/// port changed), exits 0 against a running exporter and 1 once it is gone.
#[test]
fn the_image_health_check_works_against_a_running_exporter() {
    let bin = env!("CARGO_BIN_EXE_crocodial-exporter");
    let dockerfile = read("deploy/docker/Dockerfile");
    let image_listen = dockerfile
        .split_whitespace()
        .find_map(|w| w.strip_prefix("CROCODIAL_WEB_LISTEN_ADDRESS="))
        .expect("the image's listen address");
    assert_eq!(image_listen, ":9838");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let check = || {
        let argv = healthcheck_command();
        assert_eq!(argv[0], "/usr/local/bin/crocodial-exporter");
        Command::new(bin)
            .args(&argv[1..])
            .env(
                "CROCODIAL_WEB_LISTEN_ADDRESS",
                image_listen.replace("9838", &port.to_string()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("healthcheck")
            .code()
    };
    let mut exporter = Command::new(bin)
        .args(["--demo", "--state.file=", "--log.level=error"])
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("exporter");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut code = check();
    while code != Some(0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        code = check();
    }
    let _ = exporter.kill();
    let _ = exporter.wait();
    assert_eq!(code, Some(0), "healthy while the exporter runs");
    assert_eq!(check(), Some(1), "unhealthy once it is gone");
}

/// One memory figure for the exporter: the systemd unit's MemoryMax= and the Kubernetes limit.
#[test]
fn one_memory_figure_and_a_task_limit() {
    let unit = read("deploy/systemd/crocodial-exporter.service");
    let setting = |k: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k}= in the unit"))
            .trim()
            .to_string()
    };
    let bytes = |s: &str, units: &[(&str, u64)]| -> u64 {
        let (n, u) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let mult = units
            .iter()
            .find(|(name, _)| *name == u)
            .unwrap_or_else(|| panic!("unit of {s}"))
            .1;
        n.parse::<u64>().expect("number") * mult
    };
    // systemd's K, M and G are powers of 1024, like Kubernetes' Ki, Mi and Gi.
    let systemd = bytes(
        &setting("MemoryMax"),
        &[("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)],
    );
    let deployment = document("deploy/kubernetes/base/deployment.yaml");
    let resources = &deployment["spec"]["template"]["spec"]["containers"][0]["resources"];
    let kubernetes = bytes(
        str_of(&resources["limits"]["memory"], "limit"),
        &[("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)],
    );
    assert_eq!(
        systemd, kubernetes,
        "MemoryMax= and the Kubernetes memory limit differ"
    );
    let request = bytes(
        str_of(&resources["requests"]["memory"], "request"),
        &[("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)],
    );
    assert!(request <= kubernetes);
    // The largest peak docs/development.md *Performance* measures (38.6 MB), with headroom.
    assert!(
        systemd >= 3 * 38_600_000,
        "{systemd} bytes: too little headroom"
    );
    let tasks: u32 = setting("TasksMax").parse().expect("TasksMax is a number");
    assert!((16..=4096).contains(&tasks), "TasksMax={tasks}");
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
    let verify = || {
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&file)
            .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
            .output()
            .expect("systemd-analyze verify");
        let said = String::from_utf8_lossy(&verify.stderr).into_owned();
        assert!(verify.status.success(), "verify: {said}");
        assert_eq!(said.trim(), "", "verify had something to say");
    };
    verify();
    // With the drop-in for many domains beside it, read from the unit's .d directory.
    let drop_in = read("deploy/systemd/crocodial-exporter.service.d/targets.conf");
    assert!(drop_in.contains("--config.file=%d/targets.yml"));
    let at = dir.join("crocodial-exporter.service.d");
    std::fs::create_dir_all(&at).expect("dir");
    std::fs::write(
        at.join("targets.conf"),
        drop_in.replace(
            "/usr/local/bin/crocodial-exporter",
            env!("CARGO_BIN_EXE_crocodial-exporter"),
        ) + "Unknown=ensures the drop-in is read\n",
    )
    .expect("write");
    let read_it = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .expect("systemd-analyze verify");
    assert!(String::from_utf8_lossy(&read_it.stderr).contains("Unknown key 'Unknown'"));
    std::fs::write(
        at.join("targets.conf"),
        drop_in.replace(
            "/usr/local/bin/crocodial-exporter",
            env!("CARGO_BIN_EXE_crocodial-exporter"),
        ),
    )
    .expect("write");
    verify();
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

#[test]
fn operator_durations_and_labels_parse_as_the_crds_do() {
    assert_eq!(duration_ms("30s"), Some(30_000));
    assert_eq!(duration_ms("1h30m"), Some(5_400_000));
    assert_eq!(duration_ms("0"), Some(0));
    assert_eq!(duration_ms("500ms"), Some(500));
    for bad in ["", "30", "s", "30m1h", "1.5m", "10 s", "1m1m"] {
        assert_eq!(duration_ms(bad), None, "{bad:?}");
    }
    assert!(label_key_ok("app.kubernetes.io/instance"));
    assert!(label_key_ok("release"));
    assert!(!label_key_ok("Bad/x"));
    assert!(!label_key_ok("role alert"));
    assert!(label_part_ok(""));
    assert!(!label_part_ok("-x"));
}

/// `kubectl kustomize deploy/kubernetes/overlays/domains-a` (and `-b`): the exporter reads the targets
/// file from the mounted ConfigMap, and each target's password file is a key of the mounted
/// Secret.
#[test]
fn many_domains_mount_the_targets_file_and_a_password_per_target() {
    let Some(r) = renders() else { return };
    for docs in [&r.domains_a, &r.domains_b] {
        many_domains(docs);
    }
}

fn many_domains(docs: &[Value]) {
    let of_kind = |kind: &str, prefix: &str| -> &Value {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("no {kind} {prefix}*"))
    };
    let settings = of_kind("ConfigMap", "crocodial-exporter-domains-");
    let config_file = str_of(&settings["data"]["CROCODIAL_CONFIG_FILE"], "config file");
    let (dir, name) = config_file.rsplit_once('/').expect("a path");
    let targets_map = of_kind("ConfigMap", "crocodial-exporter-targets");
    let secret = of_kind("Secret", "crocodial-exporter-api");
    let deployment = of_kind("Deployment", "crocodial-exporter");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let mounted = |volume_of: &dyn Fn(&Value) -> bool| -> String {
        let volume = pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| volume_of(v))
            .expect("volume");
        let mount = container["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == volume["name"])
            .expect("mount");
        str_of(&mount["mountPath"], "mountPath").to_string()
    };
    assert_eq!(
        mounted(&|v| v["configMap"]["name"] == targets_map["metadata"]["name"]),
        dir
    );
    let secret_dir = mounted(&|v| v["secret"]["secretName"] == secret["metadata"]["name"]);
    let args = container["args"].as_sequence().expect("args");
    assert!(
        args.iter()
            .all(|a| !str_of(a, "arg").starts_with("--api.password-file")),
        "each target names its own password file: {args:?}"
    );
    let targets: Value =
        serde_yaml_ng::from_str(str_of(&targets_map["data"][name], "targets.yml")).expect("yaml");
    let targets = targets["targets"].as_sequence().expect("targets");
    assert_eq!(targets.len(), 2);
    for t in targets {
        let file = str_of(&t["api"]["password_file"], "password_file");
        let (at, key) = file.rsplit_once('/').expect("a path");
        assert_eq!(at, secret_dir, "{file}");
        assert!(secret["data"][key].is_string(), "{key} in the Secret");
    }
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
}

/// docker-compose.targets.yml, on top of the compose project: the exporter reads the targets
/// file it mounts, each target's password is one of its secrets, whose files git ignores, and
/// the simulated history is left out.
#[test]
fn the_compose_targets_variant_names_a_secret_per_target() {
    let base = document("deploy/compose/docker-compose.yml");
    let over = document("deploy/compose/docker-compose.targets.yml");
    let services = over["services"].as_mapping().expect("services");
    for name in services.keys() {
        assert!(
            base["services"].get(name).is_some(),
            "{name:?} overrides a service"
        );
    }
    assert_eq!(over["services"]["history"]["command"][0], "--version");
    let exporter = &over["services"]["exporter"];
    let config = str_of(&exporter["command"][0], "command")
        .strip_prefix("--config.file=")
        .expect("--config.file");
    let mount = format!("./targets.yml:{config}:ro");
    assert!(exporter["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .any(|v| v.as_str() == Some(&mount)));
    let secrets: Vec<&str> = exporter["secrets"]
        .as_sequence()
        .expect("secrets")
        .iter()
        .map(|s| str_of(s, "secret"))
        .collect();
    let targets = document("deploy/compose/targets.yml");
    let targets = targets["targets"].as_sequence().expect("targets");
    assert_eq!(targets.len(), secrets.len());
    for t in targets {
        let file = str_of(&t["api"]["password_file"], "password_file");
        let secret = file
            .strip_prefix("/run/secrets/")
            .expect("a compose secret");
        assert!(secrets.contains(&secret), "{secret}");
        let source = str_of(&over["secrets"][secret]["file"], "file");
        let at = format!("deploy/compose/{}", source.trim_start_matches("./"));
        if Path::new(ROOT).join(".git").exists() {
            let ignored = Command::new("git")
                .args(["check-ignore", "-q", "--no-index", &at])
                .current_dir(ROOT)
                .status()
                .expect("git");
            assert!(ignored.success(), "git does not ignore {at}");
        }
    }
}

/// The rules backfill (docs/backfill.md, which README's "six passes" points to) runs `promtool
/// tsdb create-blocks-from rules` once per level of rules.yml: a rule reading another recorded
/// series needs that series' blocks in place first. The levels are derived here from the rules,
/// so that the docs cannot drift from them.
#[test]
fn the_rules_backfill_runs_a_pass_per_level_of_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/prometheus/rules.yml")).expect("rules");
    let rules: Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let mut recorded: Vec<(String, String)> = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(name) = rule["record"].as_str() {
                let expr = rule["expr"].as_str().expect("expr").to_string();
                recorded.push((name.to_string(), expr));
            }
        }
    }
    // A recorded name read by an expression: the name, not followed by more of a name.
    let reads = |expr: &str, name: &str| {
        expr.match_indices(name).any(|(i, _)| {
            let before = expr[..i].chars().next_back();
            let after = expr[i + name.len()..].chars().next();
            let part =
                |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            !part(before) && !part(after)
        })
    };
    let mut level: std::collections::HashMap<&str, usize> = Default::default();
    // Levels settle in at most as many rounds as there are rules (rules.yml has no cycle).
    for _ in 0..recorded.len() {
        for (name, expr) in &recorded {
            let l = 1 + recorded
                .iter()
                .filter(|(other, _)| other != name && reads(expr, other))
                .map(|(other, _)| level.get(other.as_str()).copied().unwrap_or(1))
                .max()
                .unwrap_or(0);
            level.insert(name, l);
        }
    }
    let passes = level.values().copied().max().expect("recording rules");
    let words = [
        "", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(
        readme.contains(&format!("in {} passes", words[passes.min(9)])),
        "README must say the {passes} passes"
    );
    let docs = std::fs::read_to_string(root.join("docs/backfill.md")).expect("docs/backfill.md");
    let want = format!(
        "for pass in {}; do",
        (1..=passes)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(
        docs.contains(&want),
        "rules.yml has {passes} levels of recording rules: docs/backfill.md must say `{want}`"
    );
}
