"""modalzoo: multimodal tokenizers (image, audio, speech, 3D, CAD) as Hugging Face models.

Importing the package registers every family with transformers' Auto classes, so that
`AutoModel.from_pretrained` / `AutoImageProcessor` / `AutoFeatureExtractor` load saved models.
"""

from . import models  # noqa: F401  (registers every family)
from .bridge import MultimodalTokenizer  # registers the bridge with AutoTokenizer
from .modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, ModalTokenizerConfig, TokenizerOutput
from .registry import create_config, create_model, create_processor, list_models

__version__ = "0.1.0"

__all__ = [
    "DecoderOutput",
    "EncoderOutput",
    "ModalTokenizer",
    "ModalTokenizerConfig",
    "MultimodalTokenizer",
    "TokenizerOutput",
    "create_config",
    "create_model",
    "create_processor",
    "list_models",
]
