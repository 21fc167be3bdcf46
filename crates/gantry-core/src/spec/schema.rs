//! JSON Schemas of the specs, generated from the types (feature `schema`).

use super::{ClusterSpec, WorkloadSpec};

/// The JSON Schema of one workload ([`WorkloadSpec`]); a workloads file is a list of these.
pub fn workload_schema() -> schemars::Schema {
    schemars::schema_for!(WorkloadSpec)
}

/// The JSON Schema of a cluster file ([`ClusterSpec`]).
pub fn cluster_schema() -> schemars::Schema {
    schemars::schema_for!(ClusterSpec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(schema: &schemars::Schema) -> Vec<String> {
        let value = schema.as_value();
        let mut keys: Vec<String> = value["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    #[test]
    fn workload_schema_names_the_top_level_fields() {
        let s = workload_schema();
        let props = properties(&s);
        for field in [
            "name",
            "kind",
            "priorityClass",
            "queue",
            "replicas",
            "gangMinimum",
            "resources",
            "placement",
            "preemptible",
            "spot",
            "timeout",
            "retries",
            "ttlAfterFinished",
            "strategy",
            "run",
        ] {
            assert!(props.iter().any(|p| p == field), "{field} in {props:?}");
        }
        assert_eq!(props.len(), 15);
        let v = s.as_value();
        assert_eq!(v["additionalProperties"].as_bool(), Some(false));
        let required: Vec<&str> = v["required"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(required, ["name"]);
    }

    #[test]
    fn cluster_schema_names_the_top_level_fields() {
        let s = cluster_schema();
        assert_eq!(properties(&s), ["nodes", "priorityClasses", "queues"]);
    }
}
