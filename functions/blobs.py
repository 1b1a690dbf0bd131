"""Large payloads: a blob store for what is too big for the broker, and the references that stand for it.

A function's output (or an invoke the router rendered) whose JSON is over `threshold_bytes` is written to
the blob store and travels as a reference; the function that receives it resolves every reference in its
input before validating it, so it sees the real value:

    {"$blob": "file:///srv/.knflow/blobs/runs/RUN/NODE/1/output-5d41402abc4b2a76.json",
     "size_bytes": 5000017, "sha256": "5d41…", "media_type": "application/json"}

Keys are `runs/{run}/{node}/{attempt}/{name}-{sha256[:16]}.json`: retries and replays never collide, and a
redelivered invoke that writes the same output again rewrites the same blob. A reference is only read from
under the store's own URL, and only under the run's own prefix (`runs/RUN/`): data from outside cannot make a
function read other files, nor another run's blobs; and ingress refuses external data that carries `$blob`.

The store is a URL: a local directory (`file://`; by default `.knflow/blobs` under the working directory)
or anything fsspec opens (`s3://bucket/prefix`, with the `s3` extra). fsspec is imported on the first
write or read, never by `import knflow`. The router, dispatchers and function services must agree on the
URL; they all read `KNFLOW_BLOB_URL` and `KNFLOW_BLOB_THRESHOLD_BYTES` (see `knflow.settings`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping
from urllib.parse import quote

from broker.errors import InvalidEvent, KnflowError
from broker.redact import mask_url, redact

REF_KEY = "$blob"
MEDIA_JSON = "application/json"
DEFAULT_THRESHOLD_BYTES = 256 * 1024
DEFAULT_DIR = ".knflow/blobs"
ENV_URL = "KNFLOW_BLOB_URL"
ENV_THRESHOLD = "KNFLOW_BLOB_THRESHOLD_BYTES"
_REF_KEYS = frozenset({REF_KEY, "size_bytes", "sha256", "media_type"})
_NAME = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_MAX_DEPTH = 8  # a blob may hold references (an offloaded invoke passing an output on); never deeper than this


class BlobError(KnflowError):
    """A blob that cannot be written or read. `retryable` is True where the store may be down for a while."""

    def __init__(self, message: str, *, url: str | None = None, retryable: bool = False) -> None:
        # a store URL may hold credentials: the message and `url` show it with them masked
        url = mask_url(url) if url is not None else None
        super().__init__(redact(message), url=url, retryable=retryable)
        self.url = url
        self.retryable = retryable


def is_ref(value: Any) -> bool:
    """Whether `value` is a blob reference (`$blob`, `size_bytes` and `sha256`, nothing else but `media_type`)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get(REF_KEY), str)
        and "sha256" in value
        and "size_bytes" in value
        and value.keys() <= _REF_KEYS
    )


def ref_key_path(value: Any, path: str = "") -> str | None:
    """The path (`items[2].doc`) of the first object in `value` with a `$blob` key, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        here, where = stack.pop()
        if isinstance(here, dict):
            if REF_KEY in here:
                return where or "(the whole value)"
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in here.items())
        elif isinstance(here, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(here))
    return None


def refuse_blob_refs(value: Any, what: str) -> None:
    """InvalidEvent (400) when data from outside (`what`: a webhook body, an external event's data) carries a
    `$blob` key anywhere: only knflow's own functions and the router make blob references."""
    where = ref_key_path(value)
    if where is not None:
        raise InvalidEvent(
            f"{what} carries a blob reference ('{REF_KEY}') at {where}; data from outside knflow cannot name "
            "blobs (only knflow's functions make blob references, for their own run)",
            field=where,
        )


def has_refs(value: Any, depth: int = 0) -> bool:
    if isinstance(value, dict):
        return is_ref(value) or any(has_refs(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(has_refs(v, depth + 1) for v in value)
    return False


def encode(value: Any) -> bytes:
    """Compact JSON, as the broker would carry it (orjson; the stdlib for what orjson refuses, such as huge ints)."""
    import orjson

    try:
        return orjson.dumps(value)
    except TypeError:
        import json

        return json.dumps(value, separators=(",", ":")).encode()


def make_ref(url: str, data: bytes, media_type: str = MEDIA_JSON) -> dict[str, Any]:
    import hashlib  # ~2.5 ms (OpenSSL) that `import knflow` does not pay

    return {REF_KEY: url, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "media_type": media_type}


def segment(text: str) -> str:
    """A run or node id as one path segment (ids are plain already; anything else is percent-quoted)."""
    out = quote(str(text), safe="-_.[]")
    return out if out not in ("", ".", "..") else quote(out, safe="")


def attempt_key(run_id: str, node: str, attempt: int) -> str:
    return f"runs/{segment(run_id)}/{segment(node)}/{int(attempt)}"


def default_url(cwd: str | os.PathLike | None = None) -> str:
    """`file://` URL of `.knflow/blobs` under `cwd` (the working directory by default)."""
    return (Path(cwd or os.getcwd()) / DEFAULT_DIR).resolve().as_uri()


class BlobStore:
    """Blobs under one URL. Writes and reads go through fsspec in a thread (`asyncio.to_thread`).

    asyncio is imported inside the coroutines (loaded by then): `import knflow` does not load it (~25 ms)."""

    def __init__(self, url: str | None = None, threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> None:
        url = url or default_url()
        if "://" not in url:  # a plain directory
            url = Path(url).resolve().as_uri()
        self.url = url.rstrip("/")
        self.threshold_bytes = int(threshold_bytes)
        self._fs: Any = None
        self._root = ""

    def __repr__(self) -> str:
        return f"BlobStore({mask_url(self.url)!r}, threshold_bytes={self.threshold_bytes})"

    def url_for(self, key: str) -> str:
        return f"{self.url}/{key}"

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            from fsspec.core import url_to_fs  # ~60 ms: only where a blob is written or read

            options = {"auto_mkdir": True} if self.url.startswith("file:") else {}
            try:
                self._fs, self._root = url_to_fs(self.url, **options)
            except (ImportError, ValueError) as exc:
                raise BlobError(
                    f"blob store {self.url!r} cannot be opened: {exc}. "
                    "For s3:// install the extra: pip install 'knflow[s3]'",
                    url=self.url,
                ) from None
            self._root = self._root.rstrip("/")
        return self._fs, self._root

    def _path(self, url: str) -> str:
        """The filesystem path of a blob URL, refusing anything outside this store."""
        rest = url[len(self.url) + 1 :] if url.startswith(self.url + "/") else None
        if not rest or any(part in ("", ".", "..") for part in rest.split("/")):
            raise BlobError(
                f"blob {url!r} is not under the blob store {self.url!r} (KNFLOW_BLOB_URL); "
                "every process of a deployment must use the same blob store",
                url=url,
            )
        return f"{self._filesystem()[1]}/{rest}"

    async def write(self, key: str, data: bytes) -> str:
        """Store `data` under `key` (a relative path); returns its URL. Raises BlobError (retryable)."""
        url = self.url_for(key)
        path = self._path(url)
        import asyncio

        fs = self._filesystem()[0]
        try:
            await asyncio.to_thread(_put, fs, path, data, self.url.startswith("file:"))
        except Exception as exc:
            raise BlobError(
                f"blob {url!r} cannot be written: {type(exc).__name__}: {exc}", url=url, retryable=True
            ) from None
        return url

    async def delete_run(self, run_id: str) -> None:
        """Delete every blob of a run (`runs/RUN/`: outputs, invokes, files), once the run itself is deleted
        (router/retention.py). Nothing there is not an error."""
        import asyncio

        fs, root = self._filesystem()
        path = f"{root}/runs/{segment(run_id)}"
        try:
            if await asyncio.to_thread(fs.exists, path):
                await asyncio.to_thread(fs.rm, path, recursive=True)
        except Exception as exc:
            raise BlobError(
                f"blobs of run {run_id!r} under {self.url!r} cannot be deleted: {type(exc).__name__}: {exc}",
                url=self.url,
                retryable=True,
            ) from None

    async def read(self, url: str) -> bytes:
        """The bytes of the blob at `url`. Raises BlobError: not retryable when it is missing."""
        path = self._path(url)
        import asyncio

        fs = self._filesystem()[0]
        try:
            return await asyncio.to_thread(fs.cat_file, path)
        except FileNotFoundError:
            raise BlobError(f"blob {url!r} does not exist", url=url) from None
        except Exception as exc:
            raise BlobError(
                f"blob {url!r} cannot be read: {type(exc).__name__}: {exc}", url=url, retryable=True
            ) from None

    async def offload(
        self, value: Any, key: str | Callable[[], str], name: str, threshold_bytes: int | None = None
    ) -> Any:
        """`value` itself when its JSON fits within the threshold, else a reference to it written under `key`
        (or what `key()` gives: the common case, a small value, then never builds the key)."""
        data = encode(value)
        if len(data) <= (self.threshold_bytes if threshold_bytes is None else threshold_bytes):
            return value
        return await self.offload_encoded(data, key, name)

    async def offload_encoded(self, data: bytes, key: str | Callable[[], str], name: str) -> dict[str, Any]:
        """A reference to `data` (a value's JSON, as `encode` gives it) written under `key`, whatever its size."""
        key = key() if callable(key) else key
        ref = make_ref("", data)
        ref[REF_KEY] = await self.write(f"{key}/{name}-{ref['sha256'][:16]}.json", data)
        return ref

    async def load(self, ref: Mapping[str, Any]) -> Any:
        """The value a reference stands for, checked against its size and hash."""
        url = ref[REF_KEY]
        data = await self.read(url)
        import hashlib

        if len(data) != ref["size_bytes"] or hashlib.sha256(data).hexdigest() != ref["sha256"]:
            raise BlobError(
                f"blob {url!r} holds {len(data):,} bytes that do not match its reference "
                f"({ref['size_bytes']:,} bytes, sha256 {str(ref['sha256'])[:16]}…)",
                url=url,
            )
        if ref.get("media_type", MEDIA_JSON) != MEDIA_JSON:
            return data
        import orjson

        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BlobError(f"blob {url!r} is not JSON: {exc}", url=url) from None

    def check_run(self, ref: Mapping[str, Any], run_id: str) -> None:
        """BlobError unless the reference is under run `run_id`'s prefix (`runs/RUN/`) in this store: a run
        reads only its own blobs, so a reference copied from another run's output resolves nowhere."""
        url = ref[REF_KEY]
        prefix = f"{self.url}/runs/{segment(run_id)}/"
        if not url.startswith(prefix) or any(p in ("", ".", "..") for p in url[len(prefix) :].split("/")):
            raise BlobError(
                f"blob {url!r} does not belong to run '{run_id}' (its blobs are under {prefix!r}); "
                "a run reads only its own blobs",
                url=url,
            )

    async def resolve(self, value: Any, depth: int = 0, *, run_id: str | None = None) -> Any:
        """`value` with every reference in it (at any depth, and inside what they hold) replaced by its value.
        With `run_id` (as every function and the router call it), a reference of any other run is refused."""
        if not has_refs(value):
            return value
        if depth > _MAX_DEPTH:
            raise BlobError(f"blob references nest deeper than {_MAX_DEPTH} levels", url=None)
        if is_ref(value):
            if run_id is not None:
                self.check_run(value, run_id)
            return await self.resolve(await self.load(value), depth + 1, run_id=run_id)
        import asyncio

        if isinstance(value, dict):
            keys = list(value)
            done = await asyncio.gather(*(self.resolve(value[k], depth, run_id=run_id) for k in keys))
            return dict(zip(keys, done, strict=True))
        return list(await asyncio.gather(*(self.resolve(v, depth, run_id=run_id) for v in value)))


def _put(fs: Any, path: str, data: bytes, local: bool) -> None:
    """Write a whole blob; on a local disk through a temporary name, so that a reader never sees half of it."""
    if not local:
        fs.pipe_file(path, data)
        return
    tmp = f"{path}.{os.getpid()}-{id(data):x}.tmp"
    fs.pipe_file(tmp, data)
    os.replace(tmp, path)


class Storage:
    """`ctx.storage`: a function's own files in the blob store, under `runs/{run}/{node}/files/`.

    url = await ctx.storage.write("frames/0001.png", png_bytes)
    data = await ctx.storage.read("frames/0001.png")
    """

    def __init__(self, run_id: str, node: str, store: BlobStore | None = None) -> None:
        self.prefix = f"runs/{segment(run_id)}/{segment(node)}/files"
        self._store = store

    @property
    def store(self) -> BlobStore:
        if self._store is None:
            self._store = default_store()
        return self._store

    def url(self, name: str) -> str:
        """Where `name` is (or will be) stored: a URL other functions of the deployment can read."""
        if not isinstance(name, str) or not _NAME.fullmatch(name) or any(p in (".", "..") for p in name.split("/")):
            raise BlobError(
                f"file name {name!r} is not valid for ctx.storage; use letters, digits, '.', '_', '-' and '/' "
                "between parts, such as 'frames/0001.png'",
            )
        return self.store.url_for(f"{self.prefix}/{name}")

    async def write(self, name: str, data: bytes) -> str:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BlobError(
                f"ctx.storage.write({name!r}, ...) takes bytes, got {type(data).__name__}; encode text first"
            )
        return await self.store.write(self.url(name)[len(self.store.url) + 1 :], bytes(data))

    async def read(self, name: str) -> bytes:
        return await self.store.read(self.url(name))


_default: BlobStore | None = None


def from_env(environ: Mapping[str, str] = os.environ) -> BlobStore:
    """The store `KNFLOW_BLOB_URL` and `KNFLOW_BLOB_THRESHOLD_BYTES` name (what `knflow.settings` reads, without
    loading pydantic-settings into a function's cold start)."""
    raw = environ.get(ENV_THRESHOLD, "").strip()
    threshold = DEFAULT_THRESHOLD_BYTES
    if raw:
        if not raw.isdigit() or int(raw) <= 0:
            raise BlobError(f"{ENV_THRESHOLD} has value {raw!r}. Expected a number of bytes > 0, such as 262144.")
        threshold = int(raw)
    return BlobStore(environ.get(ENV_URL) or None, threshold)


def default_store() -> BlobStore:
    """This process's blob store, read from the environment once."""
    global _default
    if _default is None:
        _default = from_env()
    return _default


def set_default_store(store: BlobStore | None) -> None:
    """Use `store` from now on in this process (None: read the environment again on next use)."""
    global _default
    _default = store
