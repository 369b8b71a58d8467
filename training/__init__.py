"""The shared trainer (installed as `modalzoo.training`).

    from modalzoo.training import load_recipe, train
    train(load_recipe("reference_image_tiny", ["steps=50"]))

or `modalzoo train RECIPE.yaml key=value ...`; multi-process with `accelerate launch`.
"""

from .config import TrainConfig, apply_overrides, config_from_dict, load_recipe
from .engine import Trainer, train

__all__ = ["TrainConfig", "Trainer", "apply_overrides", "config_from_dict", "load_recipe", "train"]
