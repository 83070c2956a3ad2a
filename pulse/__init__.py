"""pulse: face super-resolution by latent-space exploration (PULSE, Menon et al., CVPR 2020)."""
