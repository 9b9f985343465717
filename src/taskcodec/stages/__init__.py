"""One command-line module per pipeline stage (``python -m taskcodec.stages.<stage>``)."""
