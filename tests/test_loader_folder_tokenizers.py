"""MLX folders whose tokenizer.json is a real family's configuration: they load, generate,
and stream exactly the text Hugging Face decodes from the generated ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tokenizers", minversion="0.20")
pytest.importorskip("mlx_lm")

from hf_families import write_family  # noqa: E402
from mullama import Context, Model, StreamConfig  # noqa: E402
from mullama.testing.tiny_models import TinyConfig, write_tiny_mlx_folder  # noqa: E402
from text_rules import streamed_matches_decode_all

GREEDY = StreamConfig(max_tokens=24, temperature=0.0, timeout_ms=0)
SAMPLED = StreamConfig(max_tokens=24, temperature=1.5, top_k=0, top_p=1.0, seed=3, timeout_ms=0)


@pytest.fixture(scope="module", params=["llama3", "llama2", "qwen2"])
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"mlx-{request.param}")
    hf, _ = write_family(request.param, path / "tok")
    vocab = [hf.id_to_token(i) for i in range(hf.get_vocab_size())]
    write_tiny_mlx_folder(path / "model", TinyConfig(vocab=vocab))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (path / "model" / name).write_bytes((path / "tok" / name).read_bytes())
    return request.param, hf, path / "model"


def test_folder_streams_what_hugging_face_decodes(folder):
    _, hf, path = folder
    model = Model.load(path)
    for config in (GREEDY, SAMPLED):
        ctx = Context(model)
        stream = ctx.generate_stream("the quick brown fox 日本語 😀", config=config)
        events = list(stream)
        ids = [e.token for e in events if e.token is not None]
        assert ids, "nothing was generated"
        streamed = "".join(e.text for e in events)
        dropped = stream.stats["incomplete_bytes_dropped"]
        want = hf.decode(ids, skip_special_tokens=True)
        assert streamed_matches_decode_all(streamed, want, dropped), (streamed, want)
        assert want == model.tokenizer.decode(ids, skip_special=True)


def test_prompt_ids_follow_the_tokenizer_file(folder):
    name, hf, path = folder
    model = Model.load(path)
    text = "hello world 12345 café"
    want = hf.encode(text).ids if name != "qwen2" else hf.encode(text, add_special_tokens=False).ids
    assert model.prompt_ids(text) == want


def test_generation_config_eos_ids_stop_generation(folder):
    name, hf, path = folder
    plain = hf.token_to_id("the")
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [plain]}))
    try:
        model = Model.load(path)
        assert plain in model.end_of_generation_ids
    finally:
        (path / "generation_config.json").unlink()
    assert plain not in Model.load(path).end_of_generation_ids


def test_chat_template_of_the_folder_still_renders(folder, tmp_path: Path):
    name, hf, path = folder
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    model = Model.load(path)
    assert model.apply_chat_template([{"role": "user", "content": "hi"}]) == "[hi]"
