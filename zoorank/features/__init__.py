"""One forward pass per batch -> pre-logits, logits and layer taps; an on-disk cache."""
