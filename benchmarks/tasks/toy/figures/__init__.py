"""The toys' figures and summary sections, drawn from their tables alone (``summary`` is the
toys' ``figures_module``)."""
