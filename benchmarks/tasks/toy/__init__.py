"""The toys of the literature, with exact answers: the Gaussian toy of Mohamed et al. (2020), the
Bernoulli toy of the REBAR, RELAX and DisARM papers, and a categorical toy (IndeCateR's E|X - b|).

- ``loops``: what both toys share, the estimate loop over a cost x k grid (``Toy``);
- ``optimize``: the optimize mode, minimizing E[f] with the estimator;
- ``gaussian``, ``bernoulli``, ``categorical``: each toy's distribution, costs and exact answers;
- ``costs``: costs by name and a user's own (``task.costs=[mod:fn]``);
- ``exact``: closed forms, quadrature and enumeration behind those answers;
- ``figures``: the toys' summary sections and figures, from their tables.
"""

from benchmarks.tasks.toy.bernoulli import BernoulliToy
from benchmarks.tasks.toy.categorical import CategoricalToy
from benchmarks.tasks.toy.gaussian import GaussianToy

__all__ = ["BernoulliToy", "CategoricalToy", "GaussianToy"]
