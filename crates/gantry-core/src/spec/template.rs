//! `gantry template`: a sensible workload spec from a kind or a sentence such as
//! "fine-tune a 7 billion parameter model on 2 GPUs".
//!
//! The rules, in order (each applied rule is reported back as a reason):
//! 1. **Kind** from keywords: train/fine-tune/LoRA/pretrain -> `training`; serve/inference/chat/endpoint
//!    -> `inference`; image/video/render/asset/texture/diffusion -> `asset-generation`;
//!    notebook/jupyter/interactive/debug -> `interactive`; otherwise `batch` (or the `--kind` given).
//! 2. **Model size** from "7 billion", "7B", "1.3b", "350M", "70 billion parameters".
//! 3. **GPU model** from a name in the text (H100, H200, A100, L40S, L4, A10, T4, V100); its memory
//!    per GPU (A100 80 GB unless "40gb" is written); default 80 GB.
//! 4. **GPU memory needed**, P = billions of parameters: inference 2.4 P GiB (fp16 weights + 20 % for
//!    the KV cache); LoRA/QLoRA fine-tuning 2.6 P GiB (1.0 P for QLoRA's 4-bit weights); full
//!    fine-tuning and training 18 P GiB (fp16 weights and gradients, fp32 Adam states, activations).
//! 5. **GPUs**: an explicit count ("on 2 GPUs", "8x H100") wins (a note warns if it is too few);
//!    otherwise ceil(need / memory per GPU). Inference needing under half a GPU asks a `share`
//!    (milli, rounded up to 50) with that GPU memory instead of a whole GPU.
//! 6. **Host**: CPU 8 cores per GPU for training, 4 otherwise; memory 2x the GPU memory needed
//!    (at least 16 GiB); shared memory 8 GiB per GPU for training (data loaders).
//! 7. **Priority class** by kind: training -> `high-priority-training`, inference ->
//!    `medium-priority-inference`, others -> `low-priority-batch`; training gets retries 2 and
//!    is not preemptible; everything gets `ttlAfterFinished: 7d`.

use super::units::{Duration, MemoryQuantity, MilliQuantity};
use super::workload::{GpuRequest, Resources, RunSpec, WorkloadKind, WorkloadSpec};

/// A generated spec and why each value was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The spec (its `run.command` is a placeholder to edit).
    pub spec: WorkloadSpec,
    /// One line per rule that decided something.
    pub reasons: Vec<String>,
}

const GPU_MODELS: &[(&str, &str, u64)] = &[
    ("h200", "H200-141GB", 141),
    ("h100", "H100-80GB", 80),
    ("a100", "A100-80GB", 80),
    ("l40s", "L40S-48GB", 48),
    ("l4", "L4-24GB", 24),
    ("a10", "A10-24GB", 24),
    ("t4", "T4-16GB", 16),
    ("v100", "V100-32GB", 32),
];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches(|c| c == '.' || c == '-').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

fn kind_of(words: &[String]) -> Option<(WorkloadKind, &'static str)> {
    let has = |keys: &[&str]| words.iter().any(|w| keys.iter().any(|k| w.starts_with(k)));
    if has(&["train", "fine-tun", "finetun", "lora", "qlora", "pretrain"])
        || (has(&["fine"]) && has(&["tune", "tuning"]))
    {
        Some((WorkloadKind::Training, "training keywords"))
    } else if has(&["serv", "inferenc", "chat", "endpoint", "deploy"]) {
        Some((WorkloadKind::Inference, "serving keywords"))
    } else if has(&["image", "video", "render", "asset", "textur", "diffusion"]) {
        Some((WorkloadKind::AssetGeneration, "generation keywords"))
    } else if has(&["notebook", "jupyter", "interactive", "debug"]) {
        Some((WorkloadKind::Interactive, "interactive keywords"))
    } else {
        None
    }
}

/// Billions of parameters named in the text ("7 billion", "7b", "350m").
fn parameters_b(words: &[String]) -> Option<f64> {
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).map(String::as_str).unwrap_or("");
        if let Ok(n) = w.parse::<f64>() {
            if next.starts_with("billion") || next == "b" {
                return Some(n);
            }
            if next.starts_with("million") || next == "m" {
                return Some(n / 1000.0);
            }
        }
        for (suffix, scale) in [("b", 1.0), ("m", 0.001)] {
            if let Some(num) = w.strip_suffix(suffix)
                && let Ok(n) = num.parse::<f64>()
                && n > 0.0
            {
                return Some(n * scale);
            }
        }
    }
    None
}

/// An explicit GPU count: "2 gpus", "on 4 GPUs", "8x h100", "8 x a100".
fn explicit_gpus(words: &[String]) -> Option<u32> {
    let is_gpu_word =
        |w: &str| w.starts_with("gpu") || GPU_MODELS.iter().any(|(k, _, _)| w.starts_with(k));
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).map(String::as_str).unwrap_or("");
        if let Ok(n) = w.parse::<u32>()
            && (is_gpu_word(next)
                || (next == "x" && words.get(i + 2).is_some_and(|g| is_gpu_word(g))))
        {
            return Some(n);
        }
        if let Some(num) = w.strip_suffix('x')
            && let Ok(n) = num.parse::<u32>()
            && is_gpu_word(next)
        {
            return Some(n);
        }
    }
    None
}

fn gpu_model(words: &[String]) -> Option<(&'static str, u64)> {
    let forty = words.iter().any(|w| w.contains("40gb") || w == "40g");
    words.iter().find_map(|w| {
        GPU_MODELS
            .iter()
            .find(|(k, _, _)| {
                w == k || w.starts_with(&format!("{k}-")) || w.starts_with(&format!("{k}x"))
            })
            .map(|&(k, name, mem)| match (k, forty) {
                ("a100", true) => ("A100-40GB", 40),
                _ => (name, mem),
            })
    })
}

fn slug(words: &[String], kind: WorkloadKind) -> String {
    let base = match kind {
        WorkloadKind::Training => "training",
        WorkloadKind::Inference => "inference",
        WorkloadKind::AssetGeneration => "asset-generation",
        WorkloadKind::Batch => "batch",
        WorkloadKind::Interactive => "interactive",
    };
    match parameters_b(words) {
        Some(p) if p >= 1.0 => format!("{base}-{}b", p.round() as u64),
        Some(p) => format!("{base}-{}m", (p * 1000.0).round() as u64),
        None => format!("{base}-job"),
    }
}

/// A template for `kind` (if given) refined by `description` (if given).
pub fn template(kind: Option<WorkloadKind>, description: Option<&str>) -> Template {
    let words = words(description.unwrap_or(""));
    let mut reasons = Vec::new();
    let kind = match (kind, kind_of(&words)) {
        (Some(k), _) => {
            reasons.push(format!("kind {k:?} as asked"));
            k
        }
        (None, Some((k, why))) => {
            reasons.push(format!("kind {k:?} from {why}"));
            k
        }
        (None, None) => {
            reasons.push("kind Batch: no kind keyword found".into());
            WorkloadKind::Batch
        }
    };
    let lora = words
        .iter()
        .any(|w| w.contains("lora") || w == "adapter" || w == "peft");
    let qlora = words
        .iter()
        .any(|w| w.contains("qlora") || w == "4-bit" || w == "4bit");
    let (model, per_gpu) = match gpu_model(&words) {
        Some((name, mem)) => {
            reasons.push(format!("GPU model {name} named: {mem} GiB per GPU"));
            (Some(name), mem)
        }
        None => (None, 80),
    };
    let need_gib = parameters_b(&words).map(|p| {
        let (factor, why) = match kind {
            WorkloadKind::Training if qlora => {
                (1.0, "QLoRA: 4-bit weights + adapters, 1.0 GiB per B")
            }
            WorkloadKind::Training if lora => (2.6, "LoRA: fp16 weights + adapters, 2.6 GiB per B"),
            WorkloadKind::Training => (
                18.0,
                "full training: weights, gradients, Adam states, activations, 18 GiB per B",
            ),
            _ => (
                2.4,
                "inference: fp16 weights + 20 % KV cache, 2.4 GiB per B",
            ),
        };
        let need = (p * factor).max(1.0);
        reasons.push(format!(
            "{p} B parameters; {why}: {need:.0} GiB of GPU memory"
        ));
        need
    });
    let by_memory = need_gib.map(|n| (n / per_gpu as f64).ceil().max(1.0) as u32);
    let explicit = explicit_gpus(&words);
    let mut gpu = GpuRequest::default();
    let gpus: u32 = match (explicit, by_memory) {
        (Some(n), Some(m)) if n < m => {
            reasons.push(format!(
                "{n} GPU(s) as asked, although {m} x {per_gpu} GiB would fit the model: expect to need sharding or offload"
            ));
            n
        }
        (Some(n), _) => {
            reasons.push(format!("{n} GPU(s) as asked"));
            n
        }
        (None, Some(m)) => {
            reasons.push(format!("{m} GPU(s) of {per_gpu} GiB hold it"));
            m
        }
        (None, None) => {
            let n = u32::from(kind != WorkloadKind::Batch);
            reasons.push(format!("{n} GPU(s): no size or count given"));
            n
        }
    };
    let share = match (kind, need_gib, explicit) {
        (WorkloadKind::Inference, Some(n), None) if n < per_gpu as f64 / 2.0 => {
            let milli =
                ((n / per_gpu as f64 * 1000.0 / 50.0).ceil() * 50.0).clamp(50.0, 950.0) as i64;
            reasons.push(format!(
                "fits in under half a GPU: a {milli}-milli share with {n:.0} GiB"
            ));
            Some((milli, n.ceil() as u64))
        }
        _ => None,
    };
    match share {
        Some((milli, gib)) => {
            gpu.share = Some(milli);
            gpu.memory = Some(MemoryQuantity::from_mib(gib.saturating_mul(1024)));
        }
        None if gpus > 0 => gpu.count = Some(i64::from(gpus)),
        None => {}
    }
    if let Some(m) = model {
        gpu.models = vec![m.to_string()];
    }
    let gpu_units = u64::from(gpus.max(1));
    let training = kind == WorkloadKind::Training;
    let cpu_cores = if training { 8 } else { 4 } * gpu_units;
    let host_gib = need_gib.map_or(16, |n| ((n * 2.0).ceil() as u64).max(16));
    let resources = Resources {
        cpu: Some(MilliQuantity::from_milli(cpu_cores.saturating_mul(1000))),
        memory: Some(MemoryQuantity::from_mib(host_gib.saturating_mul(1024))),
        shm: training.then(|| MemoryQuantity::from_mib((8 * 1024u64).saturating_mul(gpu_units))),
        gpu: (gpu != GpuRequest::default()).then_some(gpu),
    };
    reasons.push(format!(
        "host: {cpu_cores} CPU cores, {host_gib} GiB memory{}",
        if training {
            format!(", {} GiB /dev/shm", 8 * gpu_units)
        } else {
            String::new()
        }
    ));
    let priority = match kind {
        WorkloadKind::Training => "high-priority-training",
        WorkloadKind::Inference => "medium-priority-inference",
        _ => "low-priority-batch",
    };
    reasons.push(format!("priority class {priority} for this kind"));
    let spec = WorkloadSpec {
        name: slug(&words, kind),
        kind,
        priority_class: Some(priority.to_string()),
        queue: None,
        replicas: 1,
        gang_minimum: None,
        resources,
        placement: Default::default(),
        preemptible: !training,
        spot: Default::default(),
        timeout: None,
        retries: if training { 2 } else { 0 },
        ttl_after_finished: Some(Duration::from_secs(7 * 86_400)),
        strategy: None,
        run: Some(RunSpec {
            command: vec!["python".into(), "main.py".into()],
            args: Vec::new(),
            env: Default::default(),
            working_dir: None,
            image: None,
        }),
    };
    Template { spec, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example() {
        let t = template(
            None,
            Some("fine-tune a 7 billion parameter model on 2 GPUs"),
        );
        let s = &t.spec;
        assert_eq!(s.kind, WorkloadKind::Training);
        let gpu = s.resources.gpu.as_ref().unwrap();
        // Full fine-tuning of 7 B needs 126 GiB: 2 x 80 GiB as asked.
        assert_eq!(gpu.count, Some(2));
        assert_eq!(s.resources.cpu.as_ref().unwrap().milli().unwrap(), 16_000);
        assert_eq!(s.resources.shm.as_ref().unwrap().mib().unwrap(), 16 * 1024);
        assert_eq!(s.priority_class.as_deref(), Some("high-priority-training"));
        assert_eq!(s.name, "training-7b");
        assert!(!s.preemptible);
        assert!(
            t.reasons.iter().any(|r| r.contains("126 GiB")),
            "{:?}",
            t.reasons
        );
    }

    #[test]
    fn size_decides_the_count_when_none_is_given() {
        // 70 B full training: 1,260 GiB -> 16 x 80 GiB.
        let t = template(None, Some("train a 70B model"));
        assert_eq!(t.spec.resources.gpu.unwrap().count, Some(16));
        // On A100 40GB: 32.
        let t = template(None, Some("train a 70B model on A100 40GB"));
        let gpu = t.spec.resources.gpu.unwrap();
        assert_eq!(
            (gpu.count, gpu.models),
            (Some(32), vec!["A100-40GB".to_string()])
        );
    }

    #[test]
    fn absurd_sizes_saturate_instead_of_overflowing() {
        // 1e15 B parameters: the memory arithmetic saturates (no panic); validation then refuses it.
        for d in [
            "train 1e15b model",
            "train a 99999999999999999999b model on 4000000000 GPUs",
        ] {
            let t = template(None, Some(d));
            let mib = t.spec.resources.memory.as_ref().unwrap().mib().unwrap();
            assert!(mib >= 16 * 1024, "{d}: {mib}");
        }
    }

    #[test]
    fn small_inference_gets_a_share() {
        // 7 B inference: 16.8 GiB of an 80 GiB GPU -> 250 milli (rounded up to 50), 17 GiB.
        let t = template(None, Some("serve a 7b chat model"));
        let gpu = t.spec.resources.gpu.unwrap();
        assert_eq!(t.spec.kind, WorkloadKind::Inference);
        assert_eq!((gpu.count, gpu.share), (None, Some(250)));
        assert_eq!(gpu.memory.unwrap().mib().unwrap(), 17 * 1024);
    }

    #[test]
    fn explicit_counts_and_lora() {
        let t = template(None, Some("LoRA fine-tune 13b on 8x H100"));
        let gpu = t.spec.resources.gpu.unwrap();
        assert_eq!(gpu.count, Some(8));
        assert_eq!(gpu.models, vec!["H100-80GB".to_string()]);
        let t = template(Some(WorkloadKind::Batch), None);
        assert_eq!(t.spec.kind, WorkloadKind::Batch);
        assert!(t.spec.resources.gpu.is_none());
    }

    #[test]
    fn templates_validate() {
        for d in [
            "fine-tune a 7 billion parameter model on 2 GPUs",
            "serve a 70B model",
            "render textures",
            "jupyter notebook",
            "qlora 65b",
        ] {
            let t = template(None, Some(d));
            let ctx = crate::spec::ValidationContext::default();
            assert_eq!(t.spec.validate(&ctx), Ok(()), "{d}: {:?}", t.spec);
        }
    }
}
