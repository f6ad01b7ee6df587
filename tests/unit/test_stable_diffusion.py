"""The Stable Diffusion wrapper on a tiny random model, offline: tokenizer, shapes, latent space,
diffusers-folder round trip and refusals, and text methods running on it unchanged (in latent space)."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from benchmark import UnlearnbenchError
from benchmark.models.fingerprint import file_sha256
from benchmark.models.stable_diffusion import (
    StableDiffusionModel,
    clip_tokenizer,
    clip_tokenizer_files,
    tiny_stable_diffusion,
)

PROMPTS = ["a photo of a cat", "the digit 3 in red", "An image showing ZERO, written in blue ink.", "",
           "nought 0 cero"]


@pytest.fixture(scope="module")
def sd() -> StableDiffusionModel:
    return tiny_stable_diffusion(seed=0)


@pytest.fixture(scope="module")
def saved(sd, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd") / "pipeline"
    sd.save_pretrained(folder)
    return folder


def _copy(saved, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    return folder


# -- tokenizer ---------------------------------------------------------------------------------------------

def test_tokenizer_files_have_the_openai_clip_layout(tmp_path):
    vocab_file, merges_file = clip_tokenizer_files(tmp_path)
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    merges = merges_file.read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) == 1 + 49152 - 256 - 2


def test_tokenizer_matches_open_clip():
    import open_clip

    ours = clip_tokenizer()(PROMPTS, padding="max_length", max_length=77, truncation=True,
                            return_tensors="pt").input_ids
    ref = open_clip.tokenize(PROMPTS)  # pads with 0 after the end token; ours (SD v1) with the end token
    for a, b in zip(ours, ref):
        n = int(b.argmax()) + 1  # through the end-of-text token
        assert a[0] == 49406 and a[n - 1] == 49407
        assert torch.equal(a[:n], b[:n])
        assert (a[n:] == 49407).all()


def test_sd2_padding_is_token_zero():
    sd2 = tiny_stable_diffusion(pad_token="!")
    ids = sd2.tokenize(["a photo of a cat"])[0]
    assert ids[:7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407] and (ids[7:] == 0).all()


# -- shapes and determinism ----------------------------------------------------------------------------

def test_shapes_and_latent_space(sd):
    cond = sd.encode(["a photo of a cat", "zero"])
    assert cond.shape == (2, 77, 32) and cond.dtype == torch.float32
    assert torch.equal(sd.encode(cond), cond)  # ready-made states pass through
    assert sd.null_condition(3).shape == (3, 77, 32)
    z = torch.randn(2, 4, 8, 8)
    assert sd.eps(z, torch.tensor([10, 500]), cond).shape == z.shape
    assert sd.loss(z, cond, generator=torch.Generator().manual_seed(0)).shape == (2,)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    latents = sd.encode_images(images)
    assert latents.shape == (3, 4, 8, 8)
    decoded = sd.decode_latents(latents)
    assert decoded.shape == (3, 3, 32, 32) and decoded.abs().max() <= 1
    with pytest.raises(UnlearnbenchError):
        sd.encode_images(torch.zeros(1, 1, 32, 32))
    assert {"text_cond", "token_embeddings", "latent"} <= sd.capabilities


def test_sample_returns_decoded_images_deterministically(sd):
    a = sd.sample(["a photo of a cat", "zero"], seed=3, steps=3, guidance=5.0)
    b = sd.sample(["a photo of a cat", "zero"], seed=3, steps=3, guidance=5.0, batch_size=1)
    assert a.shape == (2, 3, 32, 32) and a.abs().max() <= 1
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, sd.sample(["a photo of a cat", "zero"], seed=4, steps=3, guidance=5.0))


def test_token_embeddings_give_the_encoders_states(sd):
    ids = sd.tokenize(["the digit 3 in red"])
    emb = sd.text_encoder.token_embedding.weight[ids].clone().requires_grad_(True)
    states = sd.encode_embeddings(emb)
    assert torch.allclose(states, sd.encode(["the digit 3 in red"]), atol=1e-5)
    states.sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_parameter_subsets_clone_and_fresh(sd):
    xattn, rest, every = sd.parameters("xattn"), sd.parameters("noxattn"), sd.parameters("all")
    names = {id(p): n for n, p in sd.modules()["unet"].named_parameters()}
    held_out = [names[id(p)] for p in every if id(p) not in {id(q) for q in xattn + rest}]
    # the released ESD / EraseDiff "noxattn" also leaves the time embedding and the output layer alone
    assert xattn and held_out and all(n.startswith(("time_embedding", "conv_out", "conv_norm_out")) for n in held_out)
    assert {n.split(".")[0] for n in held_out} == {"time_embedding", "conv_out", "conv_norm_out"}
    clone = sd.clone()
    assert clone.fingerprint() == sd.fingerprint()
    with torch.no_grad():
        clone.parameters("xattn")[0].add_(1.0)
    assert clone.fingerprint() != sd.fingerprint()
    assert sd.fresh(0).fingerprint() == sd.fingerprint() and sd.fresh(1).fingerprint() != sd.fingerprint()


# -- persistence -------------------------------------------------------------------------------------------

def test_round_trip_keeps_the_fingerprint(sd, saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    sha = file_sha256(saved / "unet" / "diffusion_pytorch_model.safetensors")
    loaded = StableDiffusionModel.from_pretrained(saved, sha256=sha)
    assert loaded.fingerprint() == sd.fingerprint()
    assert torch.equal(loaded.tokenize(PROMPTS), sd.tokenize(PROMPTS))
    assert torch.allclose(loaded.encode(PROMPTS), sd.encode(PROMPTS), atol=1e-6)


def test_diffusers_loads_the_saved_folder(saved):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(saved, local_files_only=True, safety_checker=None)
    assert pipe.unet.config.cross_attention_dim == 32 and pipe.vae.config.latent_channels == 4


def test_pickle_weights_are_refused(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    for weights in folder.glob("*/*.safetensors"):  # a folder with pickled weights only
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(UnlearnbenchError, match="pickle") as err:
        StableDiffusionModel.from_pretrained(folder)
    assert "\n" not in str(err.value)


def _pickle_weights(folder) -> None:
    """Every component's safetensors as a plain state-dict pickle, named as diffusers / transformers do."""
    from safetensors.torch import load_file

    for weights in folder.glob("*/*.safetensors"):
        name = "pytorch_model.bin" if weights.parent.name == "text_encoder" else "diffusion_pytorch_model.bin"
        torch.save(load_file(str(weights)), weights.parent / name)
        weights.unlink()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).write_text, (self.marker, "pwned"))


def test_allow_pickle_reads_pickled_components_weights_only(sd, saved, tmp_path):
    import pickle

    folder = _copy(saved, tmp_path)
    _pickle_weights(folder)
    with pytest.raises(UnlearnbenchError, match="--allow-pickle"):
        StableDiffusionModel.from_pretrained(folder)
    loaded = StableDiffusionModel.from_pretrained(folder, allow_pickle=True,
                                                  sha256=file_sha256(folder / "unet" / "diffusion_pytorch_model.bin"))
    assert loaded.fingerprint() == sd.fingerprint()
    assert torch.allclose(loaded.encode(PROMPTS), sd.encode(PROMPTS), atol=1e-6)
    marker = tmp_path / "marker.txt"
    (folder / "text_encoder" / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Evil(marker)}))
    with pytest.raises(UnlearnbenchError, match="refused") as err:
        StableDiffusionModel.from_pretrained(folder, allow_pickle=True)
    assert not marker.exists() and "\n" not in str(err.value)


def test_corrupt_text_encoder_weights_are_one_error(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "text_encoder" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UnlearnbenchError, match="Stable Diffusion component .*text_encoder: cannot load it") as err:
        StableDiffusionModel.from_pretrained(folder)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("component, file, tensor", [
    ("unet", "diffusion_pytorch_model.safetensors", "conv_in.bias"),
    ("vae", "diffusion_pytorch_model.safetensors", "decoder.conv_in.bias"),
    ("text_encoder", "model.safetensors", "embeddings.position_embedding.weight"),
])
def test_a_component_missing_a_tensor_is_refused_not_filled_at_random(saved, tmp_path, component, file, tensor):
    """diffusers and transformers fill a tensor absent from the checkpoint with random values and only warn:
    the audit would judge a model that is not the one released."""
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path)
    weights = load_file(folder / component / file)
    key = next(k for k in weights if k.endswith(tensor))
    del weights[key]
    save_file(weights, folder / component / file, metadata={"format": "pt"})
    with pytest.raises(UnlearnbenchError, match=r"1 tensor\(s\) missing from its weights") as err:
        StableDiffusionModel.from_pretrained(folder)
    assert "\n" not in str(err.value) and component in str(err.value)


def test_an_unknown_noise_schedule_is_one_error(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    config["beta_schedule"] = "nonsense"
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    with pytest.raises(UnlearnbenchError, match="cannot load Stable Diffusion") as err:
        StableDiffusionModel.from_pretrained(folder)
    assert "\n" not in str(err.value)


def test_missing_component_is_named(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    shutil.rmtree(folder / "vae")
    with pytest.raises(UnlearnbenchError, match="missing component vae/") as err:
        StableDiffusionModel.from_pretrained(folder)
    assert "\n" not in str(err.value)


def test_an_empty_tokenizer_folder_is_refused(saved, tmp_path):
    """transformers builds a 2-token stub from an empty tokenizer/ and every prompt becomes unknown tokens."""
    folder = _copy(saved, tmp_path)
    for f in (folder / "tokenizer").iterdir():
        f.unlink()
    with pytest.raises(UnlearnbenchError, match="tokenizer/ has .* tokens but the text encoder embeds") as err:
        StableDiffusionModel.from_pretrained(folder)
    assert "\n" not in str(err.value)


def test_fingerprint_covers_the_schedule_and_the_tokenizer(sd, saved, tmp_path):
    """The same weights with another noise schedule or tokenizer draw other images: another fingerprint (so
    the sample cache never hands one model's samples to the other)."""
    folder = _copy(saved, tmp_path)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    config["beta_end"] = config["beta_end"] * 1.5
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    assert StableDiffusionModel.from_pretrained(folder).fingerprint() != sd.fingerprint()
    other = StableDiffusionModel.from_pretrained(saved)
    other.tokenizer = copy.deepcopy(other.tokenizer)
    other.tokenizer.model_max_length = 16
    assert other.fingerprint() != sd.fingerprint()


def test_sha256_mismatch_is_refused(saved):
    with pytest.raises(UnlearnbenchError, match="does not match"):
        StableDiffusionModel.from_pretrained(saved, sha256="0" * 64)


# -- methods run unchanged in latent space --------------------------------------------------------------

def _latent_request(model: StableDiffusionModel):
    """The conformance text request with its 16×16 images upsampled to 32×32 and encoded to latents, as a
    Stable Diffusion scenario setup hands them to methods."""
    import dataclasses

    import torch.nn.functional as F

    from benchmark.api import LabeledImages
    from benchmark.conformance import tiny_text_request

    req = tiny_text_request(n_forget=8, n_retain=16, max_steps=2)

    def latent(data: LabeledImages) -> LabeledImages:
        x = F.interpolate(data.x, size=(model.image_size, model.image_size), mode="nearest")
        return LabeledImages(model.encode_images(x), data.y, data.prompts)

    return dataclasses.replace(req, forget=latent(req.forget), retain=latent(req.retain))


@pytest.mark.parametrize("name", ["esd-x", "uce", "erasediff", "salun", "selective_amnesia"])
def test_text_methods_run_on_stable_diffusion(sd, name):
    from benchmark.conformance import smoke_overrides
    from benchmark.registry import METHODS

    request = _latent_request(sd)
    assert request.forget.x.shape[1:] == (4, 8, 8)
    overrides = {k: v for k, v in smoke_overrides(name).items() if k != "batch_size"}
    if "batch_size" in smoke_overrides(name):
        overrides["batch_size"] = 8
    cls = METHODS.get(name)
    before = sd.fingerprint()
    out = cls(cls.make_config(overrides)).unlearn(sd, request)
    assert sd.fingerprint() == before, "the input model changed"
    assert isinstance(out.model, StableDiffusionModel) and out.model is not sd
    assert out.model.fingerprint() != before, "weights did not change"
    assert out.steps <= 2
