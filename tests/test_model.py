"""MaskPredictor and checkpoint IO: padding, restricted logits, dtypes, save/load, errors."""

from __future__ import annotations

import json

import pytest
import torch

from paradiff import checkpoint
from paradiff.checkpoint import CheckpointError
from paradiff.layout import FAMILY_A, LayoutError, token_space_from_config
from paradiff.model import MaskPredictor, eval_mode
from paradiff.model_config import ConfigError, ModelConfig, tiny_config


@pytest.fixture(scope="module")
def model() -> MaskPredictor:
    torch.manual_seed(0)
    return MaskPredictor(tiny_config(300, n_kv_heads=2)).eval()


def test_padded_rows_match_unpadded(model):
    a = torch.randint(0, 300, (1, 11))
    b = torch.randint(0, 300, (1, 6))
    ids = torch.cat([a, torch.cat([torch.zeros(1, 5, dtype=torch.long), b], 1)])
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    with torch.no_grad():
        batched = model(ids, attention_mask=mask)
        assert torch.allclose(batched[0], model(a)[0], atol=1e-5)
        assert torch.allclose(batched[1, 5:], model(b)[0], atol=1e-5)


def test_logits_at_and_vocab_range_select_the_same_numbers(model):
    ids = torch.randint(0, 300, (2, 9))
    with torch.no_grad():
        full = model(ids)
        at = torch.tensor([1, 4, 8])
        assert torch.allclose(model(ids, logits_at=at), full[:, at], atol=1e-6)
        per_row = torch.tensor([[0, 2], [3, 7]])
        picked = model(ids, logits_at=per_row, vocab_range=(100, 250))
        assert picked.shape == (2, 2, 150)
        assert torch.allclose(picked[1, 1], full[1, 7, 100:250], atol=1e-6)


def test_bfloat16_forward_is_close_to_float32(model):
    ids = torch.randint(0, 300, (1, 12))
    low = MaskPredictor(model.config)
    low.load_state_dict(model.state_dict())
    with torch.no_grad():
        ref = model(ids)
        out = low.to(torch.bfloat16)(ids)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


@pytest.mark.parametrize("shard", [None, 40_000])
def test_save_and_load_round_trip(tmp_path, model, shard):
    model.save_pretrained(str(tmp_path / "ckpt"), max_shard_bytes=shard)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    if shard:
        assert "model.safetensors.index.json" in files and len(files) > 3
    loaded = MaskPredictor.from_pretrained(str(tmp_path / "ckpt"))
    ids = torch.randint(0, 300, (1, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_save_replaces_existing_checkpoint_atomically(tmp_path, model):
    target = tmp_path / "ckpt"
    model.save_pretrained(str(target))
    model.save_pretrained(str(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_interrupted_save_leaves_the_old_checkpoint(tmp_path, model):
    target = tmp_path / "ckpt"
    model.save_pretrained(str(target))
    before = (target / "model.safetensors").read_bytes()

    def fail(_dir):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.save_model(model, target, write_extra=fail)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize("key", ["dtype", "torch_dtype"])
def test_config_dtype_under_either_key(tmp_path, model, key):
    model.save_pretrained(str(tmp_path))
    raw = json.loads((tmp_path / "config.json").read_text())
    raw.pop("dtype"), raw.pop("torch_dtype")
    raw[key] = "bfloat16"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert MaskPredictor.from_pretrained(str(tmp_path)).dtype == torch.bfloat16
    assert MaskPredictor.from_pretrained(str(tmp_path), dtype="float32").dtype == torch.float32


def test_hub_id_resolves_through_the_downloader(tmp_path, model, monkeypatch):
    model.save_pretrained(str(tmp_path / "snap"))
    asked = []

    def fake_download(repo_id):
        asked.append(repo_id)
        return tmp_path / "snap"

    monkeypatch.setattr(checkpoint, "download_snapshot", fake_download)
    loaded = MaskPredictor.from_pretrained("tyfeld/MMaDA-Parallel-A")
    assert asked == ["tyfeld/MMaDA-Parallel-A"]
    assert loaded.config.d_model == model.config.d_model


def test_a_hub_id_that_cannot_be_fetched_is_one_checkpoint_error(monkeypatch):
    """A path that looks like `owner/name` and is no folder here: the hub client's failure (no
    network here) becomes one message that names both readings."""
    import huggingface_hub

    def offline(repo_id, repo_type):
        raise ConnectionError(f"cannot reach the hub for {repo_id}\nName or service not known")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.resolve_checkpoint_dir("models/none-here")
    message = str(err.value)
    assert "models/none-here is no folder here" in message and "\n" not in message
    assert "ConnectionError: Name or service not known" in message


def test_bundled_models_answer_to_their_names_and_aliases(tmp_path, monkeypatch):
    """A bare bundled name (`shapes`, its alias `shapes-sft`) is the bundled model even beside a
    local folder of that name; `./shapes` is the local folder; an unknown name lists the known."""
    bundled = checkpoint.BUNDLED_MODELS / checkpoint.DEFAULT_MODEL
    assert checkpoint.resolve_checkpoint_dir(None) == bundled
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes").mkdir()
    for name in ("shapes", *checkpoint.BUNDLED_ALIASES):
        assert checkpoint.resolve_checkpoint_dir(name) == bundled
    assert checkpoint.resolve_checkpoint_dir("./shapes").resolve() == tmp_path / "shapes"
    assert "shapes-sft" in checkpoint.bundled_model_names()
    with pytest.raises(
        FileNotFoundError, match=r"no bundled model 'nope' \(available: .*shapes-sft"
    ):
        checkpoint.bundled_model_dir("nope")
    with pytest.raises(CheckpointError, match="no checkpoint directory at rewards"):
        checkpoint.resolve_checkpoint_dir("rewards")  # a bundled folder, but no model


def test_mmada_config_loads_as_family_m():
    raw = {
        "model_type": "mmada",
        "d_model": 32,
        "n_heads": 2,
        "n_layers": 1,
        "mlp_hidden_size": 64,
        "vocab_size": 126464,
        "llm_vocab_size": 126464,
        "new_vocab_size": 134656,
        "codebook_size": 8192,
        "num_vq_tokens": 256,
        "num_new_special_tokens": 0,
        "torch_dtype": "bfloat16",
    }
    config = ModelConfig.from_dict(raw)
    assert config.embedding_size == 134656
    space = token_space_from_config(config)
    assert space.family == "M" and space.image_offset == 126464


def write_config(tmp_path, model, **changes):
    model.save_pretrained(str(tmp_path))
    raw = json.loads((tmp_path / "config.json").read_text())
    raw.update(changes)
    (tmp_path / "config.json").write_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"block_type": "sequential"}, "unsupported block_type 'sequential'"),
        ({"activation_type": "gelu"}, "unsupported activation_type 'gelu'"),
        ({"alibi": True}, "unsupported config option alibi=true"),
    ],
)
def test_unsupported_config_is_a_one_line_error(tmp_path, model, changes, message):
    write_config(tmp_path, model, **changes)
    with pytest.raises(CheckpointError, match=message) as err:
        MaskPredictor.from_pretrained(str(tmp_path))
    assert "\n" not in str(err.value)


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path, model):
    write_config(tmp_path, model, mlp_hidden_size=96)
    with pytest.raises(
        CheckpointError, match=r"blocks\.0\.ff_proj\.weight.*\(128, 64\).*\(96, 64\)"
    ):
        MaskPredictor.from_pretrained(str(tmp_path))


def test_missing_files_are_named(tmp_path, model):
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        MaskPredictor.from_pretrained(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        MaskPredictor.from_pretrained(str(tmp_path / "empty"))
    model.save_pretrained(str(tmp_path / "noweights"))
    (tmp_path / "noweights" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        MaskPredictor.from_pretrained(str(tmp_path / "noweights"))
    model.save_pretrained(str(tmp_path / "corrupt"))
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read"):
        MaskPredictor.from_pretrained(str(tmp_path / "corrupt"))


def test_vocab_smaller_than_the_layout_needs():
    config = tiny_config(FAMILY_A.vocab_size - 1, model_type="llada")
    with pytest.raises(LayoutError, match="smaller than family A needs"):
        token_space_from_config(config)


def test_bad_config_values():
    with pytest.raises(ConfigError, match="not divisible"):
        tiny_config(100, d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="unknown dtype"):
        tiny_config(100, dtype="float8")


def test_eval_mode_restores_the_models_mode_even_after_an_error():
    model = torch.nn.Sequential(torch.nn.Dropout(0.5)).train()
    with eval_mode(model) as inside:
        assert inside is model and not model.training
    assert model.training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("a failing evaluation")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training
