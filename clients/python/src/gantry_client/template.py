"""`from_description`: a workload spec from a sentence, as `gantry template --from-description`.

A faithful port of `crates/gantry-core/src/spec/template.rs` (the rules, the reasons' wording and
the spec's JSON form, with Rust's float formatting, rounding and saturating casts); the server has
no endpoint for it. `tests/test_template.py` compares it with the `gantry` binary on hundreds of
sentences, so a change to the Rust rules that is not made here fails the tests.

The rules, in order (each applied rule is reported back as a reason):
1. Kind from keywords: train/fine-tune/LoRA/pretrain -> training; serve/inference/chat/endpoint ->
   inference; image/video/render/asset/texture/diffusion -> asset-generation;
   notebook/jupyter/interactive/debug -> interactive; otherwise batch (or the kind given).
2. Model size from "7 billion", "7B", "1.3b", "350M".
3. GPU model from a name in the text (H100, H200, A100, L40S, L4, A10, T4, V100) and its memory.
4. GPU memory needed, P = billions of parameters: inference 2.4 P GiB; LoRA 2.6 P; QLoRA 1.0 P;
   full training 18 P.
5. GPUs: an explicit count wins; otherwise ceil(need / memory per GPU); small inference gets a share.
6. Host: 8 CPU cores per GPU for training, 4 otherwise; memory 2x the GPU memory needed (at least
   16 GiB); 8 GiB of /dev/shm per GPU for training.
7. Priority class by kind; training gets retries 2 and is not preemptible; all get ttl 7d.
"""

from __future__ import annotations

import dataclasses
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Dict, List, Optional, Tuple

#: Workload kinds as the spec writes them.
KINDS = ("training", "inference", "asset-generation", "batch", "interactive")

_DEBUG_NAMES = {
    "training": "Training",
    "inference": "Inference",
    "asset-generation": "AssetGeneration",
    "batch": "Batch",
    "interactive": "Interactive",
}

_GPU_MODELS: Tuple[Tuple[str, str, int], ...] = (
    ("h200", "H200-141GB", 141),
    ("h100", "H100-80GB", 80),
    ("a100", "A100-80GB", 80),
    ("l40s", "L40S-48GB", 48),
    ("l4", "L4-24GB", 24),
    ("a10", "A10-24GB", 24),
    ("t4", "T4-16GB", 16),
    ("v100", "V100-32GB", 32),
)

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_I64_MAX = 2**63 - 1
_I64_MIN = -(2**63)

# What Rust's `str::parse::<f64>` accepts, for words of [a-z0-9.-] (no sign can lead a word).
_RUST_F64 = re.compile(r"(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)\Z")


@dataclasses.dataclass(frozen=True)
class Template:
    """A generated spec (JSON form, ready for `Client.submit`) and one reason per decision."""

    spec: Dict[str, Any]
    reasons: List[str]


# -- Rust semantics -------------------------------------------------------------------------------


def _parse_f64(word: str) -> Optional[float]:
    return float(word) if _RUST_F64.match(word) else None


def _parse_u32(word: str) -> Optional[int]:
    if not word.isascii() or not word.isdigit():
        return None
    n = int(word)
    return n if n <= _U32_MAX else None


def _cast(x: float, lo: int, hi: int) -> int:
    """Rust's `as` from f64 to an integer: truncate, saturate, NaN to 0."""
    if math.isnan(x):
        return 0
    if x <= lo:
        return lo
    if x >= hi:
        return hi
    return int(x)


def _round(x: float) -> float:
    """Rust's `f64::round`: half away from zero."""
    if not math.isfinite(x):
        return x
    return float(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _max(a: float, b: float) -> float:
    """Rust's `f64::max`: a NaN operand gives the other."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


def _ceil(x: float) -> float:
    """Rust's `f64::ceil` (infinities and NaN stay as they are)."""
    return float(math.ceil(x)) if math.isfinite(x) else x


def _clamp(x: float, lo: float, hi: float) -> float:
    """Rust's `f64::clamp` (NaN stays NaN)."""
    if math.isnan(x):
        return x
    return min(max(x, lo), hi)


def _display(x: float) -> str:
    """Rust's `{}` for f64: shortest round-trip digits, never an exponent."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = format(Decimal(repr(x)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _fixed0(x: float) -> str:
    """Rust's `{:.0}` for f64 (ties to even on the exact value, as Python's `.0f`)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, ".0f")


def _wrap_u64(n: int) -> int:
    """u64 arithmetic as a release build does it (wrapping)."""
    return n & _U64_MAX


# -- quantities (units.rs) --------------------------------------------------------------------------


def _from_milli(milli: int) -> str:
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _from_mib(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib >= 1 and mib % 1024 == 0 else f"{mib}Mi"


def _from_secs(secs: int) -> str:
    if secs == 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if secs >= size:
            out += f"{secs // size}{unit}"
            secs %= size
    return out


# -- the rules --------------------------------------------------------------------------------------


def _words(text: str) -> List[str]:
    out = []
    for w in re.split(r"[^a-z0-9.\-]", text.lower()):
        w = w.strip(".-")
        if w:
            out.append(w)
    return out


def _kind_of(words: List[str]) -> Optional[Tuple[str, str]]:
    def has(keys: Tuple[str, ...]) -> bool:
        return any(w.startswith(k) for w in words for k in keys)

    if has(("train", "fine-tun", "finetun", "lora", "qlora", "pretrain")) or (
        has(("fine",)) and has(("tune", "tuning"))
    ):
        return "training", "training keywords"
    if has(("serv", "inferenc", "chat", "endpoint", "deploy")):
        return "inference", "serving keywords"
    if has(("image", "video", "render", "asset", "textur", "diffusion")):
        return "asset-generation", "generation keywords"
    if has(("notebook", "jupyter", "interactive", "debug")):
        return "interactive", "interactive keywords"
    return None


def _parameters_b(words: List[str]) -> Optional[float]:
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        n = _parse_f64(w)
        if n is not None:
            if nxt.startswith("billion") or nxt == "b":
                return n
            if nxt.startswith("million") or nxt == "m":
                return n / 1000.0
        for suffix, scale in (("b", 1.0), ("m", 0.001)):
            if w.endswith(suffix):
                n = _parse_f64(w[: -len(suffix)])
                if n is not None and n > 0.0:
                    return n * scale
    return None


def _is_gpu_word(w: str) -> bool:
    return w.startswith("gpu") or any(w.startswith(k) for k, _, _ in _GPU_MODELS)


def _explicit_gpus(words: List[str]) -> Optional[int]:
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        n = _parse_u32(w)
        if n is not None and (
            _is_gpu_word(nxt) or (nxt == "x" and i + 2 < len(words) and _is_gpu_word(words[i + 2]))
        ):
            return n
        if w.endswith("x"):
            n = _parse_u32(w[:-1])
            if n is not None and _is_gpu_word(nxt):
                return n
    return None


def _gpu_model(words: List[str]) -> Optional[Tuple[str, int]]:
    forty = any("40gb" in w or w == "40g" for w in words)
    for w in words:
        for k, name, mem in _GPU_MODELS:
            if w == k or w.startswith(f"{k}-") or w.startswith(f"{k}x"):
                if k == "a100" and forty:
                    return "A100-40GB", 40
                return name, mem
    return None


def _slug(words: List[str], kind: str) -> str:
    p = _parameters_b(words)
    if p is None:
        return f"{kind}-job"
    if p >= 1.0:
        return f"{kind}-{_cast(_round(p), 0, _U64_MAX)}b"
    return f"{kind}-{_cast(_round(p * 1000.0), 0, _U64_MAX)}m"


def template(kind: Optional[str] = None, description: Optional[str] = None) -> Template:
    """A template for `kind` (one of `KINDS`, if given) refined by `description` (if given), with
    the reason for each decision: `gantry template [--kind K] [--from-description TEXT]`."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    words = _words(description or "")
    reasons: List[str] = []
    found = _kind_of(words)
    if kind is not None:
        reasons.append(f"kind {_DEBUG_NAMES[kind]} as asked")
    elif found is not None:
        kind = found[0]
        reasons.append(f"kind {_DEBUG_NAMES[kind]} from {found[1]}")
    else:
        kind = "batch"
        reasons.append("kind Batch: no kind keyword found")
    lora = any("lora" in w or w in ("adapter", "peft") for w in words)
    qlora = any("qlora" in w or w in ("4-bit", "4bit") for w in words)
    named = _gpu_model(words)
    if named is not None:
        model: Optional[str] = named[0]
        per_gpu = named[1]
        reasons.append(f"GPU model {model} named: {per_gpu} GiB per GPU")
    else:
        model, per_gpu = None, 80

    p = _parameters_b(words)
    need: Optional[float] = None
    if p is not None:
        if kind == "training" and qlora:
            factor, why = 1.0, "QLoRA: 4-bit weights + adapters, 1.0 GiB per B"
        elif kind == "training" and lora:
            factor, why = 2.6, "LoRA: fp16 weights + adapters, 2.6 GiB per B"
        elif kind == "training":
            factor, why = (
                18.0,
                "full training: weights, gradients, Adam states, activations, 18 GiB per B",
            )
        else:
            factor, why = 2.4, "inference: fp16 weights + 20 % KV cache, 2.4 GiB per B"
        need = _max(p * factor, 1.0)
        reasons.append(f"{_display(p)} B parameters; {why}: {_fixed0(need)} GiB of GPU memory")

    by_memory = None if need is None else _cast(_max(_ceil(need / per_gpu), 1.0), 0, _U32_MAX)
    explicit = _explicit_gpus(words)
    if explicit is not None and by_memory is not None and explicit < by_memory:
        reasons.append(
            f"{explicit} GPU(s) as asked, although {by_memory} x {per_gpu} GiB would fit the model: "
            "expect to need sharding or offload"
        )
        gpus = explicit
    elif explicit is not None:
        reasons.append(f"{explicit} GPU(s) as asked")
        gpus = explicit
    elif by_memory is not None:
        reasons.append(f"{by_memory} GPU(s) of {per_gpu} GiB hold it")
        gpus = by_memory
    else:
        gpus = 0 if kind == "batch" else 1
        reasons.append(f"{gpus} GPU(s): no size or count given")

    share: Optional[Tuple[int, int]] = None
    if kind == "inference" and need is not None and explicit is None and need < per_gpu / 2.0:
        milli = _cast(
            _clamp(_ceil(need / per_gpu * 1000.0 / 50.0) * 50.0, 50.0, 950.0),
            _I64_MIN,
            _I64_MAX,
        )
        reasons.append(f"fits in under half a GPU: a {milli}-milli share with {_fixed0(need)} GiB")
        share = (milli, _cast(_ceil(need), 0, _U64_MAX))

    gpu: Dict[str, Any] = {}
    if share is not None:
        gpu["share"] = share[0]
        gpu["memory"] = _from_mib(_wrap_u64(share[1] * 1024))
    elif gpus > 0:
        gpu["count"] = gpus
    if model is not None:
        gpu["models"] = [model]
    gpu_units = max(gpus, 1)
    training = kind == "training"
    cpu_cores = (8 if training else 4) * gpu_units
    host_gib = 16 if need is None else max(_cast(_ceil(need * 2.0), 0, _U64_MAX), 16)
    resources: Dict[str, Any] = {
        "cpu": _from_milli(_wrap_u64(cpu_cores * 1000)),
        "memory": _from_mib(_wrap_u64(host_gib * 1024)),
    }
    if training:
        resources["shm"] = _from_mib(_wrap_u64(8 * 1024 * gpu_units))
    if gpu:
        resources["gpu"] = gpu
    shm_text = f", {8 * gpu_units} GiB /dev/shm" if training else ""
    reasons.append(f"host: {cpu_cores} CPU cores, {host_gib} GiB memory{shm_text}")
    priority = {
        "training": "high-priority-training",
        "inference": "medium-priority-inference",
    }.get(kind, "low-priority-batch")
    reasons.append(f"priority class {priority} for this kind")

    # The spec as serde writes it: defaults left out, fields in declaration order.
    spec: Dict[str, Any] = {"name": _slug(words, kind)}
    if kind != "batch":
        spec["kind"] = kind
    spec["priorityClass"] = priority
    spec["resources"] = resources
    if training:
        spec["preemptible"] = False
        spec["retries"] = 2
    spec["ttlAfterFinished"] = _from_secs(7 * 86_400)
    spec["run"] = {"command": ["python", "main.py"]}
    return Template(spec, reasons)


def from_description(text: str, kind: Optional[str] = None) -> Dict[str, Any]:
    """A workload spec from a sentence such as "fine-tune a 7 billion parameter model on 2 GPUs"
    (its `run.command` is a placeholder, `python main.py`, to replace); `template(...).reasons`
    says why each value was chosen."""
    return template(kind, text).spec
