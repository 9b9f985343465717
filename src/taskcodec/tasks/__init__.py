"""The machine branch: task models on pixels and classifiers on compressed-domain latents.

- :mod:`~taskcodec.tasks.models`: pixel-domain task models (registry of architectures);
- :mod:`~taskcodec.tasks.checkpoint`: saving, loading and freezing trained task models;
- :mod:`~taskcodec.tasks.training` / :mod:`~taskcodec.tasks.evaluation`: the supervised training
  loop and top-k accuracy shared by every classifier here;
- :mod:`~taskcodec.tasks.features`: intermediate feature maps of a task model;
- :mod:`~taskcodec.tasks.latent_models` / :mod:`~taskcodec.tasks.latent_training`: cResNet-style
  classifiers on the decoded latents ŷ and scales σ̂ (Gupta et al., "Learning-Based Compression
  for Machines", after Torfason et al. 2018);
- :mod:`~taskcodec.tasks.joint`: joint fine-tuning of the codec's analysis side with such a classifier;
- :mod:`~taskcodec.tasks.speed`: throughput of classifying from latents versus from decoded pixels.
"""
