//! The Kubernetes manifests of `deploy/kubernetes/`, embedded in the binary, and [`render`] for
//! `gantry k8s render`: the same objects `kubectl kustomize deploy/kubernetes` renders, with the CRDs
//! generated from the Rust types ([`crate::crd::crds_yaml`]) and a chosen namespace and image.
//!
//! The files spell the namespace (`gantry-system`) and the image (`ghcr.io/gantry-dev/gantry:0.1.0`)
//! out in full wherever they occur, so rendering is a checked substitution of those two tokens; the
//! kustomization (`namespace:`, `images:`) says the same for `kubectl kustomize`.

/// The namespace the manifests install into unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "gantry-system";
/// The image the manifests run unless told otherwise.
pub const DEFAULT_IMAGE: &str = "ghcr.io/gantry-dev/gantry:0.1.0";

macro_rules! manifest {
    ($path:literal) => {
        (
            $path,
            include_str!(concat!("../../../deploy/kubernetes/", $path)),
        )
    };
}

/// The files of `deploy/kubernetes/` in the kustomization's order (path, text), without the CRDs.
pub const FILES: &[(&str, &str)] = &[
    manifest!("namespace.yaml"),
    manifest!("priorityclasses.yaml"),
    manifest!("rbac/controller.yaml"),
    manifest!("rbac/scheduler.yaml"),
    manifest!("rbac/agent.yaml"),
    manifest!("prices.yaml"),
    manifest!("controller.yaml"),
    manifest!("scheduler.yaml"),
    manifest!("agent.yaml"),
    manifest!("networkpolicy.yaml"),
];

/// The monitoring files (`deploy/kubernetes/monitoring/`): they need the Prometheus Operator's CRDs.
pub const MONITORING_FILES: &[(&str, &str)] = &[
    manifest!("monitoring/servicemonitor.yaml"),
    manifest!("monitoring/prometheusrule.yaml"),
    manifest!("monitoring/grafana-dashboard.yaml"),
];

/// Why [`render`] refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The namespace is not a DNS-1123 label.
    #[error(
        "invalid namespace {0:?}: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
    )]
    Namespace(String),
    /// The image is not an image reference.
    #[error(
        "invalid image {0:?}: expected a reference such as registry.example.com/gantry:0.1.0 (letters, digits, '.', '_', '-', '/', ':', '@')"
    )]
    Image(String),
}

/// What [`render_with`] renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Namespace of the controller, scheduler and agents.
    pub namespace: String,
    /// Image of all three.
    pub image: String,
    /// Whether to include the ServiceMonitor, PrometheusRule and Grafana dashboard.
    pub monitoring: bool,
    /// Whether to include the CRDs.
    pub crds: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            namespace: DEFAULT_NAMESPACE.to_string(),
            image: DEFAULT_IMAGE.to_string(),
            monitoring: true,
            crds: true,
        }
    }
}

/// Every manifest (CRDs, namespace, RBAC, workloads, policies, monitoring) as one multi-document YAML
/// for `namespace` and `image`.
pub fn render(namespace: &str, image: &str) -> Result<String, ManifestError> {
    render_with(&RenderOptions {
        namespace: namespace.to_string(),
        image: image.to_string(),
        ..RenderOptions::default()
    })
}

/// The manifests as [`RenderOptions`] say, as one multi-document YAML (`---` between documents).
pub fn render_with(opts: &RenderOptions) -> Result<String, ManifestError> {
    if !is_dns_label(&opts.namespace) {
        return Err(ManifestError::Namespace(opts.namespace.clone()));
    }
    if !is_image_ref(&opts.image) {
        return Err(ManifestError::Image(opts.image.clone()));
    }
    let mut out = String::new();
    if opts.crds {
        out.push_str(&crate::crd::crds_yaml());
    }
    let files = FILES.iter().chain(if opts.monitoring {
        MONITORING_FILES
    } else {
        &[]
    });
    for (path, text) in files {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("---\n# Source: deploy/kubernetes/{path}\n"));
        let text = text
            .replace(DEFAULT_IMAGE, &opts.image)
            .replace(DEFAULT_NAMESPACE, &opts.namespace);
        out.push_str(text.trim_start_matches("---\n"));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// A DNS-1123 label: 1..=63 of `[a-z0-9-]`, alphanumeric at both ends.
fn is_dns_label(s: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    s.len() <= 63
        && ok_end(s.chars().next())
        && ok_end(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An image reference's characters, alphanumeric first (nothing YAML could read as syntax).
fn is_image_ref(s: &str) -> bool {
    s.len() <= 512
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn docs(yaml: &str) -> Vec<Value> {
        serde_saphyr::from_multiple::<Value>(yaml)
            .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}"))
            .into_iter()
            .filter(|d| !d.is_null())
            .collect()
    }

    const CLUSTER_SCOPED: &[&str] = &[
        "CustomResourceDefinition",
        "Namespace",
        "PriorityClass",
        "ClusterRole",
        "ClusterRoleBinding",
    ];

    #[test]
    fn renders_every_object_into_the_chosen_namespace_and_image() {
        let yaml = render("ml-platform", "registry.example.com/gantry@sha256:abc").unwrap();
        assert!(!yaml.contains("gantry-system"), "{yaml}");
        assert!(!yaml.contains(DEFAULT_IMAGE));
        let docs = docs(&yaml);
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds.len(), docs.len(), "every document has a kind");
        for kind in [
            "CustomResourceDefinition",
            "Namespace",
            "PriorityClass",
            "ServiceAccount",
            "ClusterRole",
            "Role",
            "Deployment",
            "DaemonSet",
            "Service",
            "NetworkPolicy",
            "ServiceMonitor",
            "PrometheusRule",
            "ConfigMap",
        ] {
            assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
        }
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "CustomResourceDefinition")
                .count(),
            3
        );
        for d in &docs {
            let kind = d["kind"].as_str().unwrap_or_default();
            let ns = &d["metadata"]["namespace"];
            if CLUSTER_SCOPED.contains(&kind) {
                assert!(ns.is_null(), "{kind} is cluster-scoped");
            } else {
                assert_eq!(ns, "ml-platform", "{kind} {}", d["metadata"]["name"]);
            }
            for s in d["subjects"].as_array().into_iter().flatten() {
                assert_eq!(s["namespace"], "ml-platform");
            }
            let pod = &d["spec"]["template"]["spec"];
            for c in pod["containers"].as_array().into_iter().flatten() {
                assert_eq!(c["image"], "registry.example.com/gantry@sha256:abc");
                assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
                assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
                assert!(c["resources"]["limits"].is_object());
                assert!(c["livenessProbe"].is_object() && c["readinessProbe"].is_object());
            }
            if pod.is_object() {
                assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
                assert_eq!(
                    pod["securityContext"]["seccompProfile"]["type"],
                    "RuntimeDefault"
                );
            }
        }
        // The prices ConfigMap parses as a prices file and the controller may read it.
        let prices = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "gantry-prices")
            .unwrap_or(&Value::Null);
        let text = prices["data"][crate::prices::DEFAULT_KEY]
            .as_str()
            .unwrap_or_default();
        assert!(
            gantry_cost::Catalogue::with_overrides(text).is_ok(),
            "{text}"
        );
        assert!(
            docs.iter().any(|d| d["kind"] == "Role"
                && d["metadata"]["namespace"] == "ml-platform"
                && d["rules"][0]["resources"][0] == "configmaps"),
            "the controller may read ConfigMaps of its namespace"
        );
        let agent = docs
            .iter()
            .find(|d| d["kind"] == "DaemonSet")
            .unwrap_or(&Value::Null);
        let env = &agent["spec"]["template"]["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "NODE_NAME");
        assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    }

    #[test]
    fn defaults_and_options() {
        let all = render(DEFAULT_NAMESPACE, DEFAULT_IMAGE).unwrap();
        assert!(all.contains("namespace: gantry-system"));
        let lean = render_with(&RenderOptions {
            monitoring: false,
            crds: false,
            ..RenderOptions::default()
        })
        .unwrap();
        assert!(!lean.contains("kind: ServiceMonitor"));
        assert!(!lean.contains("kind: CustomResourceDefinition"));
        assert!(lean.contains("kind: DaemonSet"));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(
            render("Gantry", DEFAULT_IMAGE),
            Err(ManifestError::Namespace("Gantry".into()))
        );
        assert!(render("-x", DEFAULT_IMAGE).is_err());
        assert!(render(&"a".repeat(64), DEFAULT_IMAGE).is_err());
        assert!(render("", DEFAULT_IMAGE).is_err());
        assert_eq!(
            render("ok", "img\n  evil: 1"),
            Err(ManifestError::Image("img\n  evil: 1".into()))
        );
        assert!(render("ok", "*anchor").is_err());
        assert!(render("ok", "").is_err());
    }

    /// The example GPUWorkloads and GPUQueue parse as the CRD types (unknown fields refused where the
    /// spec types refuse them) and every workload passes the spec's validation.
    #[test]
    fn examples_are_valid_custom_resources() {
        let examples = [
            include_str!("../../../deploy/kubernetes/examples/training.yaml"),
            include_str!("../../../deploy/kubernetes/examples/inference.yaml"),
            include_str!("../../../deploy/kubernetes/examples/asset-generation.yaml"),
        ];
        let mut kinds = Vec::new();
        for text in examples {
            for doc in docs(text) {
                let w: crate::crd::GPUWorkload = serde_json::from_value(doc)
                    .unwrap_or_else(|e| panic!("example does not parse as a GPUWorkload: {e}"));
                let name = w.metadata.name.clone().unwrap_or_default();
                if let Err(errors) = w.spec.validate(&name) {
                    let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    panic!("example {name} is invalid: {errors:?}");
                }
                kinds.push(w.spec.kind);
            }
        }
        assert_eq!(kinds.len(), 3);
        let queue = include_str!("../../../deploy/kubernetes/examples/gpuqueue.yaml");
        for doc in docs(queue) {
            let q: Result<crate::crd::GPUQueue, _> = serde_json::from_value(doc);
            assert!(q.is_ok(), "{q:?}");
        }
    }

    /// `deploy/kubernetes/crds.yaml` is generated: it must equal `crds_yaml()`. Regenerate with
    /// `GANTRY_BLESS=1 cargo test -p gantry-k8s --lib manifests`.
    #[test]
    fn crds_file_is_generated_from_the_types() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/kubernetes/crds.yaml"
        );
        let want = format!(
            "# Generated from crates/gantry-k8s/src/crd.rs (`gantry k8s crds`); do not edit.\n\
             # Regenerate: GANTRY_BLESS=1 cargo test -p gantry-k8s --lib manifests\n{}",
            crate::crd::crds_yaml()
        );
        if std::env::var_os("GANTRY_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "{path} is stale; regenerate with GANTRY_BLESS=1 cargo test -p gantry-k8s --lib manifests"
        );
    }
}
