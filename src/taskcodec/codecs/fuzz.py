"""Fuzzing stored bitstreams: mutate their bytes and decode each one where a crash cannot take the caller down.

Used by the fuzz test (hundreds of bitstreams) and ``bench/fuzz/run.py`` (thousands). Every mutated
bitstream is parsed and validated (:class:`~taskcodec.codecs.bitstream.ImageBitstream` and the header
checks of :func:`~taskcodec.codecs.bitstream.check_header`: image size and strings per layer), then decoded
in a child process with a time limit, so a crash or hang of the native entropy decoder is counted, not
suffered. Outcomes: ``rejected`` (a clean :class:`CorruptBitstream` before or during decoding),
``decoded`` (an image came back: corrupt payloads decode to garbage, which the CRC of the shard format
exists to catch), ``crashed`` (the child died) and ``timeout``.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter

import torch

from taskcodec.codecs.bitstream import CorruptBitstream, ImageBitstream, check_header
from taskcodec.codecs.coding import decode_images

MUTATIONS = ("flip", "truncate", "extend")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with 1–4 random bits flipped, cut at a random point, or extended by random bytes."""
    raw = bytearray(data)
    kind = rng.choice(MUTATIONS)
    if kind == "flip" and raw:
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del raw[rng.randrange(len(raw) + 1):]
    else:
        raw.extend(rng.randbytes(rng.randint(1, 32)))
    return bytes(raw)


def _decode_one(codec, data: bytes, size: tuple[int, int], strings: int) -> str:
    try:
        bitstream = ImageBitstream.from_bytes(data)
        check_header(bitstream, size, strings, "fuzzed bitstream", "")
        decode_images(codec, [{codec.layers[0]: bitstream}])
    except CorruptBitstream:
        return "rejected"
    return "decoded"


def _worker(codec, jobs, results) -> None:
    torch.set_num_threads(1)
    for index, data, size, strings in iter(jobs.get, None):
        results.put((index, _decode_one(codec, data, size, strings)))


def fuzz_decode(codec, originals: list[bytes], size: tuple[int, int], count: int, seed: int,
                timeout_s: float = 30.0) -> Counter:
    """Outcomes of decoding ``count`` mutations of the single-layer ``originals`` (images of ``size``) with
    ``codec`` in a child process; a dead or stuck child is restarted and the bitstream counted."""
    rng = random.Random(seed)
    strings = len(ImageBitstream.from_bytes(originals[0]).strings)
    pending = [(i, mutate(originals[i % len(originals)], rng)) for i in range(count)]
    outcomes: Counter = Counter()
    context = multiprocessing.get_context("fork")
    while pending:
        jobs, results = context.Queue(), context.Queue()
        child = context.Process(target=_worker, args=(codec, jobs, results), daemon=True)
        child.start()
        for index, data in pending:
            jobs.put((index, data, size, strings))
        jobs.put(None)
        done = set()
        for index, _ in pending:
            try:
                finished, outcome = results.get(timeout=timeout_s)
            except Exception:  # queue.Empty: the child died or hangs on ``index``
                outcomes["crashed" if not child.is_alive() else "timeout"] += 1
                done.add(index)
                break
            outcomes[outcome] += 1
            done.add(finished)
        child.kill()
        child.join()
        pending = [(index, data) for index, data in pending if index not in done]
    return outcomes
