"""The VQA model (Kazemi & Elqursh 2017): shapes, shared image features, attention, learnability, trunks, params."""

import time

import pytest
import torch
import torch.nn.functional as F

from taskcodec.errors import UserError
from taskcodec.params import check_value
from taskcodec.tasks.models import ResNetSmall
from taskcodec.tasks.vqa import VQA_MODEL_SCHEMA
from taskcodec.tasks.vqa_model import ShowAskAttendAnswer, attention_pool, build_vqa_model

SMALL = {"arch": "san-resnet-small", "widths": [8, 16], "blocks": [1, 1], "stem_stride": 2, "embedding": 16,
         "hidden": 32, "attention_hidden": 32, "classifier_hidden": 64, "glimpses": 2, "dropout": 0.0,
         "weights": None}
VOCABULARY = 10
# "what colour is the left half" / "what colour is the right half", of different lengths
LEFT, RIGHT = [1, 2, 3, 4], [1, 2, 3, 5, 6, 7]


def _questions(questions):
    """tokens B×Q×L and lengths B×Q of lists of word-id lists per image ([] = an empty slot)."""
    longest = max(len(q) for image in questions for q in image)
    slots = max(len(image) for image in questions)
    tokens = torch.zeros(len(questions), slots, longest, dtype=torch.int64)
    lengths = torch.zeros(len(questions), slots, dtype=torch.int64)
    for i, image in enumerate(questions):
        for j, q in enumerate(image):
            tokens[i, j, : len(q)] = torch.tensor(q, dtype=torch.int64)
            lengths[i, j] = len(q)
    return tokens, lengths


def test_shapes_with_mixed_lengths_and_an_empty_slot():
    model = build_vqa_model(SMALL, num_answers=5, vocabulary_size=VOCABULARY).eval()
    tokens, lengths = _questions([[LEFT, RIGHT, [8]], [RIGHT, [9, 9]]])
    for size in ((64, 64), (48, 80)):
        logits = model(torch.rand(2, 3, *size), tokens, lengths)
        assert logits.shape == (2, 3, 5) and torch.isfinite(logits).all()
    assert lengths[1, 2] == 0


def test_image_features_are_computed_once_per_image():
    model = build_vqa_model(SMALL, num_answers=5, vocabulary_size=VOCABULARY).eval()
    calls = []
    model.trunk.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    tokens, lengths = _questions([[LEFT, RIGHT, [8]], [RIGHT, LEFT, [9]], [LEFT]])
    model(torch.rand(3, 3, 32, 32), tokens, lengths)
    assert calls == [3]


def test_attention_maps_sum_to_one_over_locations():
    model = build_vqa_model({**SMALL, "glimpses": 3}, num_answers=5, vocabulary_size=VOCABULARY).eval()
    tokens, lengths = _questions([[LEFT, RIGHT], [RIGHT, []]])
    logits, weights = model(torch.rand(2, 3, 64, 48), tokens, lengths, return_attention=True)
    assert weights.shape == (2, 2, 3, 16, 12) and (weights >= 0).all()
    assert torch.allclose(weights.sum(dim=(-2, -1)), torch.ones(2, 2, 3))
    assert logits.shape == (2, 2, 5)


def test_attention_pool_weights_and_glimpses():
    """Attention on one location picks that location's feature vector; uniform attention averages them."""
    features = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    logits = torch.zeros(2, 1, 2, 2, 2)
    logits[:, 0, 0, 1, 0] = 1000.0  # glimpse 0 on location (1, 0); glimpse 1 uniform
    weights, glimpses = attention_pool(features, logits)
    assert torch.allclose(weights.sum(dim=(-2, -1)), torch.ones(2, 1, 2))
    assert torch.allclose(glimpses[:, 0, :3], features[:, :, 1, 0])
    assert torch.allclose(glimpses[:, 0, 3:], features.mean(dim=(2, 3)))


def test_the_answer_depends_on_the_question_and_on_the_image():
    torch.manual_seed(0)
    model = build_vqa_model(SMALL, num_answers=5, vocabulary_size=VOCABULARY).eval()
    tokens, lengths = _questions([[LEFT, RIGHT], [LEFT, RIGHT]])
    images = torch.rand(1, 3, 32, 32).expand(2, -1, -1, -1).clone()
    images[1] = torch.rand(3, 32, 32)
    logits = model(images, tokens, lengths)
    assert not torch.allclose(logits[0, 0], logits[0, 1], atol=1e-5)  # same image, other question
    assert not torch.allclose(logits[0, 0], logits[1, 0], atol=1e-5)  # same question, other image
    torch.manual_seed(0)
    blind = build_vqa_model({**SMALL, "blind": True}, num_answers=5, vocabulary_size=VOCABULARY).eval()
    logits = blind(images, tokens, lengths)  # the question-only baseline: the image changes nothing
    assert torch.equal(logits[0], logits[1]) and not torch.allclose(logits[0, 0], logits[0, 1], atol=1e-5)


def _halves(count, colours, generator):
    """``count`` images 32×32 whose left and right halves have two different ``colours`` (index tensors)."""
    left = torch.randint(len(colours), (count,), generator=generator)
    right = (left + torch.randint(1, len(colours), (count,), generator=generator)) % len(colours)
    images = torch.empty(count, 3, 32, 32)
    images[..., :16] = colours[left][..., None, None]
    images[..., 16:] = colours[right][..., None, None]
    return (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(0, 1), left, right


def test_learns_a_question_about_image_content():
    """"What colour is the left/right half?" on two-colour images: the answer needs both the image and the
    question (with the halves always differing, the image alone gets at most half right, the question alone a
    quarter); a few hundred Adam steps reach ≥ 90 % accuracy on new images."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.9], [0.9, 0.9, 0.2]])
    model = build_vqa_model(SMALL, num_answers=len(colours), vocabulary_size=VOCABULARY)
    tokens, lengths = _questions([[LEFT, RIGHT]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.process_time()
    for _ in range(300):
        images, left, right = _halves(32, colours, generator)
        logits = model(images, tokens.expand(32, -1, -1), lengths.expand(32, -1))
        loss = F.cross_entropy(logits.flatten(0, 1), torch.stack([left, right], dim=1).flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.process_time() - start
    images, left, right = _halves(256, colours, generator)
    answers = torch.stack([left, right], dim=1)
    with torch.no_grad():
        predicted = model.eval()(images, tokens.expand(256, -1, -1), lengths.expand(256, -1)).argmax(dim=-1)
    question_only = max((answers[:, q] == a).double().mean().item() for q in range(2) for a in range(len(colours)))
    assert question_only < 0.35  # the best constant answer per question is near chance
    accuracy = (predicted == answers).double().mean().item()
    assert accuracy >= 0.9, f"accuracy {accuracy:.2f} after 300 steps ({seconds:.1f} s CPU)"


def test_a_torchvision_resnet_trunk_with_local_weights(tmp_path):
    import torchvision

    classifier = torchvision.models.resnet18(weights=None, num_classes=7)
    with torch.no_grad():
        classifier.conv1.weight.fill_(0.01)
    path = tmp_path / "resnet18.pth"
    torch.save(classifier.state_dict(), path)
    model = build_vqa_model({"arch": "resnet18", "embedding": 8, "hidden": 16, "attention_hidden": 16,
                             "classifier_hidden": 16, "weights": str(path)}, num_answers=3, vocabulary_size=5)
    assert torch.equal(model.trunk.conv1.weight, classifier.conv1.weight)
    assert model.classifier[1].in_features == 2 * (512 + 2) + 16 and model.classifier[0].p == 0.5
    tokens, lengths = _questions([[[1, 2]], [[3]]])
    assert model.eval()(torch.rand(2, 3, 64, 64), tokens, lengths).shape == (2, 1, 3)


def test_a_small_trunk_loads_a_resnet_small_classifier(tmp_path):
    """The trunk's weights may come from a task checkpoint of the project's classifier (its fc is dropped)."""
    classifier = ResNetSmall({**SMALL, "split_stage": 2}, num_classes=4)
    path = tmp_path / "model.pt"
    torch.save({"state_dict": classifier.state_dict(), "classes": ["a", "b", "c", "d"]}, path)
    model = build_vqa_model({**SMALL, "weights": str(path)}, num_answers=3, vocabulary_size=VOCABULARY)
    assert torch.equal(model.trunk.stage2[0].conv1.weight, classifier.stage2[0].conv1.weight)
    with pytest.raises(UserError, match=r"'stage2\.0\.conv1\.weight' \(the trunk needs \(32, 8, 3, 3\)\)"):
        build_vqa_model({**SMALL, "widths": [8, 32], "weights": str(path)}, num_answers=3,
                        vocabulary_size=VOCABULARY)


def test_missing_weights_and_unknown_arch_are_user_errors(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(UserError, match=f"tasks.vqa.model.weights {missing} does not exist") as error:
        build_vqa_model({**SMALL, "weights": str(missing)}, num_answers=3, vocabulary_size=VOCABULARY)
    assert "\n" not in str(error.value)
    for arch in ("resnet-tiny", "mobilenet_v3_small"):
        with pytest.raises(UserError, match=f"arch '{arch}' is neither san-resnet-small nor a torchvision ResNet"):
            build_vqa_model({**SMALL, "arch": arch}, num_answers=3, vocabulary_size=VOCABULARY)


def test_the_params_schema():
    check_value(VQA_MODEL_SCHEMA, SMALL, "task.model", "params.yaml")
    check_value(VQA_MODEL_SCHEMA, {"arch": "resnet50", "weights": "r50.pth", "embedding": 300, "hidden": 1024,
                                   "attention_hidden": 512, "classifier_hidden": 1024}, "task.model", "params.yaml")
    bad = [({k: v for k, v in SMALL.items() if k != "widths"}, "widths"), ({**SMALL, "split_stage": 1}, "split_stage"),
           ({**SMALL, "dropout": 1.0}, "dropout"), ({**SMALL, "glimpses": 0}, "glimpses"),
           ({k: v for k, v in SMALL.items() if k != "hidden"}, "hidden")]
    for params, key in bad:
        with pytest.raises(UserError, match=key):
            check_value(VQA_MODEL_SCHEMA, params, "task.model", "params.yaml")


def test_the_constructor_takes_any_trunk():
    trunk = torch.nn.Conv2d(3, 6, 4, stride=4)
    model = ShowAskAttendAnswer(trunk, 6, num_answers=2, vocabulary_size=4, embedding=4, hidden=5,
                                attention_hidden=3, classifier_hidden=7).eval()
    tokens, lengths = _questions([[[1, 2, 3], []]])
    logits, weights = model(torch.rand(1, 3, 16, 12), tokens, lengths, return_attention=True)
    assert logits.shape == (1, 2, 2) and weights.shape == (1, 2, 2, 4, 3) and torch.isfinite(logits).all()
