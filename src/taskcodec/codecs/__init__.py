"""Learned codecs: architecture registry, bitstream format, latent decoding, training."""
