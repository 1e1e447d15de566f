"""`engine="auto" | "mlx" | "llama.cpp"`: which engine loads a model, why, and the errors when
the one asked for cannot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mullama import ConfigError, Model, ModelLoadError
from mullama.engines import choice
from mullama.engines.choice import choose_engine, requested_engine
from needs import engine_available


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(choice, "mlx_gpu", lambda: None)


@pytest.fixture
def without_llama_cpp(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llama_cpp" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_the_engine_asked_for_is_checked(monkeypatch) -> None:
    monkeypatch.delenv(choice.ENGINE_ENV, raising=False)
    assert requested_engine(None) == "auto"
    assert requested_engine("LLAMA.CPP") == "llama.cpp"
    with pytest.raises(ConfigError, match="invalid engine = 'cuda'.*'auto', 'mlx', 'llama.cpp'"):
        requested_engine("cuda")
    monkeypatch.setenv(choice.ENGINE_ENV, "mlx")
    assert requested_engine(None) == "mlx"
    assert requested_engine("llama.cpp") == "llama.cpp"  # an explicit engine wins
    monkeypatch.setenv(choice.ENGINE_ENV, "tpu")
    with pytest.raises(ConfigError, match=r"invalid \$MULLAMA_ENGINE = 'tpu'"):
        requested_engine(None)


def test_auto_takes_llama_cpp_on_a_cpu_only_host(no_gpu, tiny_gguf) -> None:
    engine_available("llama.cpp")
    picked = choose_engine("auto", tiny_gguf)
    assert picked.name == "llama.cpp"
    assert "no GPU" in picked.reason


def test_auto_takes_mlx_where_it_has_a_gpu(monkeypatch, tiny_gguf) -> None:
    monkeypatch.setattr(choice, "mlx_gpu", lambda: "Metal")
    picked = choose_engine("auto", tiny_gguf)
    assert picked == choice.EngineChoice("mlx", "auto: MLX computes on the GPU (Metal)")


def test_auto_takes_llama_cpp_for_an_architecture_mlx_does_not_map(monkeypatch, tiny_gguf):
    engine_available("llama.cpp")
    monkeypatch.setattr(choice, "mlx_gpu", lambda: "Metal")
    why = "GGUF file x.gguf has unsupported architecture 'mamba'"
    picked = choose_engine("auto", tiny_gguf, mlx_supports=why)
    assert picked.name == "llama.cpp" and why in picked.reason
    with pytest.raises(ModelLoadError, match="mamba"):
        choose_engine("mlx", tiny_gguf, mlx_supports=why)


def test_auto_falls_back_to_mlx_on_the_cpu(no_gpu, without_llama_cpp, tiny_gguf, tiny_mlx_folder):
    picked = choose_engine("auto", tiny_gguf)
    assert picked.name == "mlx" and "llama-cpp-python is not installed" in picked.reason
    folder = choose_engine("auto", tiny_mlx_folder)
    assert folder.name == "mlx" and "folder" in folder.reason


def test_an_engine_that_is_not_installed_names_its_install_command(without_llama_cpp, tiny_gguf):
    with pytest.raises(ModelLoadError, match=r"pip install 'mullama\[llama\]'"):
        Model.load(tiny_gguf, engine="llama.cpp")


def test_llama_cpp_refuses_a_folder(tiny_mlx_folder: Path) -> None:
    with pytest.raises(ModelLoadError, match="loads GGUF files.*is a folder"):
        Model.load(tiny_mlx_folder, engine="llama.cpp")


def test_the_model_says_which_engine_runs_it_and_why(tiny_gguf, engine_name) -> None:
    model = Model.load(tiny_gguf, engine=engine_name)
    assert model.engine.name == engine_name
    assert model.engine.reason == "asked for" or model.engine.reason.startswith("asked for (")
    assert engine_name in model.engine.describe()
    assert f"engine={engine_name!r}" in repr(model)
    assert model.n_ctx <= model.n_ctx_train
    if engine_name == "mlx":
        assert model.mlx_model is not None
    else:
        with pytest.raises(AttributeError, match="llama.cpp engine, which has no MLX module"):
            _ = model.mlx_model


def test_n_ctx_sizes_what_a_context_may_hold(tiny_gguf, engine_name) -> None:
    model = Model.load(tiny_gguf, engine=engine_name, n_ctx=64)
    assert model.n_ctx == 64
    with pytest.raises(ConfigError, match="n_ctx"):
        Model.load(tiny_gguf, engine=engine_name, n_ctx=0)
