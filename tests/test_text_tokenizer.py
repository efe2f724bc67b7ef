"""TextTokenizer: loading a local tokenizer.json, special strings, round trips, errors."""

from __future__ import annotations

import json

import pytest

from paradiff.text_tokenizer import REQUIRED_SPECIAL_TOKENS, TextTokenizer, TokenizerError
from tests.builders import TEST_BOS, TEST_EOS, TEST_PAD, build_test_text_tokenizer

PROMPT = (
    "<system>Generate an image according to the text prompt.</system>"
    "<user>A red square left of a blue circle ☃ — naïve café</user></answer>"
)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return build_test_text_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return TextTokenizer.from_pretrained(tokenizer_dir)


def test_required_strings_encode_to_single_distinct_ids(tokenizer):
    ids = [tokenizer.special_id(token) for token in REQUIRED_SPECIAL_TOKENS]
    assert len(set(ids)) == len(REQUIRED_SPECIAL_TOKENS)
    for token, token_id in zip(REQUIRED_SPECIAL_TOKENS, ids, strict=True):
        assert tokenizer.token_to_id(token) == token_id
        assert tokenizer.id_to_token(token_id) == token


def test_special_strings_inside_text_encode_to_their_ids(tokenizer):
    ids = tokenizer.encode(PROMPT)
    system, end_system = tokenizer.special_id("<system>"), tokenizer.special_id("</system>")
    user, end_user = tokenizer.special_id("<user>"), tokenizer.special_id("</user>")
    assert ids[0] == system
    assert ids.count(end_system) == 1 and ids.count(user) == 1 and ids.count(end_user) == 1
    assert ids[-1] == tokenizer.special_id("</answer>")
    glued = tokenizer.encode("abc<uncondition>def")  # no spaces around the special string
    assert tokenizer.special_id("<uncondition>") in glued


def test_encode_adds_no_bos_or_eos(tokenizer):
    ids = tokenizer.encode("A red square.")
    assert tokenizer.bos_id not in ids and tokenizer.eos_id not in ids
    assert tokenizer.encode("") == []


def test_decode_round_trips_text(tokenizer):
    assert tokenizer.decode(tokenizer.encode(PROMPT)) == PROMPT
    plain = tokenizer.decode(tokenizer.encode(PROMPT), skip_special_tokens=True)
    assert "<system>" not in plain and "</answer>" not in plain
    assert plain.startswith("Generate an image according") and plain.endswith("naïve café")


def test_decode_rejects_ids_outside_the_vocabulary(tokenizer):
    ids = tokenizer.encode("A red square.")
    with pytest.raises(TokenizerError, match="outside the text vocabulary"):
        tokenizer.decode([*ids, len(tokenizer) + 5])


def test_sizes_and_named_ids(tokenizer):
    assert len(tokenizer) == tokenizer.vocab_size == 400
    assert tokenizer.bos_id == tokenizer.special_id(TEST_BOS)
    assert tokenizer.eos_id == tokenizer.special_id(TEST_EOS)
    assert tokenizer.pad_id == tokenizer.special_id(TEST_PAD)
    assert len({tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id}) == 3


def test_special_tokens_map_overrides_config_in_added_token_form(tmp_path):
    folder = build_test_text_tokenizer(tmp_path)
    override = {"eos_token": {"content": TEST_PAD, "special": True}}
    (folder / "special_tokens_map.json").write_text(json.dumps(override))
    loaded = TextTokenizer.from_pretrained(folder)
    assert loaded.eos_id == loaded.special_id(TEST_PAD)
    assert loaded.bos_id == loaded.special_id(TEST_BOS)


def test_special_id_refuses_text_of_several_tokens(tokenizer):
    with pytest.raises(TokenizerError, match="not a single token"):
        tokenizer.special_id("<answer>")  # not an added token: several byte-level pieces


def test_save_and_reload_give_the_same_tokenizer(tokenizer, tmp_path):
    saved = tokenizer.save(tmp_path / "copy")
    reloaded = TextTokenizer.from_pretrained(saved)
    assert reloaded.encode(PROMPT) == tokenizer.encode(PROMPT)
    assert reloaded.named_tokens == tokenizer.named_tokens
    assert len(reloaded) == len(tokenizer)


def test_loads_a_tokenizer_json_path_directly(tokenizer_dir, tokenizer):
    direct = TextTokenizer.from_pretrained(tokenizer_dir / "tokenizer.json")
    assert direct.encode(PROMPT) == tokenizer.encode(PROMPT)


def test_missing_required_string_is_named(tmp_path):
    folder = build_test_text_tokenizer(tmp_path, omit_special_tokens=("</answer>",))
    with pytest.raises(TokenizerError, match="'</answer>'") as info:
        TextTokenizer.from_pretrained(folder)
    assert "\n" not in str(info.value)
    assert "'<system>'" not in str(info.value)


def test_required_strings_are_a_parameter(tmp_path):
    folder = build_test_text_tokenizer(
        tmp_path, extra_special_tokens=("<image>",), omit_special_tokens=("</answer>",)
    )
    family = ("<system>", "</system>", "<image>")
    loaded = TextTokenizer.from_pretrained(folder, required_special_tokens=family)
    assert len(loaded.encode("</answer>")) > 1
    with pytest.raises(TokenizerError, match="'</image>'"):
        TextTokenizer.from_pretrained(folder, required_special_tokens=(*family, "</image>"))


def test_missing_folder_raises(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer.json in"):
        TextTokenizer.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(TokenizerError, match="no tokenizer.json in"):
        TextTokenizer.from_pretrained(tmp_path)  # exists, but empty


def test_corrupt_files_raise_one_line_errors(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(TokenizerError, match="cannot read tokenizer") as info:
        TextTokenizer.from_pretrained(tmp_path)
    assert "\n" not in str(info.value)
    folder = build_test_text_tokenizer(tmp_path / "good")
    (folder / "tokenizer_config.json").write_text("[1, 2")
    with pytest.raises(TokenizerError, match="cannot read .*tokenizer_config.json"):
        TextTokenizer.from_pretrained(folder)
