import torch

from tests.conftest import make_tiny_model


def test_sampling_is_seeded_and_batch_size_independent(tiny_model):
    a = tiny_model.sample([1, 2, 3, 4], seed=5, steps=3, guidance=2.0, batch_size=4)
    b = tiny_model.sample([1, 2, 3, 4], seed=5, steps=3, guidance=2.0, batch_size=3)
    c = tiny_model.sample([1, 2, 3, 4], seed=6, steps=3, guidance=2.0, batch_size=4)
    assert a.shape == (4, 1, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.allclose(a, b, atol=1e-4)  # float reassociation across batch shapes only
    assert not torch.allclose(a, c)


def test_eps_accepts_ids_or_embedding_vectors(tiny_model):
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([10, 500, 900])
    ids = torch.tensor([0, 4, 10])
    by_vec = tiny_model.eps(x, t, tiny_model.encode(ids))
    by_ids = tiny_model.unet(x, t, class_labels=ids).sample
    assert torch.allclose(by_vec, by_ids)


def test_loss_is_per_sample_and_differentiable(tiny_model):
    x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    loss = tiny_model.loss(x0, tiny_model.encode([0, 1, 2, 3]), generator=torch.Generator().manual_seed(0))
    assert loss.shape == (4,)
    loss.mean().backward()
    assert tiny_model.unet.class_embedding.weight.grad is not None


def test_clone_is_independent_and_save_load_roundtrip(tiny_model, tmp_path):
    from benchmark.models.class_unet import ClassConditionalUNet

    fp = tiny_model.fingerprint()
    twin = tiny_model.clone()
    assert twin.fingerprint() == fp
    with torch.no_grad():
        twin.parameters()[0].add_(1.0)
    assert twin.fingerprint() != fp and tiny_model.fingerprint() == fp
    tiny_model.save_pretrained(tmp_path / "m")
    loaded = ClassConditionalUNet.from_pretrained(tmp_path / "m")
    assert loaded.fingerprint() == fp
    assert make_tiny_model(seed=1).fingerprint() != fp


def test_non_finite_samples_are_never_scored(tiny_model, tmp_path):
    """A model that draws NaN (broken, or made to) must fail its cell, not be judged: NudeNet finds nothing
    in a NaN image and would call the model clean. Nothing is cached either."""
    import pytest

    from benchmark import UnlearnbenchError
    from benchmark.sampling import SampleSpec, sample_classes

    broken = tiny_model.clone()
    with torch.no_grad():
        for p in broken.unet.parameters():
            p.fill_(float("nan"))
    spec = SampleSpec(classes=(0, 1), n_per_class=2, steps=2, guidance=2.0, seed=0)
    with pytest.raises(UnlearnbenchError, match="non-finite pixels .* in 4 of 4 images"):
        sample_classes(broken, spec, cache_dir=tmp_path, show_progress=False)
    assert not list(tmp_path.rglob("*.pt"))
    assert torch.isfinite(sample_classes(tiny_model, spec, cache_dir=tmp_path, show_progress=False).x).all()


def test_parameter_subsets_follow_the_api_contract(tiny_model):
    """No cross-attention: ``xattn`` is empty and ``noxattn`` leaves out the time embedding and output layer,
    as on the text-to-image UNets (it once returned every weight)."""
    named = dict(tiny_model.modules()["unet"].named_parameters())
    ids = {id(p) for p in tiny_model.parameters("noxattn")}
    rest = sorted({n.split(".")[0] for n, p in named.items() if id(p) not in ids})
    assert tiny_model.parameters("xattn") == [] and len(tiny_model.parameters("all")) == len(named)
    assert rest == ["conv_norm_out", "conv_out", "time_embedding"]
