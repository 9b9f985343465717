"""NIQE, the no-reference "Natural Image Quality Evaluator" of a reconstruction (lower is better).

Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality analyzer", IEEE Signal
Processing Letters 20(3), 2013. NIQE fits a multivariate Gaussian to natural-scene statistics of the
image's 96×96 patches, at full and half resolution, and reports its distance to the Gaussian of a
corpus of pristine images: the "pristine-model parameters" (a mean and a covariance).

The score is pyiqa's implementation (``pyiqa.create_metric("niqe")``, a port of the authors'
MATLAB code through BasicSR). pyiqa downloads its parameters from a model hub at first use,
which cannot happen here, so it is given the original pristine model as shipped in the PyPI
*source* package ``basicsr==1.4.2`` (``basicsr/metrics/niqe_pris_params.npz``, sha256 below).
``scripts/setup.sh`` runs ``python -m taskcodec.niqe``, which fetches that package with pip
(package-registry access only, at setup time, never while the pipeline runs) and saves its two
arrays as the ``.mat`` pyiqa loads, at :func:`default_params_path` (``.venv/share/taskcodec/``).

Images under :data:`MIN_SIDE` pixels on either side hold no whole patch: NIQE is undefined and
:func:`niqe` returns NaN (up to 191 pixels a side has one patch row or column; an image of one
patch gets a score, as in the MATLAB code, from the pristine covariance alone). An image without texture
(a flat reconstruction at a very low rate) has undefined patch statistics: NaN too. Without pyiqa or
the parameter file the scores are NaN too, and the stage says once why and what to run.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import math
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

#: the smallest height and width NIQE is defined for: one patch of pyiqa's (and the paper's) 96×96 grid;
#: only whole patches count, the rest of the image (right and bottom) is left out
MIN_SIDE = 96
#: the PyPI source package holding the original pristine-model parameters, the file inside it and its sha256
PARAMS_PACKAGE = "basicsr==1.4.2"
PARAMS_MEMBER = "basicsr/metrics/niqe_pris_params.npz"
PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"


def default_params_path() -> Path:
    """Where ``scripts/setup.sh`` installs the parameter file: inside the running environment (``.venv``)."""
    return Path(sys.prefix) / "share" / "taskcodec" / "niqe_pris_params.mat"


@functools.lru_cache(maxsize=None)
def unavailable_reason(params: Path) -> str | None:
    """Why NIQE cannot be measured with the parameter file ``params`` (None: it can). The first time a
    reason is found it is also printed, one sentence on stderr (the stage's log), with what to run."""
    if importlib.util.find_spec("pyiqa") is None:
        reason = "pyiqa is not installed (scripts/setup.sh installs it)"
    elif not params.is_file():
        reason = (f"its parameter file {params} is missing (run `bash scripts/setup.sh`, or `python -m "
                  "taskcodec.niqe` in another environment, where PyPI is reachable)")
    else:
        return None
    print(f"taskcodec: warning: NIQE is not measured, its column is left empty: {reason}.", file=sys.stderr,
          flush=True)
    return reason


@functools.lru_cache(maxsize=None)
def _metric(params: Path):
    """pyiqa's NIQE with the parameters of ``params``, loaded once per process (on the CPU); None, said once,
    when pyiqa cannot be imported (e.g. one of the few packages it needs here is missing)."""
    try:
        import pyiqa  # a few seconds: only once an image is large enough to be scored
    except ImportError as err:
        print(f"taskcodec: warning: NIQE is not measured, its column is left empty: pyiqa cannot be imported "
              f"({err}; scripts/setup.sh installs what it needs).", file=sys.stderr, flush=True)
        return None
    return pyiqa.create_metric("niqe", pretrained_model_path=str(params), device="cpu")


def niqe(image: np.ndarray, params: str | Path | None = None) -> float:
    """NIQE of an 8-bit RGB image (``H×W×3`` uint8); lower is better. NaN when the image is smaller than
    :data:`MIN_SIDE` on a side, or when NIQE cannot be measured (:func:`unavailable_reason`).
    ``params``: the parameter file (default :func:`default_params_path`)."""
    import torch

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"NIQE takes an H×W×3 uint8 RGB image, not {image.dtype} of shape {image.shape}")
    params = Path(params) if params is not None else default_params_path()
    if unavailable_reason(params) is not None or min(image.shape[:2]) < MIN_SIDE:
        return math.nan
    metric = _metric(params)
    if metric is None:
        return math.nan
    pixels = torch.tensor(image, dtype=torch.float64).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        try:
            return float(metric(pixels))
        except torch.linalg.LinAlgError:  # no texture at all (e.g. a flat reconstruction): its statistics are NaN
            return math.nan


def write_params(npz: str | Path | BinaryIO, destination: Path) -> None:
    """Save BasicSR's pristine model (``mu_pris_param``, ``cov_pris_param`` of ``npz``) as the ``.mat`` pyiqa's
    NIQE loads (``mu_prisparam``, ``cov_prisparam``), atomically."""
    import scipy.io

    from taskcodec import artifacts

    with np.load(npz, allow_pickle=False) as arrays:
        mu, cov = np.asarray(arrays["mu_pris_param"], np.float64), np.asarray(arrays["cov_pris_param"], np.float64)
    if mu.size != cov.shape[0] or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"pristine model of mean {mu.shape} and covariance {cov.shape} do not match")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_path(destination) as tmp, open(tmp, "wb") as file:
        scipy.io.savemat(file, {"mu_prisparam": mu.reshape(1, -1), "cov_prisparam": cov})


def install_params(destination: Path) -> bool:
    """Fetch :data:`PARAMS_PACKAGE`'s source with pip and write its pristine model to ``destination``, unless
    it is there already (False then). Raises RuntimeError with pip's last words when the package cannot be had."""
    if destination.is_file():
        return False
    with tempfile.TemporaryDirectory(prefix="taskcodec-niqe-") as folder:
        # the source archive, not a wheel (the .npz is only in the source); pip prepares its metadata with the
        # environment's setuptools (no build isolation: nothing else is downloaded), fails fast when offline
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "basicsr",
                   "--no-build-isolation", "--retries", "1", "--timeout", "20", "--dest", folder, PARAMS_PACKAGE]
        done = subprocess.run(command, capture_output=True, text=True)
        archives = sorted(Path(folder).glob("basicsr-*.tar.gz"))
        if done.returncode != 0 or not archives:
            said = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            raise RuntimeError(f"pip could not download {PARAMS_PACKAGE}" + (f" ({said[-1].strip()})" if said else ""))
        with tarfile.open(archives[0]) as archive:
            member = next((m for m in archive.getmembers() if m.name.endswith("/" + PARAMS_MEMBER)), None)
            if member is None:
                raise RuntimeError(f"{archives[0].name} holds no {PARAMS_MEMBER}")
            data = archive.extractfile(member).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PARAMS_SHA256:
        raise RuntimeError(f"{PARAMS_MEMBER} of {PARAMS_PACKAGE} has sha256 {digest}, not {PARAMS_SHA256}")
    write_params(io.BytesIO(data), destination)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m taskcodec.niqe [DESTINATION]``: install the parameter file (default :func:`default_params_path`);
    when that fails, say in one line that NIQE will be reported as not measured, and exit 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    destination = Path(argv[0]) if argv else default_params_path()
    try:
        if install_params(destination):
            print(f"taskcodec: installed NIQE's pristine-model parameters ({PARAMS_PACKAGE}) in {destination}")
    except (OSError, RuntimeError, ValueError, KeyError, tarfile.TarError) as err:
        print(f"taskcodec: NIQE's parameters could not be installed ({err}); NIQE will be reported as not "
              "measured (empty) until this runs again with PyPI reachable", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
