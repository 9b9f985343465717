"""Redundancy between a base and an enhancement latent (seed 002, Section 5).

Özyılkan, Ulhaq, Choi, Racapé, "Learned Disentangled Latent Representations
for Scalable Image Coding for Humans and Machines", DCC 2023, Section 5
("Insight into Information Flow"), measures how much of the information in one
latent is also contained in the other with Theil's uncertainty coefficient
(H. Theil, *Statistical Decomposition Analysis*, 1972)::

    U(Y1 | Y2) = (H(Y1) - H(Y1 | Y2)) / H(Y1) = I(Y1; Y2) / H(Y1)

0 means nothing of ``Y1`` is predictable from ``Y2``; 1 means ``Y2`` determines
``Y1``. Like the paper (which follows Choi & Bajić, TIP 2022), the latents are
cut into fibres — the ``1×1×C`` vector at each spatial position — pairs of
co-located fibres are sampled, and a fixed clustering function (k-means)
discretises them.

How this differs from the paper, and why:

- **Entropy estimator.** The paper estimates ``H(Y)`` and ``H(Y|X)`` with
  CompressAI's entropy bottleneck, training a density model per estimate
  (per cluster of the conditioning latent for ``H(Y|X)``). Here *both*
  latents' fibres are clustered (scikit-learn's ``KMeans``) and the entropies
  are plug-in estimates from the cluster-id histograms (``scipy.stats.entropy``
  of the marginal and joint counts, ``H(Y1|Y2) = H(Y1,Y2) - H(Y2)``). This is a
  measurement a training stage can run on validation latents every few hundred
  steps in seconds (16384 fibre pairs of 192 and 320 channels: about 20 s on
  two busy CPU cores with the default four k-means restarts, 4 s with
  ``n_init=1``), with no density model to train; its value is the
  redundancy *between the cluster-quantised fibres*, so it is bounded by
  ``log2(clusters)`` bits per fibre and the coefficients are comparable across
  training steps and designs only at the same ``clusters`` and ``samples``.
  The plug-in mutual information is biased upwards by about
  ``(K-1)^2 / (2 N ln 2)`` bits (Miller 1955) for ``K`` clusters and ``N``
  sampled pairs: 0.01 bits for the defaults, negligible against ``H(Y)``.
- **Caveat of clustering both latents.** The coefficients measure how well
  one latent's k-means partition predicts the other's, so they are reliable
  when the fibres have cluster structure. On structureless fibres (e.g.
  isotropic Gaussian noise) k-means partitions are arbitrary local optima:
  for 8192 fibres of 8 standard normal channels, a latent against an exact
  copy of itself gives 1 with the same ``seed`` (the same partition) but 0.38
  when the copy is clustered from other initialisations, and ``Y + 0.01·noise``
  already drops to 0.42 (``Y + 0.1·noise`` to 0.36). Keep ``seed``,
  ``clusters`` and ``samples`` fixed over a training run and compare trends.
- **Sampling.** The paper samples ``N`` fibre pairs over 256 images; here
  ``samples`` pairs are drawn without replacement from all positions of the
  given batch (all of them if there are fewer), so pass the latents of the
  validation images to use.
- **Spatial size.** Both latents must have the same ``h×w`` grid (they do in
  the paper and in :mod:`taskcodec.codecs.scalable`, both at stride 16), so a
  pair is two fibres at the same position of the same image; the channel
  counts may differ.

Everything is deterministic for a ``seed`` (the sample and the k-means
initialisation).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.stats import entropy
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

#: fibre pairs sampled by default (the paper's N is not legible in the seed text)
DEFAULT_SAMPLES = 16384


def fibres(latent: torch.Tensor) -> torch.Tensor:
    """The fibres of a ``B×C×h×w`` latent as a ``(B·h·w)×C`` tensor, image-major then row-major."""
    _check_latent("latent", latent)
    return latent.permute(0, 2, 3, 1).reshape(-1, latent.shape[1])


def cluster_ids(points: np.ndarray, clusters: int, seed: int, n_init: int) -> np.ndarray:
    """Each row's cluster: the best of ``n_init`` scikit-learn ``KMeans`` runs, k-means++ seeded by ``seed``.

    Rounded latents often hold fewer distinct fibres than ``clusters``; each distinct fibre is then its own
    cluster (scikit-learn's ConvergenceWarning about it is expected and silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=clusters, n_init=n_init, random_state=seed).fit_predict(points)


def uncertainty_coefficients(y_base: torch.Tensor, y_enh: torch.Tensor, clusters: int = 16,
                             samples: int = DEFAULT_SAMPLES, seed: int = 0, n_init: int = 4) -> dict[str, float]:
    """Theil's uncertainty coefficients between two latents' clustered fibres, in both directions.

    ``y_base`` (``B×C1×h×w``) and ``y_enh`` (``B×C2×h×w``) are the latents of
    the same ``B`` images; quantised or not. ``n_init`` k-means restarts keep
    the best partition of each latent: one run often lands in a local optimum
    that merges two true clusters (then a latent and a linear map of it score
    0.97, not 1). Returns, with entropies in bits per fibre:

    - ``u_base_given_enh``: ``U(Y1|Y2) = I/H(Y1)``, the part of the base
      latent's information also in the enhancement latent;
    - ``u_enh_given_base``: ``U(Y2|Y1) = I/H(Y2)``;
    - ``h_base``, ``h_enh``: ``H(Y1)``, ``H(Y2)``;
    - ``h_base_given_enh``, ``h_enh_given_base``: ``H(Y1|Y2)``, ``H(Y2|Y1)``;
    - ``mutual_information``: ``I(Y1;Y2)``;
    - ``samples``: the number of fibre pairs used.

    A coefficient is NaN when its latent's fibres all fall into one cluster
    (zero entropy, e.g. a collapsed latent): nothing to be redundant.
    Raises ``ValueError`` for tensors that are not 4-D, that differ in batch
    size or spatial size, that hold non-finite values, or for fewer fibre pairs
    than ``clusters``.
    """
    _check_latent("y_base", y_base)
    _check_latent("y_enh", y_enh)
    if y_base.shape[0] != y_enh.shape[0]:
        raise ValueError(f"y_base and y_enh must hold the latents of the same images, "
                         f"got batch sizes {y_base.shape[0]} and {y_enh.shape[0]}")
    if y_base.shape[2:] != y_enh.shape[2:]:
        raise ValueError(f"y_base and y_enh must have the same spatial size so that fibres pair up by position, "
                         f"got {tuple(y_base.shape[2:])} and {tuple(y_enh.shape[2:])}")
    if clusters < 2:
        raise ValueError(f"clusters must be at least 2, got {clusters}")
    available = y_base.shape[0] * y_base.shape[2] * y_base.shape[3]
    n = min(samples, available)
    if n < clusters:
        raise ValueError(f"need at least clusters={clusters} fibre pairs, got {n} "
                         f"(samples={samples}, {available} positions in the latents)")
    rng = np.random.default_rng(seed)
    picked = torch.from_numpy(np.sort(rng.choice(available, size=n, replace=False)))
    ids = [cluster_ids(fibres(y)[picked].detach().to("cpu", torch.float32).numpy(), clusters, seed, n_init)
           for y in (y_base, y_enh)]
    joint = np.bincount(ids[0] * clusters + ids[1], minlength=clusters * clusters).reshape(clusters, clusters)
    h_base = float(entropy(joint.sum(axis=1), base=2))
    h_enh = float(entropy(joint.sum(axis=0), base=2))
    h_joint = float(entropy(joint.ravel(), base=2))
    # I = H(Y1) + H(Y2) - H(Y1,Y2) is never negative; the clamp only removes rounding error
    mi = max(h_base + h_enh - h_joint, 0.0)
    return {
        "u_base_given_enh": mi / h_base if h_base > 0 else math.nan,
        "u_enh_given_base": mi / h_enh if h_enh > 0 else math.nan,
        "h_base": h_base,
        "h_enh": h_enh,
        "h_base_given_enh": h_joint - h_enh,
        "h_enh_given_base": h_joint - h_base,
        "mutual_information": mi,
        "samples": n,
    }


def _check_latent(name: str, latent: torch.Tensor) -> None:
    if not isinstance(latent, torch.Tensor) or latent.dim() != 4:
        shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise ValueError(f"{name} must be a 4-D tensor B×C×h×w, got {shape}")
    if latent.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(latent.shape)})")
    if not torch.isfinite(latent).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
