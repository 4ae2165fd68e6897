"""Runs: a process plus a directory. Launch, pause, resume and stop; state derived from disk."""
