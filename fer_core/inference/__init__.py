"""Inference: models loaded, the forward pass (with test-time augmentation), faces found,
photos, videos and the live camera analysed, evaluations."""
