"""DepthFM networks: the depth model, the official (LDM) format, the tiny VAE, depth completion, architectures."""
