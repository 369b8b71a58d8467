"""Bridge to LLMs: modality codes <-> token ids of a text tokenizer extended with code tokens.

`mapping` holds the pure code <-> id arithmetic; `MultimodalTokenizer` wraps a text tokenizer and
modalzoo tokenizers into one `AutoTokenizer`-loadable tokenizer (registered on import).
"""

from .mapping import CodeBlockLayout, NumberTokens, ParsedSpan, SpanError, SpanLayout, SpanLocation, locate_spans
from .modalities import DecodedModalities, DecodedSpan, ModalityEntry, infer_span_kind
from .multimodal_tokenizer import MultimodalTokenizer, MultimodalTokenizerConfig

__all__ = [
    "CodeBlockLayout",
    "DecodedModalities",
    "DecodedSpan",
    "ModalityEntry",
    "MultimodalTokenizer",
    "MultimodalTokenizerConfig",
    "NumberTokens",
    "ParsedSpan",
    "SpanError",
    "SpanLayout",
    "SpanLocation",
    "infer_span_kind",
    "locate_spans",
]
