"""The live risk page (``/ui``): static files over the ``/v1`` API."""
