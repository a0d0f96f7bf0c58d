"""Feature ACGAN: class-conditional synthetic penultimate features for minority classes.

An auxiliary-classifier GAN (Odena et al., ICML 2017) over feature vectors (dim d, e.g. 64-512)
rather than images, as in the feature-generation approach to class imbalance: the generator maps
(noise, class embedding) to a feature vector; the discriminator maps a feature vector to a
real/fake logit and class logits. Small MLPs, seconds on a CPU for a few thousand vectors.

Design choice: features are **standardised** (per-dimension mean/std of the training features)
and the generator's output is **linear**. Pooled ReLU features are non-negative but their scale
varies by orders of magnitude between backbones and between dimensions; a ReLU/softplus output
would have to learn those scales and dies on dimensions that are mostly 0. In standard units one
learning rate fits every backbone. Samples are mapped back to feature units and clipped below at
the smallest value seen per dimension in the real features, so non-negative (ReLU) features stay
non-negative without the module assuming that they are.

**Leakage rule:** train the GAN and call :func:`balance_with_synthetic` on the TRAINING features of
one fold only. Synthetic vectors are never added to validation or test data, and a GAN trained on
data that includes test rows must not be used for that test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FeatureACGAN", "train_feature_acgan", "balance_with_synthetic", "torch_threads"]


def _nets(dim: int, n_classes: int, noise_dim: int, hidden: int, emb_dim: int):
    import torch  # heavy: torch, loaded on first use
    from torch import nn  # heavy: torch, loaded on first use

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(n_classes, emb_dim)
            self.net = nn.Sequential(
                nn.Linear(noise_dim + emb_dim, hidden),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden, hidden),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden, dim),
            )  # linear output: features are standardised

        def forward(self, z, c):
            return self.net(torch.cat([z, self.embed(c)], dim=1))

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)
            )
            self.adv = nn.Linear(hidden, 1)
            self.cls = nn.Linear(hidden, n_classes)

        def forward(self, x):
            h = self.body(x)
            return self.adv(h).squeeze(1), self.cls(h), h

    return Generator(), Discriminator()


@dataclass
class FeatureACGAN:
    """A trained feature generator. ``sample(class_index, n)`` -> float32 (n, d) in feature units."""

    generator: object  # torch nn.Module (eval mode)
    n_classes: int
    dim: int
    noise_dim: int
    mean: np.ndarray  # (d,) standardisation of the training features
    std: np.ndarray
    floor: np.ndarray  # (d,) per-dimension minimum of the real features
    seed: int
    history: list[dict] = field(default_factory=list)  # per epoch: d_loss, g_loss, d_class_acc_fake
    _calls: int = field(default=0, repr=False)

    def sample(self, class_index: int, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` synthetic feature vectors of class ``class_index``.

        Reproducible: with ``seed`` the output depends only on it; without, the k-th call of this
        object uses seed (self.seed, k), so a re-trained GAN with the same seed yields the same
        sequence of samples.
        """
        import torch  # heavy: torch, loaded on first use

        c = int(class_index)
        if not 0 <= c < self.n_classes:
            raise ValueError(f"class_index {c} out of range 0..{self.n_classes - 1}")
        n = int(n)
        if n <= 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if seed is None:
            seed = int(np.random.SeedSequence([self.seed, self._calls, 1]).generate_state(1)[0])
            self._calls += 1
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            z = torch.randn(n, self.noise_dim, generator=gen)
            x = self.generator(z, torch.full((n,), c, dtype=torch.long)).numpy().astype(np.float64)
        x = x * self.std + self.mean
        return np.maximum(x, self.floor).astype(np.float32)


def _check(features, labels, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"features (n, d) and labels (n,) expected, got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain nan or inf")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise ValueError("labels must be class indices 0..K-1")
    y = y.astype(np.int64)
    k = int(n_classes) if n_classes is not None else int(y.max()) + 1
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1}")
    return x, y, k


def train_feature_acgan(
    features,
    labels,
    n_classes: int | None = None,
    epochs: int = 200,
    seed: int = 0,
    on_progress: Callable[[int, int, dict], None] | None = None,
    *,
    noise_dim: int = 32,
    hidden: int = 128,
    emb_dim: int = 16,
    batch_size: int = 128,
    lr: float = 1e-3,
    feature_matching: float = 1.0,
    num_threads: int | None = 1,
) -> FeatureACGAN:
    """Train an ACGAN on (features (n, d), labels (n,) in 0..K-1); TRAINING-fold features only.

    Real mini-batches are drawn class-balanced (each class equally likely, minority rows recur) and
    fake batches use the same class distribution, so the generator learns every class, the minority
    included, and the real/fake head cannot tell real from fake by class frequency. Losses (AC-GAN):
    D: BCE(real, 1) + BCE(fake, 0) + CE(class | real) + CE(class | fake);
    G: BCE(fake, 1) + CE(class | fake) + ``feature_matching`` * per-class feature matching
    (squared gap between the class means of D's hidden features on real and fake rows; Salimans et
    al. 2016). Plain AC-GAN collapsed on test clusters (synthetic spread 10-50% of the real one,
    classes swapped between epochs); the matching term kept the spread at ~75% and the class means
    close. Adam (lr, betas 0.5/0.999). One epoch = ceil(n / batch) steps. Deterministic for a
    given seed; the global torch RNG is left untouched.
    ``on_progress(epoch, epochs, {"d_loss", "g_loss", "d_class_acc_fake"})`` after each epoch.
    ``num_threads``: torch intra-op threads while training (process-wide, restored afterwards);
    these MLPs are too small to gain from more, and on a busy machine extra threads cost 10-40x.
    None leaves the setting alone.
    """
    with torch_threads(num_threads):
        return _train(
            features,
            labels,
            n_classes,
            epochs,
            seed,
            on_progress,
            noise_dim,
            hidden,
            emb_dim,
            batch_size,
            lr,
            feature_matching,
        )


@contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (None: leave it)."""
    import torch  # heavy: torch, loaded on first use

    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if n is not None and n != old:
            torch.set_num_threads(old)


def _class_mean_gap(h_real, c_real, h_fake, c_fake, k: int):
    """Mean squared gap between per-class means of real and fake discriminator features."""
    import torch  # heavy: torch, loaded on first use
    import torch.nn.functional as F  # heavy: torch, loaded on first use

    oh_r = F.one_hot(c_real, k).float()
    oh_f = F.one_hot(c_fake, k).float()
    both = (oh_r.sum(0) > 0) & (oh_f.sum(0) > 0)
    mr = (oh_r.T @ h_real) / oh_r.sum(0).clamp(min=1)[:, None]
    mf = (oh_f.T @ h_fake) / oh_f.sum(0).clamp(min=1)[:, None]
    return ((mr - mf) ** 2)[both].mean() if bool(both.any()) else torch.zeros(())


def _train(
    features, labels, n_classes, epochs, seed, on_progress, noise_dim, hidden, emb_dim, batch_size, lr, feature_matching
) -> FeatureACGAN:
    import torch  # heavy: torch, loaded on first use
    import torch.nn.functional as F  # heavy: torch, loaded on first use

    x, y, k = _check(features, labels, n_classes)
    n, d = x.shape
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    floor = x.min(axis=0)
    xs = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.as_tensor(y)

    counts = np.bincount(y, minlength=k)
    present = counts > 0
    w = np.where(present[y], 1.0 / counts[y], 0.0)
    row_w = torch.as_tensor(w / w.sum(), dtype=torch.float64)
    cls_p = torch.as_tensor(present / present.sum(), dtype=torch.float64)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g_net, d_net = _nets(d, k, noise_dim, hidden, emb_dim)
    gen = torch.Generator().manual_seed(seed + 1)
    opt_g = torch.optim.Adam(g_net.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d_net.parameters(), lr=lr, betas=(0.5, 0.999))
    bs = min(batch_size, max(n, 8))
    steps = max(1, math.ceil(n / bs))
    history: list[dict] = []
    g_net.train()
    d_net.train()
    for epoch in range(1, int(epochs) + 1):
        d_sum = g_sum = acc_sum = 0.0
        for _ in range(steps):
            idx = torch.multinomial(row_w, bs, replacement=True, generator=gen)
            real, real_c = xs[idx], yt[idx]
            fake_c = torch.multinomial(cls_p, bs, replacement=True, generator=gen)
            z = torch.randn(bs, noise_dim, generator=gen)
            fake = g_net(z, fake_c)

            adv_r, cls_r, h_r = d_net(real)
            adv_f, cls_f, _ = d_net(fake.detach())
            d_loss = (
                F.binary_cross_entropy_with_logits(adv_r, torch.ones_like(adv_r))
                + F.binary_cross_entropy_with_logits(adv_f, torch.zeros_like(adv_f))
                + F.cross_entropy(cls_r, real_c)
                + F.cross_entropy(cls_f, fake_c)
            )
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()

            adv_f, cls_f, h_f = d_net(fake)
            g_loss = F.binary_cross_entropy_with_logits(adv_f, torch.ones_like(adv_f)) + F.cross_entropy(cls_f, fake_c)
            if feature_matching:
                g_loss = g_loss + feature_matching * _class_mean_gap(h_r.detach(), real_c, h_f, fake_c, k)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            d_sum += d_loss.item()
            g_sum += g_loss.item()
            acc_sum += (cls_f.detach().argmax(1) == fake_c).float().mean().item()
        row = {"epoch": epoch, "d_loss": d_sum / steps, "g_loss": g_sum / steps, "d_class_acc_fake": acc_sum / steps}
        history.append(row)
        if on_progress is not None:
            on_progress(epoch, int(epochs), row)
    g_net.eval()
    return FeatureACGAN(
        generator=g_net,
        n_classes=k,
        dim=d,
        noise_dim=noise_dim,
        mean=mean,
        std=std,
        floor=floor,
        seed=int(seed),
        history=history,
    )


def balance_with_synthetic(
    features,
    labels,
    target="max",
    gan: FeatureACGAN | None = None,
    *,
    n_classes: int | None = None,
    epochs: int = 200,
    seed: int = 0,
    on_progress=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top up minority classes of a TRAINING set with synthetic feature vectors.

    ``target``: "max" brings every class up to the largest class count; an int brings every class
    up to that count. Only classes below the target receive synthetic rows (the largest classes
    never do; a class with no real row cannot be imitated and gets none), none is removed.
    ``gan``: a :class:`FeatureACGAN` trained on these same training features; when None one is
    trained here (``epochs``, ``seed``). Never pass validation or test
    features: synthetic data belongs inside the training fold only.

    Returns ``(features_aug, labels_aug, is_synthetic)``: the real rows first, unchanged and in
    their original order, then the synthetic rows grouped by class; ``is_synthetic`` marks them.
    """
    x, y, k = _check(features, labels, n_classes if gan is None else (n_classes or gan.n_classes))
    if gan is not None and (gan.dim != x.shape[1] or gan.n_classes < k):
        raise ValueError(
            f"the GAN makes {gan.dim}-d features of {gan.n_classes} classes; got {x.shape[1]}-d features of {k} classes"
        )
    counts = np.bincount(y, minlength=k)
    if target == "max":
        goal = int(counts.max())
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool) and target >= 0:
        goal = int(target)
    else:
        raise ValueError(f"target must be 'max' or a non-negative int, got {target!r}")
    need = np.where(counts > 0, np.maximum(goal - counts, 0), 0)  # nothing to imitate for absent classes
    dtype = np.asarray(features).dtype if np.asarray(features).dtype.kind == "f" else np.float32
    if need.sum() == 0:
        return np.asarray(features, dtype=dtype).copy(), y.copy(), np.zeros(y.size, dtype=bool)
    if gan is None:
        gan = train_feature_acgan(x, y, k, epochs=epochs, seed=seed, on_progress=on_progress)
    synth = [gan.sample(c, int(need[c]), seed=seed * 1009 + c) for c in range(k) if need[c] > 0]
    synth_y = np.concatenate([np.full(int(need[c]), c, dtype=np.int64) for c in range(k) if need[c] > 0])
    feats = np.concatenate([np.asarray(features, dtype=dtype), np.concatenate(synth).astype(dtype)])
    labs = np.concatenate([y, synth_y])
    is_syn = np.concatenate([np.zeros(y.size, dtype=bool), np.ones(synth_y.size, dtype=bool)])
    return feats, labs, is_syn
