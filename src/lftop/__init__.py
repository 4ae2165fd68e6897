"""lftop: launch, watch, pause and resume LLaMA-Factory fine-tuning runs from a terminal."""

__version__ = "0.1.0"
