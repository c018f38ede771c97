"""Architectures (nets, gan, diffusion, vector, exact), checkpoints and training recipes."""
