"""Stable Diffusion (v1 layout): a latent ``UNet2DConditionModel`` cross-attending to a frozen CLIP text
encoder.

Components, as a diffusers ``StableDiffusionPipeline`` folder holds them: ``unet`` (the only trained part),
``vae`` (``AutoencoderKL``, frozen), ``text_encoder`` (transformers ``CLIPTextModel``, frozen; its last hidden
state is what cross-attention attends to), ``tokenizer`` (``CLIPTokenizer``, 77 tokens) and the noise
schedule (a ``DDPMScheduler`` built from the pipeline's scheduler config, so ᾱ_t is the pipeline's;
sampling is the project's own DDIM, ``guided_ddim``, η = 0, no x̂0 clipping, CFG with diffusers'
ε̃ = ε_u + s·(ε_c − ε_u)). Only ε-prediction models are accepted (methods assume ε).

**Latent space.** The model's data space is the VAE latent times ``vae.config.scaling_factor``:
``eps``, ``add_noise``, ``loss`` and ``alphas_cumprod`` work on latents (N × 4 × H/f × W/f), while
``sample`` returns *decoded images* in [−1, 1] (N × 3 × H × W), since judges and metrics look at images.
``encode_images(x)`` (images in [−1, 1] → latents: the VAE posterior mean × scaling factor, no grad) and
``decode_latents(z)`` (→ images, clamped) convert between the two; on pixel-space models both are the
identity (``benchmark.api.DiffusionModel``). A scenario setup hands methods an ``UnlearnRequest`` whose
``forget.x`` / ``retain.x`` are already latents (``encode_images``), so a method's
``model.add_noise(batch.x, noise, t)`` and ``model.loss(batch.x, cond)`` run unchanged.

Text side: prompts are tokenised to the tokenizer's ``model_max_length`` (77), padded with its pad token
(SD v1: the end-of-text token; SD 2: "!", id 0) and truncated, as the diffusers pipeline does. The null
condition of classifier-free guidance is the empty prompt "". ``text_encoder`` is a ``CLIPTextStates``
view of the ``CLIPTextModel`` (``token_embedding``, ``forward(ids)`` → states, ``from_embeddings``), the
members the concept attacks use, as on the project's text UNet.

Parameter subsets: ``xattn`` = the UNet's cross-attention layers (names containing ``attn2``);
``noxattn`` = every other UNet weight but the time embedding and the output layer (the released ESD /
EraseDiff selection; ``benchmark.models.guided_ddim.unet_parameters``). The VAE and the text encoder are never trained by a method; they
enter the fingerprint. Weights are read from safetensors only; pickled weights are refused.

``tiny_stable_diffusion`` builds a random tiny model of the same structure offline (tests): its tokenizer
is OpenAI CLIP's BPE tokenizer rebuilt from the vocabulary file that ships inside ``open_clip``
(``clip_tokenizer_files``).
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import inspect
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from torch import Tensor, nn

from benchmark import UnlearnbenchError
from benchmark.api import DiffusionModel, ParamSubset
from benchmark.models.fingerprint import fingerprint_state, verify_sha256
from benchmark.models.guided_ddim import (
    PromptConditioned,
    ScheduledUNet,
    guided_ddim,
    schedule_state,
    starting_noise,
    unet_parameters,
)
from benchmark.models.loading import first_line

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHTED = ("unet", "vae", "text_encoder")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
START_OF_TEXT, END_OF_TEXT = "<|startoftext|>", "<|endoftext|>"


# -- tokenizer ---------------------------------------------------------------------------------------------

def _byte_alphabet() -> list[str]:
    """The 256 symbols byte-level BPE works on, in vocabulary order: the bytes that are printable
    characters stand for themselves, the others (control, space, soft hyphen …) for chr(256 + k)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    shown = set(printable)
    others = [b for b in range(256) if b not in shown]
    return [chr(b) for b in printable] + [chr(256 + k) for k in range(len(others))]


def clip_tokenizer_files(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` of OpenAI CLIP's tokenizer (49,408 tokens) into ``out_dir``,
    built offline from open_clip's shipped ``bpe_simple_vocab_16e6.txt.gz``. Vocabulary order: the 256
    byte symbols, the same with the end-of-word mark ``</w>``, one token per merge (the file's lines
    1 … 48,894), then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407). Returns both paths."""
    import open_clip

    source = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not source.is_file():
        raise UnlearnbenchError(f"open_clip's BPE vocabulary {source} is missing (reinstall open_clip_torch)")
    with gzip.open(source) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    alphabet = _byte_alphabet()
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m.split()) for m in merges]
    tokens += [START_OF_TEXT, END_OF_TEXT]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != 49408:
        raise UnlearnbenchError(f"{source}: built a {len(vocab)}-token vocabulary, expected CLIP's 49408")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = out / "vocab.json", out / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


@functools.lru_cache(maxsize=4)
def clip_tokenizer(pad_token: str = END_OF_TEXT, model_max_length: int = 77) -> Any:
    """A transformers ``CLIPTokenizer`` over ``clip_tokenizer_files`` (built once per process; tokenizers
    are immutable, so callers share it). ``pad_token``: SD v1 pads with the end-of-text token, SD 2 with
    "!" (id 0)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="unlearnbench-clip-bpe-") as folder:
        clip_tokenizer_files(folder)
        return CLIPTokenizer.from_pretrained(folder, pad_token=pad_token, model_max_length=model_max_length,
                                             local_files_only=True)


# -- text encoder view ---------------------------------------------------------------------------------------

class CLIPTextStates(nn.Module):
    """Token-level states of a transformers ``CLIPTextModel`` (last hidden state, after the final LayerNorm).

    ``forward(ids)`` → N × L × width; ``from_embeddings(token_embeds)`` takes token embeddings (N × L × width,
    differentiable) instead of ids, for soft-prompt attacks; ``token_embedding`` is the model's table.
    The module wraps the ``CLIPTextModel`` itself (``self.clip``), which is what is saved and loaded."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    @property
    def _embeddings(self) -> nn.Module:
        return getattr(self.clip, "text_model", self.clip).embeddings  # transformers 4.x nests a text_model

    @property
    def token_embedding(self) -> nn.Embedding:
        return self._embeddings.token_embedding

    @property
    def width(self) -> int:
        return int(self.clip.config.hidden_size)

    @property
    def context_length(self) -> int:
        return int(self.clip.config.max_position_embeddings)

    def forward(self, ids: Tensor) -> Tensor:
        return self.clip(input_ids=ids)[0]

    def from_embeddings(self, token_embeds: Tensor) -> Tensor:
        # The model's own forward with the table lookup's output replaced by ``token_embeds``: positions,
        # causal mask and final LayerNorm stay the model's, whatever the transformers version.
        handle = self.token_embedding.register_forward_hook(lambda _m, _i, out: token_embeds.to(out.dtype))
        try:
            ids = torch.zeros(token_embeds.shape[:2], dtype=torch.long, device=token_embeds.device)
            return self.clip(input_ids=ids)[0]
        finally:
            handle.remove()

    def state_fingerprint(self) -> str:
        """sha256 of the weights under version-independent names (transformers 4.x prefixes
        ``text_model.``, 5.x does not)."""
        state = {k.removeprefix("text_model."): v for k, v in self.clip.state_dict().items()}
        return fingerprint_state(state)


def _frozen_fingerprint(module: nn.Module, compute: Any) -> str:
    fp = getattr(module, "_unlearnbench_fingerprint", None)
    if fp is None:
        fp = compute()
        module._unlearnbench_fingerprint = fp  # frozen: computed once per module
    return fp


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 over what decides a CLIP tokenizer's token ids: vocabulary, BPE merges, maximum length and
    special tokens."""
    merges = sorted(f"{' '.join(pair)} {rank}" for pair, rank in (getattr(tokenizer, "bpe_ranks", None) or {}).items())
    state = {"vocab": sorted(tokenizer.get_vocab().items()), "merges": merges,
             "model_max_length": str(tokenizer.model_max_length),
             "special": sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items())}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


# -- the model ---------------------------------------------------------------------------------------------

class StableDiffusionModel(PromptConditioned, ScheduledUNet, DiffusionModel):
    capabilities = frozenset({"text_cond", "grad", "eps", "cond_vector", "token_embeddings", "latent"})
    conditioned_name = "Stable Diffusion"

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: nn.Module,
                 tokenizer: Any, scheduler: DDPMScheduler):
        if not isinstance(text_encoder, CLIPTextStates):
            text_encoder = CLIPTextStates(text_encoder)
        if unet.config.cross_attention_dim != text_encoder.width:
            raise UnlearnbenchError(f"UNet cross-attends to {unet.config.cross_attention_dim}-d states but "
                                    f"the text encoder gives {text_encoder.width}-d")
        if unet.config.in_channels != vae.config.latent_channels:
            raise UnlearnbenchError(f"UNet takes {unet.config.in_channels} channels but the VAE's latent has "
                                    f"{vae.config.latent_channels}")
        if scheduler.config.prediction_type != "epsilon":
            raise UnlearnbenchError(f"scheduler predicts {scheduler.config.prediction_type!r}; only "
                                    "ε-prediction Stable Diffusion models are supported (methods assume ε)")
        self.unet = unet
        self.vae = vae.eval().requires_grad_(False)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.num_train_timesteps = scheduler.config.num_train_timesteps
        self._acp = scheduler.alphas_cumprod.to(torch.float32)
        self._cache: dict[str, Tensor] = {}  # prompt → states, on the model's device (cleared by ``to``)
        self.weight_files: dict[str, list[Path]] = {}  # per component, the files ``from_pretrained`` read

    # construction / persistence ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, sha256: str | None = None,
                        allow_pickle: bool = False) -> StableDiffusionModel:
        """Load a diffusers Stable Diffusion pipeline folder. ``sha256``: the expected sha256 of the UNet's
        weights file, verified when given. Safetensors only unless ``allow_pickle``: then a component
        whose weights are pickles (``diffusion_pytorch_model.bin``, ``pytorch_model.bin``) is first read
        with ``torch.load(weights_only=True)`` (a pickle holding anything but tensors is refused and runs
        nothing) and then loaded by diffusers / transformers, whose ``.bin`` path is weights-only too."""
        from transformers import CLIPTextModel, CLIPTokenizer

        _quiet_hub_progress()

        path = Path(path)
        if not path.is_dir():
            raise UnlearnbenchError(f"{path}: no such Stable Diffusion pipeline folder")
        if not (path / "model_index.json").is_file():
            raise UnlearnbenchError(f"{path}: missing component model_index.json (not a diffusers pipeline "
                                    "folder)")
        try:
            index = json.loads((path / "model_index.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UnlearnbenchError(f"{path}/model_index.json is not valid JSON "
                                    f"({first_line(exc)})") from exc
        if "text_encoder_2" in index:
            kind = index.get("_class_name", "two-text-encoder")
            raise UnlearnbenchError(f"{path}: a {kind} pipeline; only the Stable Diffusion v1/v2 layout (one "
                                    "text encoder) is supported")
        for comp in COMPONENTS:
            if not (path / comp).is_dir():
                raise UnlearnbenchError(f"{path}: missing component {comp}/ (a Stable Diffusion folder has "
                                        f"{', '.join(c + '/' for c in COMPONENTS)})")
        safe = {}  # component → True: safetensors, False: pickle weights (allow_pickle only)
        for comp in WEIGHTED:
            safe[comp] = any((path / comp).glob("*.safetensors"))
            if safe[comp]:
                continue
            pickles = sorted(p for p in (path / comp).iterdir() if p.suffix in PICKLE_SUFFIXES)
            if not pickles:
                raise UnlearnbenchError(f"{path}: missing component {comp}/ weights (no .safetensors file)")
            if not allow_pickle:
                raise UnlearnbenchError(f"{path}: {comp}/{pickles[0].name} holds pickle weights, which can "
                                        "run code when loaded; refused — convert them to safetensors, or pass "
                                        "--allow-pickle to read them with torch.load(weights_only=True)")
            from benchmark.models.loading import _load_pickle

            for file in pickles:  # refuses (runs nothing) unless tensors only; the libraries then load them
                _load_pickle(file, True, "Stable Diffusion weights")
        if sha256:
            unet_weights = path / "unet" / ("diffusion_pytorch_model.safetensors" if safe["unet"]
                                            else "diffusion_pytorch_model.bin")
            verify_sha256(unet_weights, sha256)
        from benchmark.models.loading import LOAD_ERRORS, strict_from_pretrained

        def diffusers_kw(comp: str) -> dict[str, Any]:
            return dict(use_safetensors=safe[comp], low_cpu_mem_usage=False, local_files_only=True)

        # every tensor of each component present and of its shape (the libraries would fill gaps at random)
        what = "Stable Diffusion component"
        unet = strict_from_pretrained(UNet2DConditionModel, path / "unet", what, **diffusers_kw("unet"))
        vae = strict_from_pretrained(AutoencoderKL, path / "vae", what, **diffusers_kw("vae"))
        text = strict_from_pretrained(CLIPTextModel, path / "text_encoder", what,
                                      use_safetensors=safe["text_encoder"], local_files_only=True)
        try:
            tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
            scheduler = DDPMScheduler.from_config(DDPMScheduler.load_config(path / "scheduler"))
        except LOAD_ERRORS as exc:
            raise UnlearnbenchError(f"cannot load Stable Diffusion from {path}: {first_line(exc)}") from exc
        if len(tokenizer) != text.config.vocab_size:  # e.g. an empty tokenizer/: transformers builds a stub
            raise UnlearnbenchError(f"{path}: tokenizer/ has {len(tokenizer)} tokens but the text encoder embeds "
                                    f"{text.config.vocab_size}: not this pipeline's tokenizer (vocab.json / "
                                    "merges.txt missing or from another model)")
        # float32 whatever the files hold (fp16 exports): methods train the UNet in float32, eps autocasts
        model = cls(unet.float(), vae.float(), text.float(), tokenizer, scheduler)
        model.weight_files = {comp: sorted((path / comp).glob("*.safetensors")) if safe[comp] else
                              sorted(p for p in (path / comp).iterdir() if p.suffix in PICKLE_SUFFIXES)
                              for comp in WEIGHTED}  # for the audit's provenance
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """A diffusers ``StableDiffusionPipeline`` folder (no safety checker): ``model_index.json``,
        ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``; weights as safetensors."""
        import diffusers

        _quiet_hub_progress()

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(path / "unet", safe_serialization=True)
        self.vae.save_pretrained(path / "vae", safe_serialization=True)
        clip = self.text_encoder.clip
        # transformers 5 always writes safetensors and has no ``safe_serialization`` argument
        takes_flag = "safe_serialization" in inspect.signature(clip.save_pretrained).parameters
        clip.save_pretrained(path / "text_encoder", **({"safe_serialization": True} if takes_flag else {}))
        self.tokenizer.save_pretrained(path / "tokenizer")
        self.scheduler.save_pretrained(path / "scheduler")
        index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
                 "feature_extractor": [None, None], "image_encoder": [None, None],
                 "requires_safety_checker": False, "safety_checker": [None, None],
                 "scheduler": ["diffusers", type(self.scheduler).__name__],
                 "text_encoder": ["transformers", type(clip).__name__],
                 "tokenizer": ["transformers", type(self.tokenizer).__name__],
                 "unet": ["diffusers", type(self.unet).__name__],
                 "vae": ["diffusers", type(self.vae).__name__]}
        (path / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")

    # contract -----------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    def to(self, device: str | torch.device) -> StableDiffusionModel:
        device = torch.device(device)
        self.unet.to(device)
        # clones share the frozen VAE and text encoder; moving a copy keeps the other clones where they are
        if self.text_encoder.token_embedding.weight.device != self.unet.device:
            self.text_encoder = copy.deepcopy(self.text_encoder).to(device)
        if next(self.vae.parameters()).device != self.unet.device:
            self.vae = copy.deepcopy(self.vae).to(device)
        self._acp = self._acp.to(device)
        self._cache.clear()
        return self

    def modules(self) -> dict[str, nn.Module]:
        # the trainable part; the frozen VAE and text encoder enter the fingerprint
        return {"unet": self.unet}

    def fingerprint(self) -> str:
        """sha256 over the UNet's weights, the text encoder's, the VAE's, the tokenizer (vocabulary, merges,
        length, special tokens) and the noise schedule: the same UNet with another text encoder, VAE,
        tokenizer or schedule draws other images, so it is another model (and gets no cached samples)."""
        parts = self.component_fingerprints()
        return hashlib.sha256("".join(parts[k] for k in ("unet", "text_encoder", "vae", "tokenizer", "scheduler"))
                              .encode()).hexdigest()

    def component_fingerprints(self) -> dict[str, str]:
        """Each component's own fingerprint (the frozen ones computed once): what an audit compares with the
        reference to say which parts a released model changed."""
        from benchmark.models.fingerprint import fingerprint_modules

        return {"unet": fingerprint_modules(self.modules()),
                "text_encoder": _frozen_fingerprint(self.text_encoder, self.text_encoder.state_fingerprint),
                "vae": _frozen_fingerprint(self.vae, lambda: fingerprint_modules({"vae": self.vae})),
                "tokenizer": _frozen_fingerprint(self.tokenizer, lambda: tokenizer_fingerprint(self.tokenizer)),
                "scheduler": schedule_state(self.scheduler.config)}

    def train(self, mode: bool = True) -> StableDiffusionModel:
        self.unet.train(mode)  # the VAE and the text encoder stay frozen in eval mode
        return self

    def clone(self) -> StableDiffusionModel:
        # The frozen VAE, text encoder and tokenizer are shared between clones (never trained or mutated).
        return StableDiffusionModel(copy.deepcopy(self.unet), self.vae, self.text_encoder, self.tokenizer,
                                    copy.deepcopy(self.scheduler))

    def fresh(self, seed: int = 0) -> StableDiffusionModel:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(dict(self.unet.config))
        return StableDiffusionModel(unet, self.vae, self.text_encoder, self.tokenizer,
                                    DDPMScheduler.from_config(dict(self.scheduler.config))).to(self.device)

    def parameters(self, subset: ParamSubset = "all") -> list[nn.Parameter]:
        return unet_parameters(self.unet, subset)

    # text ---------------------------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return min(int(self.tokenizer.model_max_length), self.text_encoder.context_length)

    def tokenize(self, prompts: Sequence[str]) -> Tensor:
        """Token ids (N × 77): start token, prompt, end token, the tokenizer's padding; long prompts are
        truncated (as the diffusers pipeline does)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        for p in prompts:
            if not isinstance(p, str):
                raise UnlearnbenchError(f"prompts must be strings, got {type(p).__name__}")
        if not prompts:
            return torch.empty(0, self.context_length, dtype=torch.long)
        return self.tokenizer(prompts, padding="max_length", max_length=self.context_length, truncation=True,
                              return_tensors="pt").input_ids

    # latent space ---------------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self.unet.config
        return int(cfg.in_channels), int(cfg.sample_size), int(cfg.sample_size)

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def _scale_shift(self) -> tuple[float, float]:
        shift = getattr(self.vae.config, "shift_factor", None)
        return float(self.vae.config.scaling_factor), float(shift or 0.0)

    @torch.no_grad()
    def encode_images(self, x: Tensor, batch_size: int = 64) -> Tensor:
        """Images in [−1, 1] (N × 3 × H × W) → latents (VAE posterior mean × scaling factor), on x's
        device."""
        if x.ndim != 4 or x.shape[1] != self.vae.config.in_channels:
            raise UnlearnbenchError(f"encode_images wants N × {self.vae.config.in_channels} × H × W images, "
                                    f"got {tuple(x.shape)}")
        scale, shift = self._scale_shift()
        out = []
        for lo in range(0, len(x), batch_size):
            mean = self.vae.encode(x[lo:lo + batch_size].to(self.device, torch.float32)).latent_dist.mean
            out.append(((mean - shift) * scale).to(x.device))
        if not out:
            f = self.vae_scale_factor
            return torch.empty(0, self.vae.config.latent_channels, x.shape[2] // f, x.shape[3] // f,
                               device=x.device)
        return torch.cat(out)

    @torch.no_grad()
    def decode_latents(self, z: Tensor, batch_size: int = 64) -> Tensor:
        """Latents (N × 4 × h × w, scaled) → images in [−1, 1] (clamped), on z's device."""
        scale, shift = self._scale_shift()
        out = [self.vae.decode(z[lo:lo + batch_size].to(self.device, torch.float32) / scale + shift).sample
               .clamp(-1, 1).to(z.device) for lo in range(0, len(z), batch_size)]
        if not out:
            f = self.vae_scale_factor
            return torch.empty(0, self.vae.config.out_channels, z.shape[2] * f, z.shape[3] * f,
                               device=z.device)
        return torch.cat(out)

    @torch.no_grad()
    def sample(self, conditions: Any, seed: int, steps: int, guidance: float, batch_size: int = 256,
               progress: Any = None, noise: Tensor | None = None) -> Tensor:
        """DDIM (η=0) with CFG in latent space for prompts (or ready-made N × 77 × D states), decoded:
        images in [−1, 1], N × 3 × H × W, on the CPU. Item i's initial latent noise depends only on
        (seed, i); ``noise`` (N × latent shape) replaces the seed's."""
        if torch.is_tensor(conditions) and conditions.is_floating_point():
            n = len(conditions)
        else:
            conditions = [conditions] if isinstance(conditions, str) else list(conditions)
            n = len(conditions)
        noise = starting_noise(noise, n, self.latent_shape, seed)
        was_training = self.unet.training
        self.unet.eval()
        out = []
        for start in range(0, n, batch_size):
            x = noise[start:start + batch_size].to(self.device)
            cond = self.encode(conditions[start:start + batch_size])
            z = guided_ddim(self, x, cond, self.null_condition(len(x)), self.scheduler.config, steps,
                            lambda e_u, e_c: e_u + guidance * (e_c - e_u), clamp=False)
            out.append(self.decode_latents(z).cpu())
            if progress is not None:
                progress(len(x))
        self.unet.train(was_training)
        return torch.cat(out) if out else torch.empty((0, self.vae.config.out_channels, self.image_size,
                                                       self.image_size))


# -- tiny random model (tests) -------------------------------------------------------------------------------

def stable_diffusion_scheduler_config() -> dict[str, Any]:
    """Stable Diffusion v1's noise schedule (scaled-linear β from 0.00085 to 0.012, ε-prediction) with its
    pipeline's DDIM settings (``steps_offset`` 1, ``set_alpha_to_one`` false), which ``guided_ddim`` reads."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="epsilon", clip_sample=False, steps_offset=1, set_alpha_to_one=False)


def tiny_stable_diffusion(seed: int = 0, image_size: int = 32,
                          pad_token: str = END_OF_TEXT) -> StableDiffusionModel:
    """A random tiny Stable Diffusion, offline: a 4× downsampling VAE (3 blocks of 8/16/16 channels, 4 latent
    channels), a two-level UNet (32/64 channels, cross-attention at the first level, 8 heads), a 2-layer
    width-32 CLIP text encoder (77 positions) and OpenAI CLIP's tokenizer (``clip_tokenizer``). ``seed``
    sets the UNet (the UNet of ``fresh(seed)`` equals it); the VAE and the text encoder are the same for
    every seed, as the frozen parts of one Stable Diffusion are. ``pad_token``: SD v1's end-of-text
    token by default; "!" (id 0) is SD 2's padding."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if image_size % 16:
        raise UnlearnbenchError(f"image_size must be a multiple of 16 (VAE ×4, UNet ×2 downsampling), "
                                f"got {image_size}")
    tokenizer = clip_tokenizer(pad_token)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=image_size // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=32)
    torch.manual_seed(1234)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16),
                        layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=image_size)
    torch.manual_seed(1235)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    scheduler = DDPMScheduler.from_config(stable_diffusion_scheduler_config())
    return StableDiffusionModel(unet, vae, text.eval(), tokenizer, scheduler)


def _quiet_hub_progress() -> None:
    """transformers / diffusers draw their own loading bars on stderr; the CLI keeps stderr for errors."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
