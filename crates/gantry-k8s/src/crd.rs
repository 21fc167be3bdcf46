//! The custom resources: [`GPUWorkload`] (namespaced), [`GPUQueue`] and [`GPUNode`] (cluster-scoped),
//! generated from Rust types with `kube::CustomResource` and schemars, and [`crds_yaml`] that prints
//! them as structural CustomResourceDefinitions a real API server accepts.
//!
//! The workload spec reuses the `gantry-core` types field by field ([`Resources`], [`Placement`],
//! [`Duration`], ...), with a Pod template instead of `run`, so [`GPUWorkloadSpec::to_workload_spec`]
//! can hand it to [`WorkloadSpec::validate`] in [`RunMode::Kubernetes`].
//!
//! Schema rules applied by [`structural`] after generation: quantities that are "a string or a number"
//! become `x-kubernetes-int-or-string` (so write fractional CPU as `"500m"` or `"0.5"`, as in Kubernetes);
//! `format`s other than `int32`, `int64`, `float`, `double` and `date-time` are dropped; subschemas are
//! inlined (no `$ref`).

use gantry_core::spec::{
    Duration, Placement, Quota, Resources, RunMode, RunSpec, SpecError, SpotPolicy,
    ValidationContext, WorkloadKind, WorkloadSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Serde default of `replicas`.
fn one() -> i64 {
    1
}

/// Serde default of `preemptible` and `weight`.
fn yes() -> bool {
    true
}

/// Serde default of a queue's `weight`.
fn one_f64() -> f64 {
    1.0
}

/// A free-form object kept as given (`x-kubernetes-preserve-unknown-fields`), for the Pod template.
fn preserve_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Pod template (Kubernetes PodTemplateSpec): containers, volumes, PVC mounts, service account. Gantry adds GPU limits, tolerations, affinity, /dev/shm and scheduling fields.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A GPU workload on Kubernetes: the Gantry workload spec with a Pod template instead of a command.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "GPUWorkload",
    plural = "gpuworkloads",
    namespaced,
    status = "GPUWorkloadStatus",
    shortname = "gw",
    schema = "manual",
    shortname = "gpuw",
    category = "gantry",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Queue", "type": "string", "jsonPath": ".spec.queue"}"#,
    printcolumn = r#"{"name": "GPUs", "type": "string", "jsonPath": ".status.gpus"}"#,
    printcolumn = r#"{"name": "Node", "type": "string", "jsonPath": ".status.node"}"#,
    printcolumn = r#"{"name": "Cost", "type": "string", "jsonPath": ".status.cost.amount"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GPUWorkloadSpec {
    /// What sort of work it is (default `batch`).
    #[serde(default)]
    pub kind: WorkloadKind,
    /// Priority class name; absent = the default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    /// Queue (a GPUQueue name) it is charged to; absent = `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Number of identical replicas (default 1); resources are per replica.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i64,
    /// Replicas that must start together, 1..=replicas (absent = all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub gang_minimum: Option<i64>,
    /// What each replica needs.
    #[serde(default)]
    pub resources: Resources,
    /// Where replicas may and would rather go.
    #[serde(default)]
    pub placement: Placement,
    /// Whether higher-priority work may evict it (default true).
    #[serde(default = "yes")]
    pub preemptible: bool,
    /// Whether it may run on spot capacity (default `never`).
    #[serde(default)]
    pub spot: SpotPolicy,
    /// Longest run before its Pods are stopped (`activeDeadlineSeconds`), e.g. `"2h"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Times failed Pods are recreated (Job `backoffLimit` semantics, 0..=100, default 0).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub retries: i64,
    /// How long the Pods of a finished workload are kept, e.g. `"1h"`; absent = kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_after_finished: Option<Duration>,
    /// Placement strategy override (see `gantry strategies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// The Pod template of every replica.
    #[schemars(schema_with = "preserve_object")]
    pub template: PodTemplateSpec,
}

/// Where a workload is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum WorkloadPhase {
    /// Waiting for admission (queue quota) or for its Pods to be created.
    #[default]
    Pending,
    /// Admitted: Pods created, waiting to be bound or started.
    Admitted,
    /// At least the gang minimum of replicas is running.
    Running,
    /// Every replica succeeded.
    Succeeded,
    /// A replica failed beyond its retries, or the spec is invalid.
    Failed,
}

impl WorkloadPhase {
    /// Whether the workload is finished (succeeded or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, WorkloadPhase::Succeeded | WorkloadPhase::Failed)
    }
}

/// A condition of a workload (Kubernetes convention).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadCondition {
    /// Condition type: `Admitted`, `Scheduled`, `Running`, `Completed`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word saying why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Where one replica is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Replica index.
    pub index: u32,
    /// Pod name.
    pub pod: String,
    /// Pod phase (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Node it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// GPUs the scheduler assigned (`0,1` or `2:500`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<String>,
}

/// Observed state of a GPU workload, written by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GPUWorkloadStatus {
    /// Phase: Pending, Admitted, Running, Succeeded, Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkloadPhase>,
    /// Conditions: Admitted, Scheduled, Running, Completed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<WorkloadCondition>,
    /// GPUs the whole workload asks for, as text (`8`, `0.5`, `2x mig-1g.10gb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<String>,
    /// Nodes the replicas are bound to, comma separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Each replica's Pod, node and GPUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// When the first replica started running (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Why it is in its phase (one CamelCase word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Failed Pods recreated so far (compared with `spec.retries`).
    #[serde(default)]
    pub retries_used: i64,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What its GPU time cost so far (final once it finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<WorkloadCost>,
}

/// The cost of a workload's GPU time: its assigned GPUs (a share or MIG slice charged its fraction)
/// from `startTime` to `completionTime` (or now while it runs), priced by the controller's catalogue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadCost {
    /// GPU-hours held (fractions counted as such), priced or not.
    pub gpu_hours: f64,
    /// Cost of the priced GPU-hours, a decimal string exact to the cent (`"6.00"`); absent when
    /// nothing could be priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// ISO 4217 currency of `amount`.
    pub currency: String,
    /// GPU models it used that have no price (their hours are not in `amount`; never priced at zero).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced_models: Vec<String>,
    /// When this was computed (RFC 3339).
    pub updated_at: String,
}

/// A monthly budget of a queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Amount per calendar month.
    pub monthly: f64,
    /// ISO 4217 currency code (default `USD`).
    #[serde(default = "usd")]
    pub currency: String,
}

/// Serde default of a budget's currency.
fn usd() -> String {
    "USD".to_string()
}

/// A queue workloads are charged to: guaranteed quota, borrowing, cohort, fair-share weight, budget.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "GPUQueue",
    plural = "gpuqueues",
    status = "GPUQueueStatus",
    shortname = "gq",
    schema = "manual",
    category = "gantry",
    printcolumn = r#"{"name": "Cohort", "type": "string", "jsonPath": ".spec.cohort"}"#,
    printcolumn = r#"{"name": "Weight", "type": "number", "jsonPath": ".spec.weight"}"#,
    printcolumn = r#"{"name": "GPUs", "type": "string", "jsonPath": ".spec.guaranteed.gpus"}"#,
    printcolumn = r#"{"name": "Spent", "type": "string", "jsonPath": ".status.spentThisMonth"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GPUQueueSpec {
    /// Queues in the same cohort lend each other unused guaranteed quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// Fair-share weight, more than 0 (default 1).
    #[serde(default = "one_f64")]
    pub weight: f64,
    /// Always available to this queue (absent fields = 0).
    #[serde(default)]
    pub guaranteed: Quota,
    /// Most it may use beyond `guaranteed` (absent = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<Quota>,
    /// Monthly spending budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// Observed state of a queue, written by the controller: the month-to-date spend of its workloads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GPUQueueStatus {
    /// Spend of the queue's workloads this calendar month (UTC), a decimal string exact to the cent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent_this_month: Option<String>,
    /// ISO 4217 currency of `spentThisMonth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The month `spentThisMonth` covers, `YYYY-MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// GPU-hours of the queue's workloads this month, priced or not.
    #[serde(default)]
    pub gpu_hours: f64,
    /// GPU models used this month that have no price (not in `spentThisMonth`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced_models: Vec<String>,
    /// When this was computed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

// Printer columns: the API server prints only the first match of a column's JSONPath, so a count of
// `status.gpus` cannot be a column: `GPUs` is `status.gpuCount` (written by the agent with the list),
// `Unhealthy` the index of the first unhealthy GPU (empty when all are healthy), `Model` GPU 0's model.
/// A node's GPUs as seen by the Gantry agent (status written by the agent, read by the scheduler).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "GPUNode",
    plural = "gpunodes",
    status = "GPUNodeStatus",
    shortname = "gn",
    schema = "manual",
    category = "gantry",
    printcolumn = r#"{"name": "GPUs", "type": "integer", "jsonPath": ".status.gpuCount"}"#,
    printcolumn = r#"{"name": "Model", "type": "string", "jsonPath": ".status.gpus[0].model"}"#,
    printcolumn = r#"{"name": "Unhealthy", "type": "string", "jsonPath": ".status.gpus[?(@.healthy==false)].index"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GPUNodeSpec {
    /// The Kubernetes Node this describes (absent = the object's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// The GPUs of a node, their health and telemetry (written by the agent).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GPUNodeStatus {
    /// One entry per GPU, by index.
    #[serde(default)]
    pub gpus: Vec<GPUDeviceStatus>,
    /// How many GPUs `gpus` lists (the `GPUs` printer column).
    #[serde(default)]
    pub gpu_count: u32,
    /// NVIDIA driver version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// When the agent last wrote this (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Where the data came from: `nvml`, `nvidia-smi`, `simulated`.
    #[serde(default)]
    pub backend: String,
}

/// One GPU of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GPUDeviceStatus {
    /// Device index on the node.
    pub index: u32,
    /// Device UUID (`GPU-...`).
    pub uuid: String,
    /// Model name, e.g. `H100-80GB`.
    pub model: String,
    /// Total memory in MiB.
    pub memory_mib: u64,
    /// False after XID/ECC errors: the scheduler stops placing on it.
    pub healthy: bool,
    /// Why it is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// GPU utilisation, 0..=100 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
    /// Memory in use, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_mib: Option<u64>,
    /// Temperature, degrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    /// Power draw, watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    /// Whether MIG mode is on.
    #[serde(default)]
    pub mig_enabled: bool,
}

/// Most replicas (Pods) one workload may have.
pub const MAX_REPLICAS: i64 = 1000;

impl GPUWorkloadSpec {
    /// The queue it is charged to (`default` when none is named).
    pub fn queue_name(&self) -> &str {
        self.queue.as_deref().unwrap_or("default")
    }

    /// The gang minimum in force (all replicas when absent).
    pub fn gang(&self) -> i64 {
        self.gang_minimum.unwrap_or(self.replicas)
    }

    /// The equivalent core [`WorkloadSpec`] named `name`; `run.image` is the first container's image.
    pub fn to_workload_spec(&self, name: &str) -> WorkloadSpec {
        let image = self
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone());
        WorkloadSpec {
            kind: self.kind,
            priority_class: self.priority_class.clone(),
            queue: self.queue.clone(),
            replicas: self.replicas,
            gang_minimum: self.gang_minimum,
            resources: self.resources.clone(),
            placement: self.placement.clone(),
            preemptible: self.preemptible,
            spot: self.spot,
            timeout: self.timeout.clone(),
            retries: self.retries,
            ttl_after_finished: self.ttl_after_finished.clone(),
            strategy: self.strategy.clone(),
            run: Some(RunSpec {
                image,
                ..RunSpec::default()
            }),
            ..WorkloadSpec::named(name)
        }
    }

    /// Validates it as a Kubernetes workload (no cluster: priority classes are the shipped defaults).
    ///
    /// A problem on `run.image` is reported as `template.spec.containers[0].image`; at most
    /// [`MAX_REPLICAS`] replicas.
    pub fn validate(&self, name: &str) -> Result<(), Vec<SpecError>> {
        let ctx = ValidationContext::new(None, RunMode::Kubernetes);
        let mut result = self.to_workload_spec(name).validate(&ctx);
        if self.replicas > MAX_REPLICAS {
            let e = SpecError::new(
                "replicas",
                format!("at most {MAX_REPLICAS} replicas, got {}", self.replicas),
            );
            match &mut result {
                Err(errors) => errors.push(e),
                Ok(()) => result = Err(vec![e]),
            }
        }
        if let Err(errors) = &mut result {
            for e in errors.iter_mut() {
                if e.path == "run.image" || e.path == "run" {
                    e.path = "template.spec.containers[0].image".to_string();
                }
            }
        }
        if self
            .template
            .spec
            .as_ref()
            .is_none_or(|s| s.containers.is_empty())
        {
            let e = SpecError::new("template.spec.containers", "needs at least one container");
            match &mut result {
                Err(errors) => {
                    errors.retain(|x| x.path != "template.spec.containers[0].image");
                    errors.push(e);
                }
                Ok(()) => result = Err(vec![e]),
            }
        }
        result
    }
}

/// The schema of a custom resource object: `spec` (required) and `status`, made structural.
///
/// The roots use `#[kube(schema = "manual")]` so that [`structural`] runs before kube converts the
/// schema to `JSONSchemaProps` (which refuses a list of types).
fn root_schema<S: JsonSchema, T: JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
    description: &str,
) -> schemars::Schema {
    let spec = generator.subschema_for::<S>();
    let status = generator.subschema_for::<Option<T>>();
    let mut value = serde_json::json!({
        "description": description,
        "type": "object",
        "properties": {"spec": spec, "status": status},
        "required": ["spec"],
    });
    structural(&mut value);
    schemars::Schema::try_from(value).unwrap_or_default()
}

impl JsonSchema for GPUWorkload {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GPUWorkload".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        root_schema::<GPUWorkloadSpec, GPUWorkloadStatus>(
            generator,
            "A GPU workload: replicas of a Pod template with GPU demand, admitted by queue quota and placed by the Gantry scheduler.",
        )
    }
}

impl JsonSchema for GPUQueue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GPUQueue".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        root_schema::<GPUQueueSpec, GPUQueueStatus>(
            generator,
            "A queue GPU workloads are charged to: guaranteed quota, borrowing limit, cohort, weight, budget; its status holds the month-to-date spend.",
        )
    }
}

impl JsonSchema for GPUNode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GPUNode".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        root_schema::<GPUNodeSpec, GPUNodeStatus>(
            generator,
            "The GPUs of one node, their health and telemetry, as reported by the Gantry agent.",
        )
    }
}

/// Formats kept in the CRD schemas; the API server ignores or refuses others.
const KEPT_FORMATS: [&str; 5] = ["int32", "int64", "float", "double", "date-time"];

/// Rewrites a generated schema (in place) into a structural one the API server accepts: "string or
/// number" quantities become `x-kubernetes-int-or-string`, unsupported `format`s are dropped.
pub fn structural(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get("type") {
                let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
                if names.contains(&"string") && names.contains(&"number") {
                    let nullable = names.contains(&"null");
                    map.remove("type");
                    map.insert("x-kubernetes-int-or-string".into(), Value::Bool(true));
                    if nullable {
                        map.insert("nullable".into(), Value::Bool(true));
                    }
                }
            }
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| !KEPT_FORMATS.contains(&f))
            {
                map.remove("format");
            }
            for v in map.values_mut() {
                structural(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(structural),
        _ => {}
    }
}

/// A CRD with its schemas made structural (see [`structural`]).
fn finish(crd: CustomResourceDefinition) -> Result<CustomResourceDefinition, serde_json::Error> {
    let mut value = serde_json::to_value(crd)?;
    structural(&mut value);
    serde_json::from_value(value)
}

/// The three CRDs (GPUWorkload, GPUQueue, GPUNode), structural.
pub fn crds() -> Result<Vec<CustomResourceDefinition>, serde_json::Error> {
    use kube::CustomResourceExt;
    [GPUWorkload::crd(), GPUQueue::crd(), GPUNode::crd()]
        .into_iter()
        .map(finish)
        .collect()
}

/// All three CRDs as one multi-document YAML (`---` separated), as `gantry k8s crds` prints them.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    // Serialising these fixed, generated types cannot fail; an error is still shown, not panicked on.
    let crds = match crds() {
        Ok(c) => c,
        Err(e) => return format!("# error generating CRDs: {e}\n"),
    };
    for crd in crds {
        out.push_str("---\n");
        match serde_saphyr::to_string(&crd) {
            Ok(y) => out.push_str(&y),
            Err(e) => out.push_str(&format!("# error rendering CRD: {e}\n")),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
