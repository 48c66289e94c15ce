"""The README's antithetic estimator as an installed package (see ``antithetic``)."""
