"""Exact answers for the Gaussian toy: closed-form gradients and estimator variances by quadrature.

The toy is x ~ N(mu, sigma^2) in ``dim`` dimensions (every coordinate at the same mu, sigma) and
a cost f(x) = sum_j c(x_j; k). Statistics are about the gradient with respect to the first
coordinate's parameter theta in {mu, sigma}; by symmetry every coordinate has the same law.
For one draw write f = c(x_1) + R, where R, the sum over the other coordinates, is independent of
x_1. Every variance below reduces to one-dimensional integrals over eps ~ N(0, 1), x_1 = mu + sigma
eps, done with scipy's adaptive quadrature, and to the first two moments of R.

- ``point``: the point at which an answer is asked (``Point``), and the errors by which the math
  says it has none;
- ``quadrature``: expectations over N(0, 1), Rayleigh and Maxwell draws, and Gauss-Legendre;
- ``catalogue``: the built-in costs with their closed forms, E[c] and its gradient;
- ``variances``: the exact variance of each estimator that has one (``exact_variance``).
"""
