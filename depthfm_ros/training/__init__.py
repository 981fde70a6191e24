"""Training: ``data`` (datasets, samples), ``latent_cache``, ``initialisation`` (the model training starts from),
``loss`` (flow matching), ``optimisation`` (optimizer, warm-up, precision, EMA), ``batches`` (data order, flips),
``checkpoints`` (trainer state, export), ``progress``, ``trainer`` (the loop), ``run`` (one depthfm-train run
around it), ``autoencoder`` (the CPU recipe's VAE), ``distill`` (tiny VAE distillation)."""
