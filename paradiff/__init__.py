"""paradiff: thinking-aware image generation and editing with parallel masked diffusion.

Public API:
    ParallelPipeline, SampleResult, Request                  (paradiff.pipeline)
    SamplerConfig, ParallelSampler                           (paradiff.sampling)
    MaskPredictor, ModelConfig                               (paradiff.model, paradiff.model_config)
    Layout, TokenSpace                                       (paradiff.layout)
    TextTokenizer                                            (paradiff.text_tokenizer)
Names are imported on first use, so `import paradiff` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ParallelPipeline": "paradiff.pipeline",
    "SampleResult": "paradiff.pipeline",
    "Request": "paradiff.pipeline",
    "SamplerConfig": "paradiff.sampling",
    "ParallelSampler": "paradiff.sampling",
    "MaskPredictor": "paradiff.model",
    "ModelConfig": "paradiff.model_config",
    "Layout": "paradiff.layout",
    "TokenSpace": "paradiff.layout",
    "TextTokenizer": "paradiff.text_tokenizer",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'paradiff' has no attribute {name!r}")
