"""Families and their named variants.

A family is a (config, model, processor) triple registered with the transformers Auto classes;
a variant is a named config of a family (`titok-l32`, `wavtokenizer-75-large`, `<family>-tiny`)
that `create_model` builds at random init, as `timm.create_model` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoModel

from .modeling_utils import ModalTokenizer, ModalTokenizerConfig


@dataclass(frozen=True)
class Family:
    name: str
    config_class: type[ModalTokenizerConfig]
    model_class: type[ModalTokenizer]
    processor_class: type | None

    @property
    def modality(self) -> str:
        return self.model_class.modality


@dataclass(frozen=True)
class Variant:
    name: str
    family: str
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def build_config(self, **overrides) -> ModalTokenizerConfig:
        config_class = FAMILIES[self.family].config_class
        return config_class(**{**self.config_kwargs, **overrides, "variant": self.name})


FAMILIES: dict[str, Family] = {}
VARIANTS: dict[str, Variant] = {}


def register_family(
    name: str,
    *,
    config_class: type[ModalTokenizerConfig],
    model_class: type[ModalTokenizer],
    processor_class: type | None = None,
) -> Family:
    """Registers a family with AutoConfig / AutoModel and the matching processor Auto class.
    Idempotent: importing a family twice (or reloading it) re-registers without error."""
    if config_class.model_type != name:
        raise ValueError(f"{config_class.__name__}.model_type must be {name!r}, got {config_class.model_type!r}")
    AutoConfig.register(name, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    if processor_class is not None:
        if model_class.modality == "image":
            AutoImageProcessor.register(
                config_class, image_processor_classes={"torchvision": processor_class}, exist_ok=True
            )
        else:
            AutoFeatureExtractor.register(config_class, processor_class, exist_ok=True)
    family = Family(name, config_class, model_class, processor_class)
    FAMILIES[name] = family
    return family


def register_variant(name: str, family: str, description: str = "", **config_kwargs) -> Variant:
    if family not in FAMILIES:
        raise KeyError(f"family {family!r} is not registered; register it before its variants")
    variant = Variant(name, family, config_kwargs, description)
    VARIANTS[name] = variant
    return variant


def _lookup(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        close = sorted(v for v in VARIANTS if v.split("-")[0] == name.split("-")[0]) or sorted(VARIANTS)
        raise KeyError(f"unknown model {name!r}; known variants include: {', '.join(close[:20])}") from None


def create_config(name: str, **overrides) -> ModalTokenizerConfig:
    return _lookup(name).build_config(**overrides)


def create_model(name: str, **overrides) -> ModalTokenizer:
    """Builds the registered variant `name` at random init (config fields may be overridden)."""
    config = create_config(name, **overrides)
    model = FAMILIES[_lookup(name).family].model_class(config)
    return model.eval()


def create_processor(name_or_config: str | ModalTokenizerConfig):
    """The processor (image processor or feature extractor) matching a variant or config."""
    config = create_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    processor_class = FAMILIES[config.model_type].processor_class
    if processor_class is None:
        raise ValueError(f"family {config.model_type!r} has no processor")
    return processor_class.from_model_config(config)


def list_models(family: str | None = None, modality: str | None = None) -> list[dict[str, Any]]:
    """One row per variant: name, family, modality, codebook sizes, token rate / max tokens."""
    rows = []
    for variant in sorted(VARIANTS.values(), key=lambda v: (v.family, v.name)):
        fam = FAMILIES[variant.family]
        if (family and fam.name != family) or (modality and fam.modality != modality):
            continue
        config = variant.build_config()
        rows.append(
            {
                "name": variant.name,
                "family": fam.name,
                "modality": fam.modality,
                "codebook_sizes": list(config.codebook_sizes),
                "token_rate": config.token_rate,
                "max_tokens": config.max_tokens,
                "description": variant.description,
            }
        )
    return rows


def tiny_variant(family: str) -> str | None:
    """The family's `-tiny` variant (tests, examples and smoke benchmarks use it), if any."""
    return next((v.name for v in VARIANTS.values() if v.family == family and v.name.endswith("-tiny")), None)


def family_of(config: ModalTokenizerConfig) -> Family:
    return FAMILIES[config.model_type]

