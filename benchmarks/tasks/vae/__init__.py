"""VAE training as a benchmark: each estimator on the encoder, measured for quality, noise and time.

The modules, along the task's seams:

- ``models``: the VAE per latent family (Gaussian, Bernoulli, categorical), the linear-Gaussian
  VAE with its exact ELBO, and the ELBO's terms with the estimator's gradient;
- ``settings``: the options that default by latent family and dataset, and their checks;
- ``probe``: the variance of M independent encoder-gradient estimates from one vectorized pass;
- ``evaluate``: test and train-set ELBO per epoch, and the IWAE bound at the end;
- ``train``: the training step and the trainer (checkpoints, resume, the divergence stop);
- ``task``: ``VAETask`` under the task contract of ``benchmarks.tasks.base``;
- ``figures``: its summary section and figures, from its tables.
"""

from benchmarks.tasks.vae.task import VAETask

__all__ = ["VAETask"]
