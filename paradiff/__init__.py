"""paradiff: thinking-aware image generation and editing with parallel masked diffusion."""

__version__ = "0.1.0"
