"""Model loading: GGUF files and MLX safetensors folders -> mlx-lm models.

load_model(path_or_name)   # dispatch: None/"smollm2", a .gguf file, or a folder
load_gguf(path)            # GGUF (llama, qwen2, qwen3, gemma3)
load_mlx_folder(path)      # config.json + *.safetensors, any mlx-lm architecture
"""

from mullama.loader.default_model import (
    default_model_path,
    load_model,
    resolve_model,
)
from mullama.loader.gguf_loader import SUPPORTED_ARCHITECTURES, load_gguf
from mullama.loader.loaded_model import LoadedModel
from mullama.loader.safetensors_loader import load_mlx_folder

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "LoadedModel",
    "default_model_path",
    "load_gguf",
    "load_mlx_folder",
    "load_model",
    "resolve_model",
]
