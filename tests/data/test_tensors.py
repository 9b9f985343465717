import numpy as np
import torch
from PIL import Image

from taskcodec.data.tensors import images_to_tensor, to_float, to_uint8


def test_images_round_trip_through_float(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (8, 6, 3), dtype=np.uint8) for _ in range(2)]
    paths = []
    for i, array in enumerate(arrays):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(array).save(paths[-1])
    images = images_to_tensor(paths)
    assert images.shape == (2, 3, 8, 6) and images.dtype == torch.uint8
    x = to_float(images, torch.device("cpu"))
    assert x.is_contiguous() and x.max() <= 1.0
    np.testing.assert_array_equal(to_uint8(x), np.stack(arrays))


def test_to_float_gives_one_memory_layout():
    # a permuted (channels-last) view must not change the layout convolutions see
    hwc = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    assert to_float(hwc.permute(0, 3, 1, 2), torch.device("cpu")).is_contiguous()
