"""--quantize int8|int4 and --offload: the streamed quantized loader, its accuracy on a tiny random
checkpoint, the flags and their one-line refusals (torchao missing simulated)."""

from __future__ import annotations

import json
import sys
import weakref
from pathlib import Path

import pytest
import torch

import paradiff.checkpoint as checkpoint
from paradiff.cli import main
from paradiff.model import MaskPredictor
from paradiff.model_config import tiny_config
from paradiff.pipeline import ParallelPipeline
from paradiff.quantization import (
    QuantizationUnavailable,
    check_quantization,
    int4_group_size,
    offload_blocks,
)

try:
    check_quantization("int4", "cpu")
    HAVE_TORCHAO = True
except QuantizationUnavailable:
    HAVE_TORCHAO = False
needs_torchao = pytest.mark.skipif(not HAVE_TORCHAO, reason="torchao (paradiff[quant]) missing")

# Accuracy bounds on the tiny model below (logits of std ~0.57, max |logit| ~2.4): measured
# errors are ~0.4% of max |logit| for int8 and ~2-3% for int4; the bounds leave ~4x headroom.
INT8_TOLERANCE = 0.02  # max |logit - float logit| / max |float logit|
INT4_TOLERANCE = 0.10


def tiny_model(seed: int = 0) -> MaskPredictor:
    torch.manual_seed(seed)
    config = tiny_config(96, d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=128)
    return MaskPredictor(config).eval()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> tuple[MaskPredictor, Path]:
    """A tiny random float32 model and its checkpoint in 12 shards."""
    model = tiny_model()
    directory = tmp_path_factory.mktemp("quant") / "model"
    model.save_pretrained(str(directory), max_shard_bytes=40_000)
    assert len(list(directory.glob("*.safetensors"))) > 1
    return model, directory


def sample_ids() -> torch.Tensor:
    return torch.randint(0, 96, (2, 24), generator=torch.Generator().manual_seed(0))


@needs_torchao
@pytest.mark.parametrize(
    ("mode", "tolerance"), [("int8", INT8_TOLERANCE), ("int4", INT4_TOLERANCE)]
)
def test_quantized_logits_are_close_to_float(sharded, mode, tolerance):
    model, directory = sharded
    quantized = MaskPredictor.from_pretrained(str(directory), quantize=mode)
    ids = sample_ids()
    with torch.no_grad():
        ref, out = model(ids), quantized(ids)
        sliced = quantized.logits(quantized.hidden_states(ids), vocab_range=(40, 96))
    error = (out - ref).abs().max().item()
    assert 0 < error <= tolerance * ref.abs().max().item()
    assert torch.allclose(sliced, out[..., 40:96], atol=1e-5)  # the head's vocabulary slices
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9
    stored = quantized.quantization["stored"]
    assert sum(stored.values()) == 2 * 7 + 1  # every linear layer, the head included
    if mode == "int4":
        assert stored["int8"] == 1  # the head (its slices need int8)
    assert quantized.quantization["bytes"] < sum(
        t.numel() * t.element_size() for t in model.state_dict().values()
    )


@needs_torchao
def test_streamed_load_holds_one_checkpoint_tensor_at_a_time(sharded, monkeypatch):
    """Each tensor is read on its own and a linear layer's float weight is gone (quantized)
    before the next tensor is read; the whole-state-dict reader is never used."""
    _, directory = sharded
    alive: list[weakref.ref] = []
    names: list[tuple[int, ...]] = []
    overlaps = []
    read = checkpoint.read_tensor

    def spy(handle, entry):
        overlaps.append(sum(ref() is not None for ref in alive))
        tensor = read(handle, entry)
        names.append(entry.shape)
        if len(entry.shape) == 2 and entry.shape[0] != 96:  # a block's linear weight
            alive.append(weakref.ref(tensor))
        return tensor

    def refuse(*_args, **_kwargs):
        raise AssertionError("the streamed loader read a whole file at once")

    monkeypatch.setattr(checkpoint, "read_tensor", spy)
    monkeypatch.setattr(checkpoint, "load_file", refuse)
    monkeypatch.setattr(checkpoint, "load_state_dict", refuse)
    model = MaskPredictor.from_pretrained(str(directory), quantize="int8")
    assert len(names) == len(model.state_dict())
    assert len(alive) == 2 * 7
    assert max(overlaps) == 0  # no float linear weight outlived its quantization


@needs_torchao
def test_streamed_load_checks_names_shapes_and_values(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.transformer.blocks[1].up_proj.weight[3, 4] = float("nan")
    model.save_pretrained(str(tmp_path / "nan"))
    with pytest.raises(ValueError, match="up_proj.weight holds NaN"):
        MaskPredictor.from_pretrained(str(tmp_path / "nan"), quantize="int8")
    wide = MaskPredictor(tiny_config(96, d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=192))
    wide.save_pretrained(str(tmp_path / "wide"))
    (tmp_path / "wide" / "config.json").write_text((tmp_path / "nan" / "config.json").read_text())
    with pytest.raises(checkpoint.CheckpointError, match="shape mismatch"):
        MaskPredictor.from_pretrained(str(tmp_path / "wide"), quantize="int4")


def test_unquantized_load_is_bit_identical(sharded):
    """The float path is the one it was: every weight and the logits exactly equal."""
    model, directory = sharded
    loaded = MaskPredictor.from_pretrained(str(directory))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    ids = sample_ids()
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    assert not hasattr(loaded, "quantization")


@needs_torchao
def test_offloaded_blocks_give_the_same_logits(sharded):
    """accelerate's hooks around each block (run here with the CPU as the execution device, so
    the machinery is tested without a GPU), on int8 weights."""
    _, directory = sharded
    quantized = MaskPredictor.from_pretrained(str(directory), quantize="int8")
    ids = sample_ids()
    with torch.no_grad():
        before = quantized(ids)
        offload_blocks(quantized, quantized.transformer.blocks, "cpu")
        assert quantized.transformer.blocks[0].q_proj.weight.device.type == "meta"
        assert torch.equal(quantized(ids), before)


def test_int4_group_sizes():
    assert int4_group_size(4096, 12288) == 128
    assert int4_group_size(352, 128) == 32
    assert int4_group_size(96, 64) == 32
    assert int4_group_size(100, 64) is None  # no group divides it: int8 instead
    assert int4_group_size(128, 527) is None  # out-features no multiple of 16


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--quantize", "int2"], "invalid choice: 'int2'"),
        (["--offload"], "--offload keeps the weights on the CPU"),
        (["--offload", "--quantize", "int4", "--device", "cpu"], "needs a CUDA device"),
        (["--quantize", "int8", "--device", "meta"], "--device 'meta'"),
    ],
)
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    try:
        code, err = run_cli(["generate", "a red circle", "--out", str(out), *flags], capsys)
    except SystemExit as exit_:  # argparse's own refusal
        code, err = exit_.code, capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_torchao_is_one_line(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "torchao" or m.startswith("torchao.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao -> ImportError
    out = tmp_path / "out"
    for command in (["generate", "a red circle"], ["bench", "shapebench", "--limit", "1"]):
        code, err = run_cli([*command, "--out", str(out), "--quantize", "int8"], capsys)
        assert code == 2
        assert len(err.strip().splitlines()) == 1
        assert "needs torchao, which is not installed: pip install 'paradiff[quant]'" in err
        assert "Traceback" not in err
        assert not out.exists()
    with pytest.raises(QuantizationUnavailable, match="needs torchao"):
        ParallelPipeline.from_pretrained(None, device="cpu", quantize="int4")


@needs_torchao
def test_missing_int4_kernel_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.prototype.quantization.int4", None)
    out = tmp_path / "out"
    code, err = run_cli(
        ["generate", "a red circle", "--out", str(out), "--quantize", "int4", "--device", "cpu"],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "int4 on the CPU needs torchao's PrototypeInt4WeightOnlyConfig" in err
    assert not out.exists()


@needs_torchao
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_generate_with_the_bundled_model_quantized(tmp_path, capsys, mode):
    out = tmp_path / mode
    argv = ["generate", "Draw a red circle.", "--out", str(out), "--quantize", mode, "--quiet"]
    argv += ["--device", "cpu", "--text-steps", "8", "--timesteps", "4"]
    code, err = run_cli(argv, capsys)
    assert code == 0, err
    assert (out / "image.png").is_file() and (out / "reasoning.txt").read_text().strip()


@needs_torchao
def test_pipeline_and_app_loader_take_quantize():
    from paradiff.demo import load_demo_pipeline

    pipe = load_demo_pipeline(None, "cpu", quantize="int8")
    assert pipe.model.quantization["mode"] == "int8"
    assert pipe.model.quantization["stored"] == {"int8": 6 * 7 + 1}


@needs_torchao
def test_large_weights_quantize_in_row_blocks_to_the_same_int8(monkeypatch):
    """The head is quantized a block of rows at a time (bounded temporaries): bit for bit what
    torchao gives for the whole weight."""
    import paradiff.quantization as quantization

    torch.manual_seed(0)
    whole = torch.nn.Linear(64, 200, bias=False)
    blocks = torch.nn.Linear(64, 200, bias=False)
    blocks.load_state_dict(whole.state_dict())
    quantizer = quantization.Quantizer("int8", "cpu")
    quantizer.apply("whole", whole)
    monkeypatch.setattr(quantization, "INT8_BLOCK_VALUES", 64 * 37)  # 6 blocks, the last short
    quantizer.apply("blocks", blocks)
    for inner in whole.weight.__tensor_flatten__()[0]:
        assert torch.equal(getattr(whole.weight, inner), getattr(blocks.weight, inner)), inner
    x = torch.randn(3, 64)
    assert torch.equal(whole(x), blocks(x))


@needs_torchao
def test_large_weights_stream_from_the_file_in_row_blocks(sharded, monkeypatch):
    """A weight past the block size is read from the file a block of rows at a time: the same
    int8 model as reading it whole."""
    import paradiff.quantization as quantization

    _, directory = sharded
    whole = MaskPredictor.from_pretrained(str(directory), quantize="int8")
    monkeypatch.setattr(quantization, "INT8_BLOCK_VALUES", 64 * 10)
    read_rows = checkpoint.read_rows
    reads = []
    monkeypatch.setattr(
        checkpoint, "read_rows", lambda *a: reads.append(a[3] - a[2]) or read_rows(*a)
    )
    blocks = MaskPredictor.from_pretrained(str(directory), quantize="int8")
    assert reads and max(reads) == 10  # rows of 64 values, 10 a block
    ids = sample_ids()
    with torch.no_grad():
        assert torch.equal(whole(ids), blocks(ids))


@needs_torchao
def test_a_bench_folder_records_the_quantization_and_refuses_other_weights(tmp_path, capsys):
    out = tmp_path / "sb"
    base = ["bench", "shapebench", "--limit", "2", "--out", str(out), "--device", "cpu", "--json"]
    base += ["--text-steps", "8", "--timesteps", "4"]
    code, err = run_cli([*base, "--quantize", "int8"], capsys)
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["quantize"] == "int8"
    code, err = run_cli(base, capsys)  # the same folder with float weights: another run
    assert code == 2 and len(err.strip().splitlines()) == 1
