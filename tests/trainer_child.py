"""A tiny classifier training for the kill-and-resume tests (tests/test_trainer.py).

``python tests/trainer_child.py OUT`` trains into OUT (``resume.pt``, ``log.csv``), printing ``step N``
after drawing the batch of every step N, then saves the weights to OUT/weights.pt and prints ``done``.
"""

import sys
from pathlib import Path

import torch

from taskcodec.tasks import training
from taskcodec.tasks.models import build_task_model
from taskcodec.tasks.registry import build_task

MODEL = {"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 1, "weights": None}
# 16 training images in batches of 4: 4 steps per epoch, a resume checkpoint after every epoch
PARAMS = {"epochs": 6, "batch_size": 4, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
          "crop_padding": 2, "time_budget_s": None, "checkpoint_every": 1, "seed": 0}
STEPS = 24


def data() -> tuple[training.LabeledSet, training.LabeledSet]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 2
    images = torch.rand(24, 3, 16, 16, generator=generator) * 120
    images[labels == 0, 0] += 120
    images = images.to(torch.uint8)
    return (training.LabeledSet((images[:16],), labels[:16]), training.LabeledSet((images[16:],), labels[16:]))


def run(out: Path) -> tuple[torch.nn.Module, object]:
    """Train on one thread (the same floating-point results in every process)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_task_model(MODEL, 2)
    train_set, val_set = data()
    trained = training.train_classifier(model, PARAMS, train_set, val_set, build_task("classification", list("abc")),
                                        torch.device("cpu"), out / "resume.pt",
                                        out / "log.csv")
    return model, trained


def announce_steps(objective_class: type) -> None:
    """Make every ``objective_class`` print ``step N`` after drawing the batch of step N (for the parent to
    send its signal at a known point)."""
    batch = objective_class.batch

    def announcing(self, step):
        result = batch(self, step)
        print(f"step {step + 1}", flush=True)
        return result

    objective_class.batch = announcing


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    announce_steps(training.ClassifierObjective)
    model, _ = run(folder)
    torch.save(model.state_dict(), folder / "weights.pt")
    print("done", flush=True)
