//! `gantry validate` and `gantry schema`: read workload and cluster YAML, report every problem, print the
//! JSON Schemas. YAML lives here, not in gantry-core, which stays free of file formats.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use gantry_core::spec::{self, ClusterSpec, RunMode, ValidationContext, WorkloadSpec};
use serde::de::DeserializeOwned;
use serde_saphyr::MessageFormatter;
use std::path::{Path, PathBuf};

/// Options of `gantry validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Workloads file: a YAML list of workload specs.
    #[arg(long, value_name = "FILE", required_unless_present = "cluster")]
    workloads: Option<PathBuf>,
    /// Cluster file (nodes, priority classes, queues); workloads are also checked against it.
    #[arg(long, value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// Where the workloads will run: `standalone` needs run.command, `kubernetes` run.image.
    #[arg(long, value_enum, default_value_t = Mode::Standalone)]
    mode: Mode,
}

/// `--mode` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Standalone,
    Kubernetes,
    Simulation,
}

impl From<Mode> for RunMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Standalone => RunMode::Standalone,
            Mode::Kubernetes => RunMode::Kubernetes,
            Mode::Simulation => RunMode::Simulation,
        }
    }
}

/// Options of `gantry schema`.
#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Which schema: one workload (a workloads file is a list of these) or a cluster file.
    #[arg(value_enum, default_value_t = SchemaKind::Workload)]
    kind: SchemaKind,
}

/// The schemas `gantry schema` prints.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum SchemaKind {
    Workload,
    Cluster,
}

/// Runs `gantry schema`: the JSON Schema, pretty-printed, on stdout.
pub fn schema(args: SchemaArgs) -> anyhow::Result<()> {
    let schema = match args.kind {
        SchemaKind::Workload => spec::schema::workload_schema(),
        SchemaKind::Cluster => spec::schema::cluster_schema(),
    };
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}

/// Runs `gantry validate`: prints every problem as `FILE: path.to.field: problem`; fails if there is any.
pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    let mut problems = 0usize;

    let cluster: Option<ClusterSpec> = match &args.cluster {
        None => None,
        Some(path) => match read_yaml::<ClusterSpec>(path)? {
            Err(message) => {
                println!("{message}");
                problems += 1;
                None
            }
            Ok(c) => {
                match c.validate() {
                    Ok(()) => println!(
                        "{}: ok ({} nodes, {} queues, {} priority classes)",
                        path.display(),
                        c.nodes.len(),
                        c.queues.len(),
                        c.effective_priority_classes().len()
                    ),
                    Err(errors) => problems += report(path, &errors),
                }
                Some(c)
            }
        },
    };

    if let Some(path) = &args.workloads {
        match read_yaml::<Vec<WorkloadSpec>>(path)? {
            Err(message) => {
                println!("{message}");
                problems += 1;
            }
            Ok(workloads) => {
                let ctx = ValidationContext::new(cluster.as_ref(), args.mode.into());
                match spec::validate_workloads(&workloads, &ctx) {
                    Ok(()) => println!("{}: ok ({} workloads)", path.display(), workloads.len()),
                    Err(errors) => problems += report(path, &errors),
                }
            }
        }
    }

    if problems > 0 {
        bail!(
            "{problems} problem{} found",
            if problems == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Prints each problem as `FILE: path.to.field: problem`; returns how many there were.
fn report(file: &Path, errors: &[spec::SpecError]) -> usize {
    for e in errors {
        println!("{}: {}: {}", file.display(), e.path, e.problem);
    }
    errors.len()
}

/// Reads and parses a YAML file. `Err` of the outer result: the file cannot be read. `Err` of the inner:
/// a syntax, type or unknown-field error, rendered as `FILE:LINE:COL: path: message` and a snippet.
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Result<T, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse_yaml(&path.display().to_string(), &text))
}

/// Parses YAML text from `file` (a name for messages); see [`read_yaml`].
pub fn parse_yaml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, String> {
    let mut field: Option<String> = None;
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            field = Some(e.path().to_string());
            e.into_inner()
        })
    });
    let err = match parsed {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // The path of the field being read when it failed ("?" segments are unknown positions).
    let field = field
        .map(|f| {
            f.split('.')
                .take_while(|s| !s.starts_with('?'))
                .collect::<Vec<_>>()
                .join(".")
        })
        .filter(|f| !f.is_empty() && f != ".");
    let message = serde_saphyr::DefaultMessageFormatter.format_message(err.without_snippet());
    let place = match err.location() {
        Some(l) => format!("{file}:{}:{}", l.line(), l.column()),
        None => file.to_string(),
    };
    let mut out = match field {
        Some(f) => format!("{place}: {f}: {message}"),
        None => format!("{place}: {message}"),
    };
    // The source snippet, without the renderer's own first line (it repeats the message).
    let rendered =
        err.render_with_options(serde_saphyr::render_options! { source_name: Some(file) });
    for line in rendered.lines().skip(1) {
        out.push('\n');
        out.push_str(line);
    }
    Err(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_name_the_line_and_field() {
        let e =
            parse_yaml::<Vec<WorkloadSpec>>("w.yaml", "- name: a\n  resourcez: {}\n").unwrap_err();
        assert!(
            e.starts_with("w.yaml:2:3: [0].resourcez: unknown field `resourcez`"),
            "{e}"
        );
        let e = parse_yaml::<Vec<WorkloadSpec>>(
            "w.yaml",
            "- name: a\n- name: b\n  resources:\n    gpu:\n      count: two\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("w.yaml:5:14: [1].resources.gpu.count: "),
            "{e}"
        );
        assert!(e.contains("count: two"), "the snippet shows the line: {e}");
        let e =
            parse_yaml::<Vec<WorkloadSpec>>("w.yaml", "- name: a\n  kind: {x: [\n").unwrap_err();
        assert!(e.starts_with("w.yaml:"), "{e}");
        let e =
            parse_yaml::<ClusterSpec>("c.yaml", "nodes:\n  - name: n\n    cpu: [1]\n").unwrap_err();
        assert!(
            e.starts_with("c.yaml:3:5: nodes[0].cpu: invalid type: sequence"),
            "{e}"
        );
    }

    #[test]
    fn yaml_round_trips() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/workloads.yaml"
        ))
        .unwrap();
        let workloads: Vec<WorkloadSpec> = parse_yaml("workloads.yaml", &text).unwrap();
        let again = serde_saphyr::to_string(&workloads).unwrap();
        let back: Vec<WorkloadSpec> = parse_yaml("again.yaml", &again).unwrap();
        assert_eq!(workloads, back);
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/cluster.yaml"
        ))
        .unwrap();
        let cluster: ClusterSpec = parse_yaml("cluster.yaml", &text).unwrap();
        let again = serde_saphyr::to_string(&cluster).unwrap();
        let back: ClusterSpec = parse_yaml("again.yaml", &again).unwrap();
        assert_eq!(cluster, back);
    }
}
