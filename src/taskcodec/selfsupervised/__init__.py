"""Self-supervised features: SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020), the representation seed 001 (Sinha et al., "Self-Supervised Variable Rate Image
Compression using Visual Attention") compresses from: its encoder reads the *group-1* features of a SimCLR
ResNet-50 (conv1, bn1, relu, maxpool and layer1: stride 4, 256 channels).

No weights are downloaded: the ``train_simclr`` stage trains a small ResNet with the contrastive (NT-Xent)
objective on the training images themselves, without their labels; a torchvision ResNet-50 from a local weights
file (e.g. converted SimCLR weights) is the option for GPU users.

- :mod:`~taskcodec.selfsupervised.models`: the trunks (``resnet-small``, ``resnet50``), the projection head, the
  frozen group-1 :class:`~taskcodec.selfsupervised.models.FeatureExtractor` and local weight files;
- :mod:`~taskcodec.selfsupervised.training`: the two augmented views, the NT-Xent loss (pytorch-metric-learning)
  and the training through :func:`taskcodec.trainer.train`;
- :mod:`~taskcodec.selfsupervised.checkpoint`: ``model.pt`` (weights with their params, loaded with
  ``weights_only=True``) and :func:`load_feature_extractor`, what the codec uses.
"""

from taskcodec.selfsupervised.checkpoint import load_feature_extractor, load_simclr, save_simclr
from taskcodec.selfsupervised.models import FeatureExtractor

__all__ = ["FeatureExtractor", "load_feature_extractor", "load_simclr", "save_simclr"]
