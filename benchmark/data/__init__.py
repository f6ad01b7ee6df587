"""Embedded datasets and their member / held-out splits."""

from benchmark.data.mnist import MnistSplits, load_mnist5k, mnist_splits

__all__ = ["MnistSplits", "load_mnist5k", "mnist_splits"]
