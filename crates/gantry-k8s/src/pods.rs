//! Pods of a [`GPUWorkload`]: one per replica, built purely from the workload (no API calls).
//!
//! Each Pod is the workload's template plus what Gantry owns: the labels and annotations of
//! [`keys`](crate::keys) the scheduler reads, `schedulerName: gantry`, `restartPolicy: Never`, the
//! priority class, `activeDeadlineSeconds` from `timeout`, GPU tolerations and the spec's, node selector
//! and node affinity, a memory-backed `/dev/shm`, and an owner reference to the workload. The first
//! container is the main one: it gets the CPU/memory requests and limits and the GPU resource
//! (`nvidia.com/gpu: <count>`, or `nvidia.com/mig-<profile>: 1`; a GPU share gets no device-plugin
//! resource, only the `gantry.dev/gpu-share` annotation). Every container mounts `/dev/shm`.

use crate::crd::{GPUWorkload, MAX_REPLICAS};
use crate::keys;
use gantry_core::spec::{LabelExpression, Toleration as SpecToleration, TolerationOperator};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EmptyDirVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PodSpec, PreferredSchedulingTerm, ResourceRequirements, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// Name of the `/dev/shm` volume Gantry adds.
pub const SHM_VOLUME: &str = "gantry-dshm";

/// Why Pods could not be built from a workload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    /// The workload has no name.
    #[error("the workload has no metadata.name")]
    NoName,
    /// The workload has no uid (it was not read from the API server), so no owner reference.
    #[error("the workload {0} has no metadata.uid: read it from the API server first")]
    NoUid(String),
    /// More replicas than [`MAX_REPLICAS`].
    #[error("replicas: at most {MAX_REPLICAS}, got {0}")]
    TooManyReplicas(i64),
    /// The template has no container.
    #[error("template.spec.containers: needs at least one container")]
    NoContainers,
    /// A quantity or duration in the spec is unreadable.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field's path in the spec.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// A Kubernetes quantity for `milli` thousandths of a core (`"4"` or `"500m"`).
pub fn cpu_quantity(milli: u64) -> Quantity {
    if milli.is_multiple_of(1000) {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// A Kubernetes quantity for `mib` MiB (`"64Gi"` or `"500Mi"`).
pub fn memory_quantity(mib: u64) -> Quantity {
    if mib.is_multiple_of(1024) && mib > 0 {
        Quantity(format!("{}Gi", mib / 1024))
    } else {
        Quantity(format!("{mib}Mi"))
    }
}

/// The name of replica `index`'s Pod: `<workload>-<index>`.
pub fn pod_name(workload: &str, index: i64) -> String {
    format!("{workload}-{index}")
}

/// The label selector of a workload's Pods: `gantry.dev/workload=<name>`.
pub fn selector(workload: &str) -> String {
    format!("{}={workload}", keys::WORKLOAD)
}

/// One Pod per replica of `workload`, in replica order; `priority_value` goes in the priority annotation.
pub fn pods_for(workload: &GPUWorkload, priority_value: i64) -> Result<Vec<Pod>, PodError> {
    if workload.spec.replicas > MAX_REPLICAS {
        return Err(PodError::TooManyReplicas(workload.spec.replicas));
    }
    (0..workload.spec.replicas.max(0))
        .map(|i| pod_for(workload, priority_value, i))
        .collect()
}

/// The Pod of replica `index` (see [`pods_for`]).
pub fn pod_for(workload: &GPUWorkload, priority_value: i64, index: i64) -> Result<Pod, PodError> {
    let name = workload.metadata.name.clone().ok_or(PodError::NoName)?;
    let owner = workload
        .controller_owner_ref(&())
        .ok_or_else(|| PodError::NoUid(name.clone()))?;
    let spec = &workload.spec;
    let template = &spec.template;

    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.name = Some(pod_name(&name, index));
    metadata.namespace = workload.namespace();
    metadata.generate_name = None;
    metadata.owner_references = Some(vec![owner]);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(keys::WORKLOAD.to_string(), name.clone());
    labels.insert(keys::REPLICA.to_string(), index.to_string());
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(keys::GANG_MINIMUM.to_string(), spec.gang().to_string());
    annotations.insert(keys::QUEUE.to_string(), spec.queue_name().to_string());
    annotations.insert(keys::PRIORITY.to_string(), priority_value.to_string());
    let gpu = spec.resources.gpu.as_ref();
    if let Some(share) = gpu.and_then(|g| g.share) {
        annotations.insert(keys::GPU_SHARE.to_string(), share.to_string());
    }
    if let Some(g) = gpu.filter(|g| !g.models.is_empty()) {
        annotations.insert(keys::GPU_MODELS.to_string(), g.models.join(","));
    }
    if let Some(s) = &spec.strategy {
        annotations.insert(keys::STRATEGY.to_string(), s.clone());
    }

    let mut pod_spec: PodSpec = template.spec.clone().unwrap_or_default();
    if pod_spec.containers.is_empty() {
        return Err(PodError::NoContainers);
    }
    pod_spec.scheduler_name = Some(keys::SCHEDULER_NAME.to_string());
    pod_spec.restart_policy = Some("Never".to_string());
    if let Some(pc) = &spec.priority_class {
        pod_spec.priority_class_name = Some(pc.clone());
    }
    if let Some(t) = &spec.timeout {
        let secs = t.seconds().map_err(|e| invalid("timeout", e))?;
        pod_spec.active_deadline_seconds = Some(i64::try_from(secs).unwrap_or(i64::MAX));
    }

    // Tolerations: the template's, the GPU taint when GPUs are asked for, then the spec's.
    let tolerations = pod_spec.tolerations.get_or_insert_with(Vec::new);
    if gpu.is_some() {
        push_new(
            tolerations,
            Toleration {
                key: Some(keys::NVIDIA_GPU.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoSchedule".to_string()),
                ..Toleration::default()
            },
        );
    }
    for t in &spec.placement.tolerations {
        push_new(tolerations, toleration(t));
    }
    if tolerations.is_empty() {
        pod_spec.tolerations = None;
    }

    if !spec.placement.node_selector.is_empty() {
        let sel = pod_spec.node_selector.get_or_insert_with(BTreeMap::new);
        sel.extend(spec.placement.node_selector.clone());
    }
    add_node_affinity(&mut pod_spec, &spec.placement.affinity);

    // /dev/shm: a memory-backed emptyDir, sized from `resources.shm`.
    let shm = spec
        .resources
        .shm
        .as_ref()
        .map(|q| q.mib().map_err(|e| invalid("resources.shm", e)))
        .transpose()?;
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == SHM_VOLUME) {
        volumes.push(Volume {
            name: SHM_VOLUME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_string()),
                size_limit: shm.map(memory_quantity),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    for c in &mut pod_spec.containers {
        mount_shm(c);
    }

    // Resources of the main container.
    let mut amounts: BTreeMap<String, Quantity> = BTreeMap::new();
    if let Some(cpu) = &spec.resources.cpu {
        let milli = cpu.milli().map_err(|e| invalid("resources.cpu", e))?;
        amounts.insert("cpu".to_string(), cpu_quantity(milli));
    }
    if let Some(mem) = &spec.resources.memory {
        let mib = mem.mib().map_err(|e| invalid("resources.memory", e))?;
        amounts.insert("memory".to_string(), memory_quantity(mib));
    }
    let mut gpu_limits: BTreeMap<String, Quantity> = BTreeMap::new();
    if let Some(g) = gpu {
        if let Some(count) = g.count {
            gpu_limits.insert(keys::NVIDIA_GPU.to_string(), Quantity(count.to_string()));
        } else if let Some(profile) = &g.mig {
            gpu_limits.insert(
                format!("{}{profile}", keys::NVIDIA_MIG_PREFIX),
                Quantity("1".to_string()),
            );
        }
    }
    if let Some(main) = pod_spec.containers.first_mut()
        && !(amounts.is_empty() && gpu_limits.is_empty())
    {
        let res = main
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        // Extended resources need requests equal to limits; CPU and memory are Guaranteed QoS.
        let requests = res.requests.get_or_insert_with(BTreeMap::new);
        requests.extend(amounts.clone());
        requests.extend(gpu_limits.clone());
        let limits = res.limits.get_or_insert_with(BTreeMap::new);
        limits.extend(amounts);
        limits.extend(gpu_limits);
    }

    Ok(Pod {
        metadata,
        spec: Some(pod_spec),
        status: None,
    })
}

/// A [`PodError::Invalid`] at `field`.
fn invalid(field: &'static str, e: impl std::fmt::Display) -> PodError {
    PodError::Invalid {
        field,
        problem: e.to_string(),
    }
}

/// Appends `t` unless an equal toleration is there.
fn push_new(list: &mut Vec<Toleration>, t: Toleration) {
    if !list.contains(&t) {
        list.push(t);
    }
}

/// A spec toleration as a Kubernetes one.
fn toleration(t: &SpecToleration) -> Toleration {
    Toleration {
        key: (!t.key.is_empty()).then(|| t.key.clone()),
        operator: Some(
            match t.operator {
                TolerationOperator::Equal => "Equal",
                TolerationOperator::Exists => "Exists",
            }
            .to_string(),
        ),
        value: t
            .value
            .clone()
            .filter(|_| t.operator == TolerationOperator::Equal),
        effect: t.effect.map(|e| format!("{e:?}")),
        toleration_seconds: None,
    }
}

/// A label expression as a node selector requirement.
fn requirement(e: &LabelExpression) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: e.key.clone(),
        operator: format!("{:?}", e.operator),
        values: (!e.values.is_empty()).then(|| e.values.clone()),
    }
}

/// Adds the spec's required and preferred expressions to the Pod's node affinity; required ones are
/// ANDed into every existing required term of the template (or form the one term).
fn add_node_affinity(pod: &mut PodSpec, affinity: &gantry_core::spec::Affinity) {
    if affinity.required.is_empty() && affinity.preferred.is_empty() {
        return;
    }
    let node = pod
        .affinity
        .get_or_insert_with(Affinity::default)
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    if !affinity.required.is_empty() {
        let required: Vec<NodeSelectorRequirement> =
            affinity.required.iter().map(requirement).collect();
        let sel = node
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            });
        if sel.node_selector_terms.is_empty() {
            sel.node_selector_terms.push(NodeSelectorTerm::default());
        }
        for term in &mut sel.node_selector_terms {
            term.match_expressions
                .get_or_insert_with(Vec::new)
                .extend(required.iter().cloned());
        }
    }
    if !affinity.preferred.is_empty() {
        let preferred = node
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new);
        for p in &affinity.preferred {
            preferred.push(PreferredSchedulingTerm {
                weight: i32::try_from(p.weight).unwrap_or(100),
                preference: NodeSelectorTerm {
                    match_expressions: Some(p.match_expressions.iter().map(requirement).collect()),
                    match_fields: None,
                },
            });
        }
    }
}

/// Mounts the `/dev/shm` volume in `c` unless something is mounted there already.
fn mount_shm(c: &mut Container) {
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    if !mounts.iter().any(|m| m.mount_path == "/dev/shm") {
        mounts.push(VolumeMount {
            name: SHM_VOLUME.to_string(),
            mount_path: "/dev/shm".to_string(),
            ..VolumeMount::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GPUWorkloadSpec;

    fn workload(yaml: &str) -> GPUWorkload {
        let spec: GPUWorkloadSpec = serde_saphyr::from_str(yaml).expect("spec");
        let mut w = GPUWorkload::new("job", spec);
        w.metadata.namespace = Some("ml".into());
        w.metadata.uid = Some("uid-1".into());
        w
    }

    const BASE: &str = "template: {spec: {containers: [{name: main, image: busybox}]}}\n";

    #[test]
    fn quantities_are_kubernetes_quantities() {
        assert_eq!(cpu_quantity(4000).0, "4");
        assert_eq!(cpu_quantity(500).0, "500m");
        assert_eq!(memory_quantity(65536).0, "64Gi");
        assert_eq!(memory_quantity(500).0, "500Mi");
    }

    #[test]
    fn one_pod_per_replica_with_names_and_labels() {
        let w = workload(&format!("replicas: 3\n{BASE}"));
        let pods = pods_for(&w, 7).expect("pods");
        let names: Vec<_> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["job-0", "job-1", "job-2"]);
        assert_eq!(pods[2].labels()[keys::REPLICA], "2");
        assert_eq!(pods[0].annotations()[keys::GANG_MINIMUM], "3");
        assert_eq!(pods[0].annotations()[keys::PRIORITY], "7");
        assert_eq!(pods[0].annotations()[keys::QUEUE], "default");
    }

    #[test]
    fn cpu_only_pod_has_no_gpu_toleration() {
        let w = workload(BASE);
        let pod = &pods_for(&w, 0).expect("pods")[0];
        let spec = pod.spec.as_ref().expect("spec");
        assert!(spec.tolerations.is_none());
        assert!(spec.containers[0].resources.is_none());
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        let mut w = workload(BASE);
        w.metadata.uid = None;
        assert_eq!(pods_for(&w, 0), Err(PodError::NoUid("job".into())));
        let w = workload("resources: {cpu: lots}\ntemplate: {spec: {containers: [{name: m}]}}\n");
        assert!(matches!(
            pods_for(&w, 0),
            Err(PodError::Invalid {
                field: "resources.cpu",
                ..
            })
        ));
        let w = workload("template: {}\n");
        assert_eq!(pods_for(&w, 0), Err(PodError::NoContainers));
    }

    #[test]
    fn template_affinity_terms_get_required_expressions() {
        let w = workload(
            r#"
placement:
  affinity:
    required: [{key: zone, operator: In, values: [a]}]
template:
  spec:
    containers: [{name: m, image: x}]
    affinity:
      nodeAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          nodeSelectorTerms:
          - matchExpressions: [{key: disk, operator: Exists}]
          - matchExpressions: [{key: ssd, operator: Exists}]
"#,
        );
        let pod = &pods_for(&w, 0).expect("pods")[0];
        let terms = &pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .expect("required")
            .node_selector_terms;
        assert_eq!(terms.len(), 2);
        for t in terms {
            let keys: Vec<_> = t
                .match_expressions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|e| e.key.as_str())
                .collect();
            assert_eq!(keys.last(), Some(&"zone"));
        }
    }
}
