"""Fuzz benchmark: thousands of mutated bitstreams per architecture, decoded in a child process.

``python bench/fuzz/run.py [--count 2000] [--out bench/results-summary/fuzz.json]``

For every single-layer architecture with a latent decoder, a tiny codec (N=8, M=12, seeded,
``update(force=True)``) entropy-codes eight random 64×64 images; ``--count`` mutations of those
bitstreams (bits flipped, cut, extended: :func:`taskcodec.codecs.fuzz.mutate`) are parsed,
header-checked and decoded in a child process with a time limit. The summary counts the outcomes:
rejected (a clean error), decoded (garbage image: the shard CRC catches such payloads in a cache),
crashed, timeout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from taskcodec import artifacts
from taskcodec.codecs.coding import encode_images
from taskcodec.codecs.fuzz import fuzz_decode
from taskcodec.codecs.registry import build_codec

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench/results-summary/fuzz.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for arch in ARCHS:
        torch.manual_seed(0)
        codec = build_codec(arch, {"N": 8, "M": 12}).eval()
        codec.update(force=True)
        originals = [image["main"].to_bytes() for image in encode_images(codec, torch.rand(8, 3, 64, 64))]
        started = time.perf_counter()
        outcomes = fuzz_decode(codec, originals, (64, 64), args.count, seed=1, timeout_s=60)
        rows.append({"arch": arch, "bitstreams": args.count, "image_size": "64×64",
                     **{key: outcomes.get(key, 0) for key in ("rejected", "decoded", "crashed", "timeout")},
                     "seconds": round(time.perf_counter() - started, 1)})
        print(rows[-1], flush=True)
    artifacts.write_json(args.out, {"benchmark": "bitstream fuzz", "rows": rows})


if __name__ == "__main__":
    main()
