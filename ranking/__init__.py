"""Ranking models as serving sees them: feature encoding shared with training, the context
features computed per request, the NumPy FM student and the MMoE teacher's SavedModel."""
