"""The visual question answering model of seed 000: "Show, Ask, Attend, and Answer".

Kazemi & Elqursh, "Show, Ask, Attend, and Answer: A Strong Baseline For Visual Question Answering"
(arXiv 1704.03162, 2017) is the frozen VQA model of seed 000 (§3.2; §4.1: VQA-v1 questions on centre
128×128 crops, the 3000 most frequent answers as classes, the authors' code pytorch-vqa). As there:

- **Show**: the last spatial feature map of a residual network (C×h×w), L2-normalised over its channels
  at every location.
- **Ask**: word embeddings → tanh → a one-layer LSTM; the question is its final hidden state.
- **Attend**: the question state tiled over h×w and concatenated with the image features (here with two
  more channels, each location's x and y in [-1, 1], so that a glimpse also says *where* it looked: the
  coordinates relation networks add for questions about positions, Santoro et al., "A simple neural network
  module for relational reasoning", NeurIPS 2017; the generated questions ask "left of", "on the right"),
  a 1×1 convolution
  → ReLU → a 1×1 convolution to ``glimpses`` maps (2 in the paper), each a softmax over the h·w locations;
  each glimpse is its map's weighted sum of the image features.
- **Answer**: the glimpses and the question state, concatenated → dropout → fully connected → ReLU →
  dropout → fully connected to the answer logits (trained with cross-entropy over the answer classes).

Scaled down so it trains on the CPU in a minute or two on 64–128 px images with a few thousand questions:
the trunk is the project's small residual network (``san-resnet-small``: the stem and stages of
:class:`~taskcodec.tasks.models.ResNetSmall`, trained with the rest) instead of an ImageNet-pretrained
ResNet-152 at 448 px (its 14×14×2048 map); the widths (paper: 300-d embeddings, 1024-d LSTM, 512-d attention,
1024-d classifier) are params. A torchvision ResNet by name (``resnet18``, ``resnet50``, ...; its layers up to
``layer4``) with local ImageNet weights (``tasks.vqa.model.weights``) gives the paper's setting on a GPU; nothing
is downloaded. ``blind: true`` is the question-only baseline the seed's findings are read against: the same
model with its image features replaced by zeros (its glimpses are then zero, the answer comes from the
question alone). Each image's feature map is computed once and shared by all of its questions; the image
half of the first attention convolution is applied once per image too (a 1×1 convolution of a concatenation
is the sum of 1×1 convolutions of its parts, which is how pytorch-vqa computes it).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from taskcodec import artifacts
from taskcodec.errors import UserError, shown_path
from taskcodec.tasks.models import Normalize, ResNetSmall

#: the project's trunk for ``tasks.vqa.model.arch``; any other name is a torchvision ResNet
SMALL_ARCH = "san-resnet-small"


def attention_pool(features: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Glimpses of ``features`` B×C×h×w through attention ``logits`` B×Q×G×h×w (Q questions per image, G maps).

    Returns the attention weights B×Q×G×h×w (a softmax over the h·w locations of every map) and the glimpses
    B×Q×(G·C): each map's weighted sum of the image's features, the G sums concatenated.
    """
    weights = logits.flatten(3).softmax(dim=-1)
    pooled = torch.einsum("bqgn,bcn->bqgc", weights, features.flatten(2))
    return weights.view_as(logits), pooled.flatten(2)


class ShowAskAttendAnswer(nn.Module):
    """Kazemi & Elqursh's VQA model (module docstring) on the image features of ``trunk``.

    ``trunk`` maps float images B×3×H×W in [0, 1] to a feature map B×``trunk_channels``×h×w (normalising its
    input itself); ``vocabulary_size`` word ids with 0 as padding; ``num_answers`` answer classes; ``blind``:
    the question-only baseline (image features zero).
    """

    def __init__(self, trunk: nn.Module, trunk_channels: int, num_answers: int, vocabulary_size: int, embedding: int,
                 hidden: int, attention_hidden: int, classifier_hidden: int, glimpses: int = 2, dropout: float = 0.5,
                 blind: bool = False):
        super().__init__()
        self.trunk = trunk
        self.blind = blind
        self.embedding = nn.Embedding(vocabulary_size, embedding, padding_idx=0)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        # the first attention layer, a 1×1 convolution of [image features; tiled question], in its two halves
        located = trunk_channels + 2  # the features and their x, y coordinates
        self.attend_image = nn.Conv2d(located, attention_hidden, 1, bias=False)
        self.attend_question = nn.Linear(hidden, attention_hidden)
        self.attend = nn.Conv2d(attention_hidden, glimpses, 1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(glimpses * located + hidden, classifier_hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(classifier_hidden, num_answers))
        for module in (self.attend_image, self.attend_question, self.attend, *self.classifier):
            if isinstance(module, (nn.Conv2d, nn.Linear)):  # as pytorch-vqa initialises its layers
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The trunk's feature map B×C×h×w of images in [0, 1], of unit L2 norm over the channels at each place
        (zero for a blind model)."""
        features = F.normalize(self.trunk(images), dim=1, eps=1e-8)
        return torch.zeros_like(features) if self.blind else features

    def question_state(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The LSTM's final hidden state N×``hidden`` of questions N×L (word ids, 0 = padding) of ``lengths`` N.

        A length of 0 (an empty question slot) is read as 1: the slot gives a finite state, which the loss masks.
        """
        embedded = torch.tanh(self.embedding(tokens))
        packed = pack_padded_sequence(embedded, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, (state, _) = self.lstm(packed)
        return state[-1]

    def forward(self, images: torch.Tensor, tokens: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Answer logits B×Q×A for Q questions per image: word ids ``tokens`` B×Q×L, ``lengths`` B×Q (0: empty slot).
        Without questions, the image features B×C×h×w (what ``tasks.vqa.features.layer`` hooks read from ``model(x)``).

        With ``return_attention``, also the attention weights B×Q×G×h×w (each map sums to 1 over its locations).
        """
        features = self.image_features(images)  # once per image
        if tokens is None:
            return features
        batch, questions = lengths.shape
        height, width = features.shape[-2:]
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, device=features.device),
                                torch.linspace(-1, 1, width, device=features.device), indexing="ij")
        features = torch.cat([features, torch.stack([xs, ys]).expand(batch, 2, height, width)], dim=1)
        question = self.question_state(tokens.flatten(0, 1), lengths.flatten()).view(batch, questions, -1)
        mixed = self.attend_image(features).unsqueeze(1) + self.attend_question(question)[..., None, None]
        logits = self.attend(torch.relu(mixed.flatten(0, 1)))
        weights, glimpses = attention_pool(features, logits.view(batch, questions, *logits.shape[1:]))
        answers = self.classifier(torch.cat([glimpses, question], dim=-1))
        return (answers, weights) if return_attention else answers


def _small_trunk(model_params: dict[str, Any]) -> tuple[nn.Module, int]:
    """The stem and stages of a ResNetSmall (its input normalisation first; without its pooling and classifier)."""
    network = ResNetSmall(model_params, num_classes=1)
    parts = ["normalize", "stem", *(f"stage{index}" for index in range(1, network.num_stages + 1))]
    return nn.Sequential(OrderedDict((name, getattr(network, name)) for name in parts)), model_params["widths"][-1]


def _torchvision_trunk(arch: str) -> tuple[nn.Module, int]:
    """torchvision's ResNet ``arch`` up to ``layer4`` with ImageNet input normalisation, under torchvision's names."""
    import torchvision

    try:
        network = torchvision.models.get_model(arch, weights=None)
    except ValueError:
        network = None
    if not hasattr(network, "layer4"):
        raise UserError(f"tasks.vqa.model.arch '{arch}' is neither {SMALL_ARCH} nor a torchvision ResNet (resnet18, "
                        "resnet50, ...); fix the name")
    parts = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    layers = [("normalize", Normalize()), *((name, getattr(network, name)) for name in parts)]
    return nn.Sequential(OrderedDict(layers)), network.fc.in_features


def load_trunk_weights(trunk: nn.Module, path: str | Path) -> None:
    """Load ``tasks.vqa.model.weights`` into ``trunk``: a classifier of the trunk's architecture, as a plain state dict
    or a taskcodec task checkpoint; its classifier (``fc.*``) is dropped and every other tensor must fit."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tasks.vqa.model.weights {shown_path(path)} does not exist; put a local state dict of the image "
                        "trunk there (nothing is downloaded) or set tasks.vqa.model.weights to null")
    try:
        payload = artifacts.load_checkpoint(path, map_location="cpu")  # torch.load(..., weights_only=True)
    except UserError as err:
        raise UserError(f"tasks.vqa.model.weights: {err}") from None
    state = payload.get("state_dict", payload)
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = trunk.state_dict()
    for key, value in expected.items():
        found = state.get(key)
        if not isinstance(found, torch.Tensor) or found.shape != value.shape:
            what = "no such tensor" if found is None else f"shape {tuple(getattr(found, 'shape', ()))}"
            raise UserError(f"tasks.vqa.model.weights {shown_path(path)} has {what} for '{key}' (the trunk needs "
                            f"{tuple(value.shape)}); use weights of a classifier of the same architecture and widths")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise UserError(f"tasks.vqa.model.weights {shown_path(path)} has '{unexpected[0]}', which the trunk lacks; "
                        "use weights of a classifier of the same architecture and widths")
    trunk.load_state_dict(state)


def build_vqa_model(model_params: dict[str, Any], num_answers: int, vocabulary_size: int) -> ShowAskAttendAnswer:
    """The VQA model of ``model_params`` (:data:`taskcodec.tasks.vqa.VQA_MODEL_SCHEMA`), its trunk loaded from ``weights`` if set."""
    arch = model_params["arch"]
    trunk, channels = _small_trunk(model_params) if arch == SMALL_ARCH else _torchvision_trunk(arch)
    if model_params["weights"] is not None:
        load_trunk_weights(trunk, model_params["weights"])
    return ShowAskAttendAnswer(
        trunk, channels, num_answers, vocabulary_size, model_params["embedding"], model_params["hidden"],
        model_params["attention_hidden"], model_params["classifier_hidden"],
        glimpses=model_params.get("glimpses", 2), dropout=model_params.get("dropout", 0.5),
        blind=model_params.get("blind", False))
