import torch

from benchmark.data.mnist import load_mnist5k, mnist_splits


def test_mnist5k_shape_range_and_balance():
    data = load_mnist5k()
    assert data.x.shape == (5000, 1, 16, 16)
    assert data.x.min() >= -1 and data.x.max() <= 1
    assert torch.bincount(data.y).tolist() == [500] * 10


def test_split_is_400_100_per_class_disjoint_and_seeded():
    s = mnist_splits(0)
    assert torch.bincount(s.members.y).tolist() == [400] * 10
    assert torch.bincount(s.heldout.y).tolist() == [100] * 10
    members = {tuple(v) for v in s.members.x.flatten(1)[:, ::7].tolist()}
    heldout = {tuple(v) for v in s.heldout.x.flatten(1)[:, ::7].tolist()}
    assert not members & heldout
    again = mnist_splits.__wrapped__(0)
    assert torch.equal(again.members.x, s.members.x)
    other = mnist_splits(1)
    assert not torch.equal(other.members.x, s.members.x)


def test_forget_retain():
    forget, retain = mnist_splits().forget_retain(7)
    assert len(forget) == 400 and set(forget.y.tolist()) == {7}
    assert len(retain) == 3600 and 7 not in set(retain.y.tolist())
