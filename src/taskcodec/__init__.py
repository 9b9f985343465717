"""taskcodec: learned image compression for humans and machines."""

__version__ = "0.1.0"
