import math

import torch

from taskcodec.tasks.evaluation import classification_metrics, predict_logits, topk_accuracy


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 1])
    assert topk_accuracy(logits, labels, 1) == 1 / 3
    assert topk_accuracy(logits, labels, 2) == 2 / 3


def test_top5_only_with_five_classes():
    assert math.isnan(classification_metrics(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))["top5"])
    assert classification_metrics(torch.randn(4, 5), torch.tensor([0, 1, 2, 4]))["top5"] == 1.0


def test_predict_logits_batches_uint8_images_and_restores_the_mode():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2)).train()
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    logits = predict_logits(model, images, 2, torch.device("cpu"))
    assert torch.allclose(logits, model(images.float() / 255), atol=1e-6)
    assert model.training
