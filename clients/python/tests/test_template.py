"""`from_description` against the Rust rules: the examples of `template.rs`'s own tests, and the
`gantry template` binary on hundreds of sentences (spec and reasons must be identical)."""

from __future__ import annotations

import random
import subprocess
from typing import Any, Dict, List, Optional, Tuple

import pytest
import yaml
from harness import GantryServer, gantry_binary

from gantry_client import Client, from_description, template


def test_the_issue_example() -> None:
    t = template(None, "fine-tune a 7 billion parameter model on 2 GPUs")
    s = t.spec
    assert s["kind"] == "training"
    # Full fine-tuning of 7 B needs 126 GiB: 2 x 80 GiB as asked.
    assert s["resources"]["gpu"] == {"count": 2}
    assert s["resources"]["cpu"] == "16"
    assert s["resources"]["shm"] == "16Gi"
    assert s["priorityClass"] == "high-priority-training"
    assert s["name"] == "training-7b"
    assert s["preemptible"] is False
    assert any("126 GiB" in r for r in t.reasons), t.reasons
    assert from_description("fine-tune a 7 billion parameter model on 2 GPUs") == s


def test_size_decides_the_count_when_none_is_given() -> None:
    # 70 B full training: 1,260 GiB -> 16 x 80 GiB; on A100 40GB: 32.
    assert from_description("train a 70B model")["resources"]["gpu"] == {"count": 16}
    gpu = from_description("train a 70B model on A100 40GB")["resources"]["gpu"]
    assert gpu == {"count": 32, "models": ["A100-40GB"]}


def test_small_inference_gets_a_share() -> None:
    # 7 B inference: 16.8 GiB of an 80 GiB GPU -> 250 milli (rounded up to 50), 17 GiB.
    s = from_description("serve a 7b chat model")
    assert s["kind"] == "inference"
    assert s["resources"]["gpu"] == {"share": 250, "memory": "17Gi"}


def test_explicit_counts_lora_and_kinds() -> None:
    gpu = from_description("LoRA fine-tune 13b on 8x H100")["resources"]["gpu"]
    assert gpu == {"count": 8, "models": ["H100-80GB"]}
    batch = template("batch", None).spec
    assert "kind" not in batch and "gpu" not in batch["resources"]
    assert template("inference", "train a 7b model").spec["kind"] == "inference"
    with pytest.raises(ValueError):
        template("training-job", None)


# -- the binary as the reference --------------------------------------------------------------------

FIXED = [
    "fine-tune a 7 billion parameter model on 2 GPUs",
    "serve a 70B model",
    "render textures",
    "jupyter notebook",
    "qlora 65b",
    "serve a 7b chat model",
    "train a 70B model on A100 40GB",
    "LoRA fine-tune 13b on 8x H100",
    "",
    "serve a 1.3b model on an L4",
    "serve a 350M model",
    "inference endpoint for 0.5b on t4",
    "pretrain a 2.7 billion parameter model on 4 x a100",
    "fine tuning llama 8b with peft on 1 gpu",
    "deploy 405b on 8 h200",
    "debug session on a10 with 1 GPU",
    "diffusion images on 2x l40s",
    "batch 3 million rows",
    "serve 12.5b chat",
    "serve 0.01b",
    "serve nan billion parameters",
    "train a 0 billion model",
    "4bit qlora 33b on v100-32gb",
    "Train A 7B Model On H100-80GB",
    "serve 2.5b, on 8x gpu",
    "a100x4 training 20b",
    "train 20b on 4294967296 gpus",
    "train 20b on 4294967295 gpus",
    "serve 1e3m model",
    "serve 7.b model",
]

VOCAB = [
    "train", "fine-tune", "fine", "tune", "lora", "qlora", "pretrain", "serve", "inference", "chat",
    "endpoint", "deploy", "image", "video", "render", "texture", "diffusion", "notebook", "jupyter",
    "debug", "batch", "a", "model", "on", "with", "the", "for", "parameter", "h100", "h200", "a100",
    "a100-40gb", "40gb", "l40s", "l4", "a10", "t4", "v100", "gpu", "gpus", "x", "8x", "2x", "b", "m",
    "billion", "million", "adapter", "peft", "4-bit", "4bit", "7b", "13b", "70b", "1.3b", "350m",
    "0.5b", "3b", "175b", "1", "2", "3", "4", "8", "16", "7", "65", "0.7", "2.5",
]  # fmt: skip


def corpus() -> List[Tuple[Optional[str], str]]:
    """(kind, description) pairs: the fixed sentences, then seeded random ones from `VOCAB`."""
    rng = random.Random(20261125)
    out: List[Tuple[Optional[str], str]] = [(None, d) for d in FIXED]
    out += [("batch", "serve a 7b model"), ("training", ""), ("asset-generation", "13b on 2 h100")]
    for _ in range(300):
        words = [rng.choice(VOCAB) for _ in range(rng.randint(1, 8))]
        sep = rng.choice([" ", " ", ", ", " - "])
        out.append((None, sep.join(words)))
    return out


def reference(kind: Optional[str], description: str) -> Tuple[Dict[str, Any], List[str]]:
    """What `gantry template` prints: (spec, reasons)."""
    args = [str(gantry_binary()), "template", "--from-description", description]
    if kind is not None:
        args += ["--kind", kind]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    reasons = [line[2:] for line in out.splitlines() if line.startswith("# ")]
    return yaml.safe_load(out), reasons


def test_identical_to_gantry_template_on_hundreds_of_sentences() -> None:
    if not gantry_binary().exists():
        pytest.fail(f"{gantry_binary()} not found: run `cargo build -p gantry` first")
    mismatches = []
    cases = corpus()
    for kind, description in cases:
        spec, reasons = reference(kind, description)
        t = template(kind, description)
        if (t.spec, t.reasons) != (spec, reasons):
            mismatches.append(
                f"{kind} {description!r}:\n  rust   {spec} {reasons}\n  python {t.spec} {t.reasons}"
            )
    assert not mismatches, f"{len(mismatches)}/{len(cases)} differ:\n" + "\n".join(mismatches[:5])


def test_a_template_runs_on_the_server(server: GantryServer, tokens: Dict[str, str]) -> None:
    client = Client(server.url, token=tokens["admin"])
    spec = from_description("serve a 7b chat model on h100")
    spec["run"] = {"command": ["sh", "-c", "echo serving"]}
    w = client.submit(spec)
    assert w.spec["resources"]["gpu"]["share"] == 250
    final = client.wait(w.id, timeout=30, poll=0.05)
    assert final.state == "succeeded", final
    assert client.logs(w.id) == "serving\n"
