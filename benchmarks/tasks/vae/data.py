"""Datasets for the VAE task, as whole tensors with values in [0, 1] (batched by indexing).

- ``digits``: scikit-learn's bundled 8x8 handwritten digits, binarized at half intensity, with a
  fixed 80/20 train/test split; no download, so it works offline anywhere.
- ``mnist`` / ``fashion_mnist``: 28x28 grey levels read from the IDX files under
  ``data_dir/<MNIST|FashionMNIST>/raw``, downloaded there through torchvision on first use where it
  is installed. Training batches are binarized dynamically (a fresh Bernoulli draw per pixel);
  the test set is binarized once with a fixed seed.
- ``linear_gaussian``: continuous data x = W z + b + noise from a fixed random linear-Gaussian
  model; the VAE then gets a linear Gaussian decoder, whose ELBO, ELBO gradient and marginal
  likelihood are exact (``benchmarks.tasks.vae.models.LinearGaussianVAE``).
"""

from __future__ import annotations

import dataclasses
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from estimators.errors import ConfigError

IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


@dataclass
class Dataset:
    """Train and test images as float tensors in [0, 1], flattened to [n, pixels]."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    dynamic_binarization: bool
    """Draw x ~ Bernoulli(train intensities) afresh for every batch."""
    likelihood: str = "bernoulli"
    """``bernoulli`` for binary images, ``gaussian`` for the linear-Gaussian data."""

    def to(self, device: torch.device) -> Dataset:
        return dataclasses.replace(self, train=self.train.to(device), test=self.test.to(device))

    @property
    def dim(self) -> int:
        return self.train.shape[1]


def load_digits() -> Dataset:
    """scikit-learn's 1797 8x8 digits, binarized at 8/16, split 1437/360 by a fixed permutation."""
    from sklearn.datasets import load_digits as sklearn_digits

    images = torch.from_numpy(sklearn_digits().data).float()
    binary = (images >= 8.0).float()
    order = torch.randperm(len(binary), generator=torch.Generator().manual_seed(0))
    n_train = int(0.8 * len(binary))
    return Dataset("digits", binary[order[:n_train]], binary[order[n_train:]], False)


def read_idx_images(path: Path) -> torch.Tensor:
    """Images from an IDX file (the MNIST format, optionally gzipped) as uint8 [n, rows * cols]."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    magic = int.from_bytes(data[0:4], "big")
    if magic != 2051:
        raise ConfigError(f"{path}: not an IDX image file (magic number {magic}, expected 2051)")
    n, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    if len(data) != 16 + n * rows * cols:
        raise ConfigError(f"{path}: truncated ({len(data)} bytes for {n} images of {rows}x{cols})")
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols)
    return torch.from_numpy(pixels.copy())


def write_idx_images(path: Path, images: torch.Tensor) -> None:
    """Write uint8 images [n, rows, cols] as an IDX file (gzipped where ``path`` ends in .gz)."""
    n, rows, cols = images.shape
    header = b"".join(v.to_bytes(4, "big") for v in (2051, n, rows, cols))
    payload = header + images.to(torch.uint8).numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


MNIST_SIZES = {"train": 60000, "test": 10000}


def write_random_mnist(data_dir: Path, sizes: dict[str, int] = MNIST_SIZES) -> None:
    """Random uint8 images of MNIST's shape in its IDX files under ``data_dir``, ``sizes`` of
    each split: what the speed benchmarks time on without MNIST (a step's time does not depend on
    the pixels)."""
    generator = torch.Generator().manual_seed(0)
    for split, stem in IDX_FILES.items():
        images = torch.randint(0, 256, (sizes[split], 28, 28), generator=generator)
        write_idx_images(data_dir / IDX_FOLDERS["mnist"] / "raw" / stem, images)


def find_idx(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def download(name: str, data_dir: Path) -> None:
    """Fetch the IDX files through torchvision, or say in one line what to install or where."""
    raw = data_dir / IDX_FOLDERS[name] / "raw"
    where = f"put {IDX_FILES['train']}.gz and {IDX_FILES['test']}.gz under {raw}"
    try:
        import torchvision.datasets
    except ImportError:
        raise ConfigError(
            f"dataset={name}: the files are not under {raw} and torchvision is not installed; "
            f"pip install torchvision (the [mnist] extra) to download them, or {where}"
        ) from None
    try:
        for train in (True, False):
            getattr(torchvision.datasets, TORCHVISION[name])(data_dir, train=train, download=True)
    except Exception as error:  # noqa: BLE001 - any network or disk failure gets the same advice
        raise ConfigError(f"dataset={name}: download failed ({error}); {where}") from None


def load_idx_dataset(name: str, data_dir: Path, seed: int = 0) -> Dataset:
    """MNIST or Fashion-MNIST from ``data_dir``, downloading through torchvision if needed."""
    raw = data_dir / IDX_FOLDERS[name] / "raw"
    if any(find_idx(raw, stem) is None for stem in IDX_FILES.values()):
        download(name, data_dir)
    train, test = (read_idx_images(find_idx(raw, IDX_FILES[s])) for s in ("train", "test"))
    test_binary = torch.bernoulli(
        test.float() / 255.0, generator=torch.Generator().manual_seed(seed)
    )
    return Dataset(name, train.float() / 255.0, test_binary, True)


def load_linear_gaussian(cfg) -> Dataset:
    """x = W z + b + noise: z ~ N(0, I), W ~ N(0, 1 / z_dim), b ~ N(0, 1), noise ~ N(0, s^2 I)."""
    g = torch.Generator().manual_seed(cfg.seed)
    w = torch.randn(cfg.x_dim, cfg.z_dim, generator=g) / cfg.z_dim**0.5
    b = torch.randn(cfg.x_dim, generator=g)

    def draw(n: int) -> torch.Tensor:
        z = torch.randn(n, cfg.z_dim, generator=g)
        return z @ w.T + b + cfg.noise * torch.randn(n, cfg.x_dim, generator=g)

    return Dataset("linear_gaussian", draw(cfg.n_train), draw(cfg.n_test), False, "gaussian")


def load(cfg, seed: int) -> Dataset:
    """The dataset named by ``cfg.name`` (a ``conf/dataset`` entry)."""
    if cfg.name == "digits":
        return load_digits()
    if cfg.name in IDX_FOLDERS:
        return load_idx_dataset(cfg.name, Path(cfg.data_dir).expanduser(), seed)
    if cfg.name == "linear_gaussian":
        return load_linear_gaussian(cfg)
    raise ConfigError(
        f"dataset={cfg.name!r}: known datasets are digits, mnist, fashion_mnist, linear_gaussian"
    )
