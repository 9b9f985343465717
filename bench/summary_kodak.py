"""The tables of bench/summary.py for the Kodak study's single trainings side by side (bench/kodak/): the spike
guard, and the latent's width at the largest λ.

Each renderer takes a summary written by a bench/kodak/ script and returns the Markdown that bench/summary.py puts
between its ``<!-- summary:NAME -->`` markers; nothing here reads files.
"""

from __future__ import annotations


def spike_guard(summary: dict) -> str:
    """The Kodak study's λ 0.013 training without and with the spike guard (kodak-spike-guard.json, written by
    bench/kodak/spikes.sh)."""
    lines = [f"{summary['codec']} at λ {summary['lmbda']:g}, from {summary['init']}; validation: "
             f"{summary['val_images']} images of {summary['image_size']}, bpp from the likelihoods.", "",
             "| spike_guard | steps | steps per CPU-s | rolled back at steps | highest training loss | "
             "worst validation loss | final validation loss | bpp | PSNR (dB) |", "|" + "---|" * 9]
    for arm in summary["arms"]:
        val, guard = arm["val"], arm["spike_guard"]
        lines.append(f"| {'off' if guard is None else f'{guard:g}x'} | "
                     f"{arm['steps']} | {arm['steps'] / arm['train_seconds']:.1f} | "
                     f"{', '.join(map(str, arm['rollbacks'])) or 'none'} | {arm['max_train_loss']:.3g} | "
                     f"{arm['worst_val_loss']:.3f} | {val['loss']:.3f} | {val['bpp']:.3f} | {val['psnr']:.2f} |")
    lines += ["", f"The guard at {summary['factor']:g}x replayed on the training losses of runs made without it "
              "(the study's two chains; a run of the default demo by bench/pipeline_speed.sh):", "",
              "| run | training | first roll-back at step | highest loss / median of the previous 100, before it |",
              "|---|---|---|---|"]
    lines += [f"| {row['run']} | {row['training']} | {row['first_rollback'] or 'none'} | "
              f"{row['highest_ratio_before']:.1f} |" for row in summary["replayed"]]
    return "\n".join(lines) + "\n"


def latent_channels(summary: dict) -> str:
    """The study's largest λ trained from scratch with each latent width, side by side (kodak-latent-channels.json,
    written by bench/kodak/latent_channels.sh)."""
    lines = [f"λ {summary['lmbda']:g} from scratch, side by side, one core each; validation: {summary['val_images']} "
             f"images of {summary['image_size']}, bpp from the likelihoods.", "",
             "| codec | steps | CPU-s of training | steps per CPU-s | validation loss | bpp | PSNR (dB) |",
             "|" + "---|" * 7]
    lines += [f"| {arm['codec']} | {arm['steps']} | {arm['train_seconds']:.0f} | "
              f"{arm['steps'] / arm['train_seconds']:.1f} | {arm['val']['loss']:.3f} | {arm['val']['bpp']:.3f} | "
              f"{arm['val']['psnr']:.2f} |" for arm in summary["arms"]]
    return "\n".join(lines) + "\n"
