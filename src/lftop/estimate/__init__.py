"""OOM foresight: model architecture facts, a per-GPU peak memory model, and advice."""
