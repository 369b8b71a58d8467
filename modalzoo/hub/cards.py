"""Model cards: facts about a tokenizer, and a README.md rendered from `model_cards/<family>.md`.

A card template is a jinja markdown file with its own YAML front matter of *settings*:

    ---
    title: TiTok                     # display name of the family
    summary: ...                     # one paragraph: what the tokenizer does
    license: apache-2.0              # licence of the original weights (or license_name/license_link)
    pipeline_tag: ...                # optional; default from the modality (PIPELINE_TAGS)
    tags: [...]                      # added to modalzoo's own tags
    datasets: [...]                  # what the original weights were trained on
    base_models: {variant: repo}     # the original release each variant converts from
    reported: {variant: {metric: value}}   # the authors' numbers (shown, never put in model-index)
    paper: url
    code: url
    citation: |
      @article{...}
    ---
    # {{ model_name }}  ... the body, rendered by `ModelCard.from_template`

Card metadata (`library_name: modalzoo`, pipeline tag, tags, licence, base model, datasets and a
`model-index` of the *measured* metrics) goes through `huggingface_hub.ModelCardData`. The body
gets these variables: `model_name`, `repo_id`, `family`, `variant`, `modality`, `facts`,
`facts_table`, `quick_start`, `metrics_table`, `reported_table`, `base_model`, `with_code`,
`modalzoo_version`, every setting above, and every card-data field. Families without a template
of their own get `model_cards/default.md`.

Measured metrics (what `modalzoo eval` writes) are one evaluation or a list of them:

    {"dataset": {"name": "ImageNet-1k", "type": "ILSVRC/imagenet-1k", "split": "validation",
                 "config": null},
     "metrics": {"psnr": 21.3, "ssim": 0.61, "rfid": 2.2},
     "task": "image-to-image"}       # optional; default from the modality
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

PIPELINE_TAGS = {
    "image": "image-feature-extraction",
    "audio": "audio-to-audio",
    "speech": "audio-to-audio",
    "3d": "feature-extraction",
    "cad": "feature-extraction",
}
MODALITY_TAGS = {
    "image": ["image-tokenizer"],
    "audio": ["audio-tokenizer", "audio-codec"],
    "speech": ["speech-tokenizer", "audio-codec"],
    "3d": ["3d-tokenizer"],
    "cad": ["cad-tokenizer"],
}
# model-index task per modality: (Hub task id, display name)
EVAL_TASKS = {
    "image": ("image-to-image", "Image reconstruction"),
    "audio": ("audio-to-audio", "Audio reconstruction"),
    "speech": ("audio-to-audio", "Speech reconstruction"),
    "3d": ("other", "3D shape reconstruction"),
    "cad": ("other", "CAD sequence reconstruction"),
}
METRIC_NAMES = {
    "psnr": "PSNR",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "rfid": "rFID",
    "pesq": "PESQ",
    "pesq_wb": "PESQ (wb)",
    "pesq_nb": "PESQ (nb)",
    "stoi": "STOI",
    "si_sdr": "SI-SDR",
    "mel_distance": "Mel distance",
    "stft_distance": "Multi-resolution STFT distance",
    "utmos": "UTMOS",
    "chamfer": "Chamfer distance",
    "f_score": "F-score",
    "iou": "IoU",
    "invalid_ratio": "Invalid ratio",
    "codebook_usage": "Codebook usage",
    "perplexity": "Codebook perplexity",
}
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", flags=re.DOTALL)


# ----- facts ---------------------------------------------------------------------------------------
def model_facts(model) -> dict:
    """The contract facts of a model: family, variant, modality, codebooks, token rate or tokens
    per item, bitrate (bits per second for audio, per item otherwise), size and input format."""
    config = model.config
    facts = {
        "family": config.model_type,
        "variant": config.variant,
        "modality": model.modality,
        "codebook_sizes": model.codebook_sizes,
        "num_codebooks": model.num_codebooks,
        "token_rate": model.token_rate,
        "max_tokens": model.max_tokens,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    if model.token_rate is not None:
        facts["bitrate_bps"] = model.token_rate * sum(math.log2(size) for size in model.codebook_sizes)
    elif model.max_tokens is not None:
        facts["bits_per_item"] = model.max_tokens * sum(math.log2(size) for size in model.codebook_sizes)
    for field in ("sampling_rate", "hop_length", "image_size"):
        if hasattr(config, field):
            facts[field] = getattr(config, field)
    return facts


def _format_count(count: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return str(count)


def _format_codebooks(sizes: list[int]) -> str:
    if not sizes:
        return "none: continuous latents (no discrete codes)"
    if len(set(sizes)) == 1:
        return f"{len(sizes)} × {sizes[0]} entries"
    return " + ".join(str(size) for size in sizes) + " entries"


def facts_table(facts: Mapping[str, Any]) -> str:
    rows = [("Modality", facts["modality"])]
    if "image_size" in facts:
        rows.append(("Input", f"{facts['image_size']}×{facts['image_size']} RGB"))
    if "sampling_rate" in facts:
        rows.append(("Input", f"mono audio at {facts['sampling_rate']} Hz"))
    if facts.get("token_rate") is not None:
        rows.append(("Tokens", f"{facts['token_rate']:g} per second (per codebook)"))
    elif facts.get("max_tokens") is not None:
        rows.append(("Tokens", f"{facts['max_tokens']} per {'image' if facts['modality'] == 'image' else 'item'}"))
    rows.append(("Codebooks", _format_codebooks(list(facts["codebook_sizes"]))))
    if facts.get("bitrate_bps"):
        rows.append(("Bitrate", f"{facts['bitrate_bps'] / 1000:.3g} kbps ({facts['bitrate_bps']:g} bits per second)"))
    elif facts.get("bits_per_item"):
        bits = facts["bits_per_item"]
        per_pixel = f", {bits / facts['image_size'] ** 2:.4f} bits per pixel" if "image_size" in facts else ""
        rows.append(("Bitrate", f"{bits:g} bits per {'image' if facts['modality'] == 'image' else 'item'}{per_pixel}"))
    rows.append(("Parameters", _format_count(facts["parameters"])))
    rows.append(("Family / variant", f"`{facts['family']}` / `{facts['variant'] or 'custom'}`"))
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


# ----- quick start -----------------------------------------------------------------------------------
_EXAMPLE_INPUTS = {
    "image": (
        "image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # any RGB image: PIL, numpy or tensor\n"
        "inputs = processor(image, return_tensors=\"pt\")"
    ),
    "audio": (
        "sampling_rate = processor.sampling_rate\n"
        "audio = np.sin(2 * np.pi * 440 * np.arange(sampling_rate) / sampling_rate).astype(np.float32)  # 1 s of any mono/stereo audio\n"
        "inputs = processor(audio, sampling_rate=sampling_rate, return_tensors=\"pt\")"
    ),
}
_EXAMPLE_INPUTS["speech"] = _EXAMPLE_INPUTS["audio"]
_POSTPROCESS = {
    "image": "reconstruction = processor.postprocess(decoded.values)[0]  # a PIL image",
    "audio": "waveform = processor.postprocess(decoded.values, decoded.values_mask)[0]  # numpy, at the model's rate",
}
_POSTPROCESS["speech"] = _POSTPROCESS["audio"]


def quick_start(repo_id: str, facts: Mapping[str, Any], *, with_code: bool = False, example_input: str | None = None) -> str:
    """A runnable snippet: from_pretrained -> processor -> encode -> decode -> LLM token ids."""
    modality = facts["modality"]
    auto_processor = "AutoImageProcessor" if modality == "image" else "AutoFeatureExtractor"
    example = example_input or _EXAMPLE_INPUTS.get(modality, "inputs = processor(item, return_tensors=\"pt\")  # see the family's docs")
    shape = "[batch, codebooks, frames]" if facts.get("token_rate") else "[batch, codebooks, tokens]"
    remote = ""
    if with_code:
        remote = (
            "\n# without modalzoo installed, load the code shipped in this repo instead:\n"
            f"# model = AutoModel.from_pretrained(\"{repo_id}\", trust_remote_code=True)\n"
            f"# processor = {auto_processor}.from_pretrained(\"{repo_id}\", trust_remote_code=True)\n"
        )
    head = [
        "```python",
        "import numpy as np",
        "import torch",
        f"from transformers import AutoModel, {auto_processor}",
        "",
        "import modalzoo  # registers the modalzoo families with the Auto classes",
        "",
        f"model = AutoModel.from_pretrained(\"{repo_id}\").eval()",
        f"processor = {auto_processor}.from_pretrained(\"{repo_id}\")" + remote,
        "",
        example,
        "with torch.no_grad():",
    ]
    postprocess = _POSTPROCESS.get(modality, "outputs = processor.postprocess(decoded.values)")
    if not facts["codebook_sizes"]:  # continuous variant: latents, no codes, no LLM ids
        body = [
            "    latents = model.encode(**inputs).latents  # [batch, tokens, channels]",
            "    decoded = model.decode(latents=latents)",
            postprocess,
        ]
        return "\n".join([*head, *body, "```"])
    body = [
        "    encoded = model.encode(**inputs)",
        f"    codes = encoded.codes  # {shape}",
        "    decoded = model.decode(codes, codes_mask=encoded.codes_mask)",
        postprocess,
        "",
        "# codes -> LLM token ids: one id block per codebook after the text vocabulary, frame-major",
        "text_vocab_size = 32000",
        "offsets = torch.tensor([0, *model.codebook_sizes[:-1]]).cumsum(0)",
        "llm_ids = (codes + offsets[:, None] + text_vocab_size).transpose(1, 2).flatten(1)",
    ]
    return "\n".join([*head, *body, "```"])


# ----- metrics -------------------------------------------------------------------------------------
def _dataset_of(evaluation: Mapping[str, Any], index: int) -> dict:
    dataset = evaluation.get("dataset")
    if isinstance(dataset, str) and dataset:
        # `modalzoo eval` results name the data by a string: a Hub dataset id or a local path
        is_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", dataset) is not None and not Path(dataset).exists()
        name = dataset if is_hub_id else Path(dataset.split(":")[-1]).name or dataset
        return {"name": name, "type": dataset if is_hub_id else "local", "split": evaluation.get("split")}
    if not isinstance(dataset, Mapping) or not dataset.get("name") or not dataset.get("type"):
        raise ValueError(
            f"evaluation {index} needs a 'dataset': a Hub dataset id, or a mapping with 'name' and 'type', got {dataset!r}"
        )
    return dict(dataset)


def normalize_evaluations(metrics) -> list[dict]:
    """Evaluation results as a list of {"dataset": {...}, "metrics": {...}, "task": ...}.

    Takes one evaluation or a list of them, or the path of their JSON; each is either the format
    in this module's docstring or a `modalzoo eval` result (`dataset` a string, `split` beside
    it). Non-finite values (metrics that could not be computed) are left out; anything else
    malformed raises ValueError naming what is wrong."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, Path)):
        path = Path(metrics)
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read evaluation results from {path}: {error}") from error
    evaluations = [metrics] if isinstance(metrics, Mapping) else list(metrics)
    normalized = []
    for index, evaluation in enumerate(evaluations):
        dataset = _dataset_of(evaluation, index)
        values = evaluation.get("metrics")
        if not isinstance(values, Mapping) or not values:
            raise ValueError(f"evaluation {index} needs a non-empty 'metrics' mapping, got {values!r}")
        kept = {}
        for name, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"metric {name!r} of evaluation {index} must be a number, got {value!r}")
            if math.isfinite(value):
                kept[name] = float(value)
        if kept:
            normalized.append({"dataset": dataset, "metrics": kept, "task": evaluation.get("task")})
    return normalized


def eval_results(evaluations: list[dict], modality: str) -> list[EvalResult]:
    default_task, default_task_name = EVAL_TASKS.get(modality, ("other", "Reconstruction"))
    results = []
    for evaluation in evaluations:
        dataset = evaluation["dataset"]
        task = evaluation.get("task") or default_task
        for name, value in evaluation["metrics"].items():
            results.append(
                EvalResult(
                    task_type=task,
                    task_name=default_task_name,
                    dataset_type=dataset["type"],
                    dataset_name=dataset["name"],
                    dataset_split=dataset.get("split"),
                    dataset_config=dataset.get("config"),
                    metric_type=name,
                    metric_name=METRIC_NAMES.get(name, name),
                    metric_value=value,
                )
            )
    return results


def metrics_table(evaluations: list[dict]) -> str:
    if not evaluations:
        return "No metrics have been measured for these weights yet (`modalzoo eval` adds them)."
    rows = ["| Metric | Value | Dataset | Split |", "|---|---|---|---|"]
    for evaluation in evaluations:
        dataset = evaluation["dataset"]
        for name, value in evaluation["metrics"].items():
            rows.append(f"| {METRIC_NAMES.get(name, name)} | {value:.4g} | {dataset['name']} | {dataset.get('split') or ''} |")
    return "\n".join(rows)


def reported_table(reported: Mapping[str, Any] | None) -> str:
    if not reported:
        return ""
    rows = ["| Metric | Reported |", "|---|---|", *(f"| {name} | {value} |" for name, value in reported.items())]
    return "\n".join(rows)


# ----- templates -----------------------------------------------------------------------------------
def template_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    # installed wheels carry the templates as modalzoo/model_cards; a checkout has them at the top
    return [here.parent / "model_cards", here.parents[1] / "model_cards"]


def template_path(family: str) -> Path:
    """`model_cards/<family>.md`, else `model_cards/default.md`."""
    for folder in template_dirs():
        for name in (f"{family}.md", "default.md"):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"no model card template for {family!r} in {', '.join(map(str, template_dirs()))}")


def load_template(path: str | Path) -> tuple[dict, str]:
    """(settings from the template's front matter, jinja body)."""
    text = Path(path).read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    settings = yaml.safe_load(match.group(1)) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"the front matter of {path} must be a YAML mapping")
    return settings, text[match.end() :]


def render_model_card(
    model,
    repo_id: str | None = None,
    *,
    metrics=None,
    base_model: str | None = "auto",
    with_code: bool = False,
    tags: list[str] | None = None,
    template: str | Path | None = None,
) -> ModelCard:
    """The README.md of `model` as `repo_id`: metadata through `ModelCardData`, body from the
    family's template. `base_model="auto"` takes the original release of the model's variant from
    the template (`base_models`); pass None for weights not derived from one, or a repo id."""
    facts = model_facts(model)
    family, variant, modality = facts["family"], facts["variant"], facts["modality"]
    settings, body = load_template(template or template_path(family))
    if base_model == "auto":
        base_model = (settings.get("base_models") or {}).get(variant)
    evaluations = normalize_evaluations(metrics)
    model_name = (repo_id or variant or family).split("/")[-1]
    card_tags = ["modalzoo", "tokenizer", *MODALITY_TAGS.get(modality, []), family.replace("_", "-")]
    for tag in [*(settings.get("tags") or []), *(tags or [])]:
        if tag not in card_tags:
            card_tags.append(tag)
    if with_code and "custom_code" not in card_tags:
        card_tags.append("custom_code")
    card_data = ModelCardData(
        library_name="modalzoo",
        pipeline_tag=settings.get("pipeline_tag") or PIPELINE_TAGS.get(modality),
        tags=card_tags,
        license=settings.get("license"),
        license_name=settings.get("license_name"),
        license_link=settings.get("license_link"),
        base_model=base_model,
        datasets=settings.get("datasets"),
        model_name=model_name,
        eval_results=eval_results(evaluations, modality) or None,
    )
    from .. import __version__

    variables = {
        **settings,
        "model_name": model_name,
        "repo_id": repo_id or model_name,
        "family": family,
        "variant": variant,
        "modality": modality,
        "facts": facts,
        "facts_table": facts_table(facts),
        "quick_start": quick_start(repo_id or model_name, facts, with_code=with_code, example_input=settings.get("example_input")),
        "metrics_table": metrics_table(evaluations),
        "reported_table": reported_table((settings.get("reported") or {}).get(variant)),
        "base_model": base_model,
        "with_code": with_code,
        "modalzoo_version": __version__,
    }
    return ModelCard.from_template(card_data, template_str="---\n{{ card_data }}\n---\n" + body, **variables)
