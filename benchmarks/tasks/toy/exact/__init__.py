"""The toys' exact answers: the Gaussian toy's closed forms and quadrature (``gaussian``), the
Bernoulli toy's enumeration (``bernoulli``), and the score function's variance they share."""
