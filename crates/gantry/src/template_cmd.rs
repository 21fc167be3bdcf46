//! `gantry template`: a workload spec to start from, by kind or from a sentence.

use clap::{Args, ValueEnum};
use gantry_core::spec::WorkloadKind;
use gantry_core::spec::template::template;

/// Options of `gantry template`.
#[derive(Args, Debug)]
pub struct TemplateArgs {
    /// The kind of work.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// A description such as "fine-tune a 7 billion parameter model on 2 GPUs".
    #[arg(long, value_name = "TEXT")]
    from_description: Option<String>,
}

/// `--kind` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Training,
    Inference,
    AssetGeneration,
    Batch,
    Interactive,
}

impl From<Kind> for WorkloadKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Training => WorkloadKind::Training,
            Kind::Inference => WorkloadKind::Inference,
            Kind::AssetGeneration => WorkloadKind::AssetGeneration,
            Kind::Batch => WorkloadKind::Batch,
            Kind::Interactive => WorkloadKind::Interactive,
        }
    }
}

/// Runs `gantry template`: YAML on stdout, each decision as a comment.
pub fn run(args: TemplateArgs) -> anyhow::Result<()> {
    let t = template(args.kind.map(Into::into), args.from_description.as_deref());
    for r in &t.reasons {
        println!("# {r}");
    }
    print!("{}", serde_saphyr::to_string(&t.spec)?);
    Ok(())
}
