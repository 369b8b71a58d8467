"""Training recipes: a YAML file read into typed sections, with `key=value` overrides.

A recipe names everything a run depends on (model, data, optimiser, schedule, loss weights,
discriminator, precision, batch, steps, output), so that a run is reproducible from its recipe
and seed alone. Unknown keys are errors, not silently ignored: a typo in a recipe would
otherwise train something else than intended.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

AMP_MODES = ("none", "bf16", "fp16")
SCHEDULES = ("constant", "cosine", "linear")
GAN_LOSSES = ("hinge", "hinge_relu", "ls", "vanilla")


@dataclass
class ModelSection:
    """`name`: a registered variant (random init), a local folder or a Hub repo id;
    `overrides`: config fields changed at build time (only for variants); `freeze`: prefixes
    of parameter names that are not trained (TiTok's stage 2 freezes encoder and quantizer)."""

    name: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept fixed


@dataclass
class DataSection:
    """`source`: `imagefolder:PATH`, `audiofolder:PATH`, `hub:ID` (or a bare Hub dataset id),
    or `procedural:NAME`. Images are resized (shorter side) to `image_size` and randomly cropped
    to it in training; audio is cut into random `segment_seconds` segments at the model's rate."""

    source: str = ""
    split: str = "train"
    config_name: str | None = None
    streaming: bool = False
    column: str | None = None  # image / audio column; found automatically when None
    eval_source: str | None = None  # defaults to `source`
    eval_split: str | None = None  # defaults to `split`
    eval_items: int = 8
    batch_size: int = 8  # per process and per micro-batch
    num_workers: int = 0
    image_size: int | None = None  # defaults to the model's image_size
    random_flip: bool = False
    segment_seconds: float | None = None  # audio crop length (required for audio)
    gain_db: list[float] | None = None  # audio: peak-normalise to a random level in [low, high] dBFS
    procedural_items: int = 256  # dataset size for procedural sources
    # > 1: draw this many batches' worth of items at a time and batch them by length (less padding
    # for variable-length items such as CAD sequences)
    group_by_length: int = 1


@dataclass
class OptimSection:
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    eps: float = 1e-8


@dataclass
class ScheduleSection:
    """`name`: constant | cosine | linear, after `warmup_steps` of linear warm-up from 0;
    cosine and linear decay to `end_lr` at `total_steps` (defaults to the run's `steps`)."""

    name: str = "constant"
    warmup_steps: int = 0
    end_lr: float = 0.0
    total_steps: int | None = None


@dataclass
class DiscriminatorSection:
    """An adversarial loss: `name` from `modalzoo.training.discriminators`, trained with its
    own optimiser from `start_step` on (before that neither it nor the generator's adversarial
    term is active, as the originals' warm-up). The generator's adversarial term is weighted
    by `loss_weights.adversarial` (times the VQGAN adaptive weight when `adaptive_weight`)."""

    name: str = "patchgan"
    kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "hinge"
    start_step: int = 0
    adaptive_weight: bool = False
    adaptive_weight_max: float = 1e4
    last_layer: str | None = None  # parameter name for the adaptive weight
    lecam_weight: float = 0.0
    lecam_decay: float = 0.999
    optim: OptimSection | None = None  # defaults to the generator's
    schedule: ScheduleSection | None = None  # defaults to the generator's


@dataclass
class PerceptualSection:
    """TiTok / MaskGIT's ConvNeXt-S perceptual term (`modalzoo.training.perceptual`), weighted
    by `loss_weights.perceptual`; images only. `weights`: a state-dict file (default: the local
    torch hub cache; nothing is downloaded); `pretrained: false` only for tests."""

    name: str = "convnext_s"
    weights: str | None = None
    pretrained: bool = True


@dataclass
class DistributedSection:
    strategy: str = "ddp"  # ddp | fsdp (fsdp only on GPUs)
    find_unused_parameters: bool = False


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss_weights: dict[str, float] = field(default_factory=dict)
    discriminator: DiscriminatorSection | None = None
    perceptual: PerceptualSection | None = None
    distributed: DistributedSection = field(default_factory=DistributedSection)
    amp: str = "none"
    grad_accum: int = 1
    clip: float | None = None
    ema_decay: float | None = None
    ema_start: int = 0
    steps: int = 1000
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    save_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    output_dir: str = "runs/train"
    seed: int = 0
    compile: bool = False
    # dead-code restarts that take effect (EMA codebooks) or exist (learned code tables): see
    # training/codebooks.py; the threshold is for learned tables, in uses per step (EMA 0.99)
    codebook_restarts: bool = False
    codebook_restart_threshold: float = 0.05
    cpu: bool = False  # force CPU even where CUDA is available
    log_with: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])
    num_samples: int = 4  # reconstructions saved at each evaluation
    eval_metrics: list[str] | None = None  # modalzoo.evaluation names; default per modality
    description: str = ""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if not self.model.name:
            raise ValueError("recipe: model.name is required (a variant name, folder or Hub repo id)")
        if not self.data.source:
            raise ValueError("recipe: data.source is required (imagefolder:PATH, audiofolder:PATH, hub:ID or procedural:NAME)")
        if self.amp not in AMP_MODES:
            raise ValueError(f"recipe: amp must be one of {AMP_MODES}, got {self.amp!r}")
        for name, schedule in (("schedule", self.schedule), ("discriminator.schedule", self.discriminator and self.discriminator.schedule)):
            if schedule is not None and schedule.name not in SCHEDULES:
                raise ValueError(f"recipe: {name}.name must be one of {SCHEDULES}, got {schedule.name!r}")
        if self.discriminator is not None and self.discriminator.loss not in GAN_LOSSES:
            raise ValueError(f"recipe: discriminator.loss must be one of {GAN_LOSSES}, got {self.discriminator.loss!r}")
        if self.perceptual is not None and self.perceptual.name != "convnext_s":
            raise ValueError(f"recipe: perceptual.name must be convnext_s, got {self.perceptual.name!r}")
        if self.distributed.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"recipe: distributed.strategy must be ddp or fsdp, got {self.distributed.strategy!r}")
        for key in ("grad_accum", "steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"recipe: {key} must be >= 1, got {getattr(self, key)}")
        if self.data.batch_size < 1:
            raise ValueError(f"recipe: data.batch_size must be >= 1, got {self.data.batch_size}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"recipe: ema_decay must be in (0, 1), got {self.ema_decay}")
        for term, weight in self.loss_weights.items():
            if not isinstance(weight, (int, float)):
                raise ValueError(f"recipe: loss_weights.{term} must be a number, got {weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----- building from plain data ------------------------------------------------------------------
def _build(cls, data: Any, where: str):
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"recipe: {where or 'the recipe'} must be a mapping, got {type(data).__name__}")
    hints = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ValueError(
            f"recipe: unknown key(s) {', '.join(f'{where}.{k}'.lstrip('.') for k in unknown)}; "
            f"known keys{' of ' + where if where else ''}: {', '.join(sorted(hints))}"
        )
    kwargs = {}
    for name, value in data.items():
        section = _SECTIONS.get((cls, name))
        kwargs[name] = _build(section, value, f"{where}.{name}".lstrip(".")) if section else value
    return cls(**kwargs)


_SECTIONS = {
    (TrainConfig, "model"): ModelSection,
    (TrainConfig, "data"): DataSection,
    (TrainConfig, "optim"): OptimSection,
    (TrainConfig, "schedule"): ScheduleSection,
    (TrainConfig, "discriminator"): DiscriminatorSection,
    (TrainConfig, "distributed"): DistributedSection,
    (TrainConfig, "perceptual"): PerceptualSection,
    (DiscriminatorSection, "optim"): OptimSection,
    (DiscriminatorSection, "schedule"): ScheduleSection,
}


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`["optim.lr=3e-4", "data.batch_size=4", "discriminator=null"]` applied to a recipe dict;
    values are parsed as YAML (numbers, lists, null, booleans)."""
    data = copy.deepcopy(data)
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"override {override!r} must look like key=value (e.g. optim.lr=3e-4)")
        key, raw = override.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        target = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if target.get(part) is None:
                target[part] = {}
            target = target[part]
            if not isinstance(target, dict):
                raise ValueError(f"override {override!r}: {part!r} is not a section")
        target[parts[-1]] = value
    return data


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    # YAML reads `1e-4` as a string (YAML 1.1 needs a dot); recipes are friendlier with numbers.
    return _build(TrainConfig, _numbers(data), "")


def _numbers(value):
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") and value.lower() not in ("inf", "nan") else value
        except ValueError:
            return value
    return value


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        bundled = Path(__file__).parent / "recipes" / path.name
        bundled_yaml = bundled.with_suffix(".yaml")
        for candidate in (bundled, bundled_yaml):
            if candidate.exists():
                path = candidate
                break
        else:
            raise FileNotFoundError(f"recipe {path} not found (nor among the bundled recipes in {bundled.parent})")
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    return config_from_dict(apply_overrides(data, overrides or []))
