"""The Textual app: the only package of lftop that imports Textual."""
