"""Training logs: a follower for growing files and parsers into typed records."""
