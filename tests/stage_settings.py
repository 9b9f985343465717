"""Stage settings shared by the tests that run stages: how a stage runs on the CPU (RUN) and the report's
section; for the task-evaluation tests (detection, VQA, several tasks in one evaluation) also a 4-step codec
training and the evaluation's section. Importable from every test module: pytest puts tests/ on sys.path for
tests/conftest.py."""

RUN = ["--device", "cpu", "--threads", "1"]
TRAIN = {"distortion": "mse", "steps": 4, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "aux_lr": 1e-3,
         "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
         "spike_guard": None,
         "ema_decay": None, "quantization": "noise", "time_budget_s": None, "val_every": 4, "checkpoint_every": 4,
         "init": None, "seed": 0, "saliency_floor": None}
EVALUATE = {"saliency_threshold": 0.5, "save_reconstructions": 1, "niqe": True}
REPORT = {"bd_rate_method": "pchip", "grid_image": 0, "grid_target_bpp": None, "references": {}}
