"""paradiff.registry: built-ins and entry points in one registry per extension point."""

from __future__ import annotations

from paradiff.bench.benchmark import Benchmark
from paradiff.bench.commands import BENCHMARKS
from paradiff.image_tokenizers.loading import AMUSED, MAGVIT2, registered_image_tokenizers
from paradiff.registry import Registry


def test_builtins_share_the_registry_with_entry_points():
    kinds = registered_image_tokenizers()
    assert kinds["AmusedTokenizer"] is AMUSED and kinds["Magvit2Tokenizer"] is MAGVIT2
    assert "ShapesImageTokenizer" in kinds  # the shapes world's entry point
    assert {"parabench", "shapebench"} <= set(BENCHMARKS.entries())
    for name, benchmark in BENCHMARKS.entries().items():  # objects, named by their subcommand
        assert isinstance(benchmark, Benchmark) and benchmark.name == name


def test_a_name_registered_first_keeps_its_value():
    registry = Registry("paradiff.benchmarks", {"shapebench": "mine"})
    registry.register("other", "theirs")
    assert registry.entries()["shapebench"] == "mine" and registry.entries()["other"] == "theirs"


def test_an_unimported_builtin_holds_no_tokenizer():
    kind = AMUSED.__class__("X", "no_such_module_here:Tokenizer", AMUSED.load, AMUSED.save)
    assert not kind.holds(object())
