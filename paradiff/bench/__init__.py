"""Benchmarks: ParaBench (LLM judge) and ShapeBench (exact judge on the shapes world)."""
