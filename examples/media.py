"""Functions for the Kubeflow seed's media pipeline.

examples/media-pipeline.yaml runs without models: a transcript's sentiment from a small word list (the seed
runs a classifier after speech-to-text), and the pick among the parallel generations (the seed lets the user
choose; here the longest wins).

    knflow run examples/media-pipeline.yaml --data '{"transcript": "What a great, happy day at the beach"}'

(`llm-generate` needs an OpenAI-compatible server: KNFLOW_OPENAI_BASE_URL, e.g. a local vLLM or llama.cpp.)

examples/media-gpu.yaml is the seed's cluster shape: Whisper-large (10 GB of VRAM) transcribes on the
smallest GPU pool that fits (an L4, 24 GiB), and four Riffusion runs (30 GB) on an A100 pool, each function in
its own image (built FROM the project image, with the model's libraries) and with its pool's model cache
(XDG_CACHE_HOME): see examples/profiles/media-gpu.yaml and `knflow manifests`. The models load on first use,
so these functions import their libraries only when called.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from knflow import Context, function

POSITIVE = {"good", "great", "happy", "love", "calm", "bright", "joy", "wonderful", "win", "beautiful"}
NEGATIVE = {"bad", "sad", "angry", "hate", "dark", "lost", "fear", "awful", "cry", "broken"}


class Transcript(BaseModel):
    text: str = Field(min_length=1)


class Sentiment(BaseModel):
    label: str  # positive, negative or neutral
    score: float  # from -1 (negative) to 1 (positive)
    text: str


class Candidates(BaseModel):
    texts: list[str] = Field(min_length=1)


class Pick(BaseModel):
    text: str
    index: int
    candidates: int


@function(name="media-sentiment", timeout_s=10)
async def sentiment(inp: Transcript) -> Sentiment:
    """Count positive and negative words: score = (pos - neg) / (pos + neg)."""
    words = re.findall(r"[a-z']+", inp.text.lower())
    pos, neg = sum(w in POSITIVE for w in words), sum(w in NEGATIVE for w in words)
    score = (pos - neg) / (pos + neg) if pos + neg else 0.0
    label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
    return Sentiment(label=label, score=score, text=inp.text)


class Audio(BaseModel):
    audio_url: str = ""  # what the seed's request carries: a recording to transcribe
    transcript: str = ""  # or the text itself (no model runs)


class Prompt(BaseModel):
    prompt: str = Field(min_length=1)
    seed: int = 0


class Clip(BaseModel):
    url: str  # the generated clip in the blob store
    prompt: str
    seed: int


_MODELS: dict[str, object] = {}  # loaded once per pod


@function(
    name="media-transcribe",
    timeout_s=300,
    gpu_memory="10Gi",  # Whisper-large: the smallest pool whose GPUs have 10 GiB
    image="ghcr.io/acme/knflow-whisper:0.1.0",
    env={"WHISPER_MODEL": "large-v3"},
    min_scale=0,
)
async def transcribe(inp: Audio) -> Transcript:
    """Speech to text with faster-whisper (in the function's image); a given transcript is passed on."""
    if inp.transcript:
        return Transcript(text=inp.transcript)
    if not inp.audio_url:
        raise ValueError("give audio_url (a recording) or transcript")
    import os
    import tempfile

    import httpx
    from faster_whisper import WhisperModel  # type: ignore[import-not-found]

    model = _MODELS.get("whisper")
    if model is None:
        model = _MODELS["whisper"] = WhisperModel(os.environ.get("WHISPER_MODEL", "large-v3"), device="cuda")
    async with httpx.AsyncClient(timeout=60) as client:
        audio = (await client.get(inp.audio_url)).raise_for_status().content
    with tempfile.NamedTemporaryFile(suffix=".audio") as f:
        f.write(audio)
        f.flush()
        segments, _ = model.transcribe(f.name)  # type: ignore[attr-defined]
        return Transcript(text=" ".join(s.text.strip() for s in segments))


@function(
    name="media-generate",
    timeout_s=600,
    gpu_memory="30Gi",  # Riffusion: an A100 pool
    image="ghcr.io/acme/knflow-riffusion:0.1.0",
    env={"HF_TOKEN": {"secret": "hf-token", "key": "token", "optional": True}},
    volumes=[{"name": "scratch", "empty_dir": {"size_limit": "20Gi"}, "mount": "/scratch"}],
    concurrency=1,
    max_scale=4,
)
async def generate(inp: Prompt, ctx: Context) -> Clip:
    """A spectrogram from Riffusion for the prompt, stored as PNG in the run's files."""
    import io

    import torch  # type: ignore[import-not-found]
    from diffusers import StableDiffusionPipeline  # type: ignore[import-not-found]

    pipe = _MODELS.get("riffusion")
    if pipe is None:
        pipe = _MODELS["riffusion"] = StableDiffusionPipeline.from_pretrained(
            "riffusion/riffusion-model-v1", torch_dtype=torch.float16
        ).to("cuda")
    generator = torch.Generator("cuda").manual_seed(inp.seed)
    image = pipe(inp.prompt, generator=generator).images[0]  # type: ignore[operator]
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    url = await ctx.storage.write(f"clip-{inp.seed}.png", buf.getvalue())
    return Clip(url=url, prompt=inp.prompt, seed=inp.seed)


@function(name="media-pick", timeout_s=10)
async def pick(inp: Candidates) -> Pick:
    """The longest candidate (the first of equals)."""
    best = max(range(len(inp.texts)), key=lambda i: (len(inp.texts[i]), -i))
    return Pick(text=inp.texts[best], index=best, candidates=len(inp.texts))
