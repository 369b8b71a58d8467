"""The shared trainer (installed as `modalzoo.training`)."""
