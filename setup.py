"""Which packages the wheel holds; the rest of the metadata is in pyproject.toml.

The Hydra configs stay at the repository's top level (``conf/``) but ship inside the wheel as
``benchmarks/conf/`` (each config group a data-only package), so that an installed
``python -m benchmarks.run`` finds them from any folder; ``benchmarks/config.py`` looks there
first and then beside the package, as in a checkout. pyproject.toml alone cannot map a folder
under another package's name while still finding the packages automatically.

The maintainer's scripts (``benchmarks/scripts/``: speed benchmarks, the reference sweep, the
regression gates and their baselines) run from a checkout and stay out of the wheel.
"""

from pathlib import Path

from setuptools import find_packages, setup

CONF = [
    ".".join(("benchmarks", *d.parts))
    for d in sorted({p.parent for p in Path("conf").rglob("*.yaml")})
]

setup(
    packages=[
        *find_packages(
            include=["estimators", "estimators.*", "benchmarks", "benchmarks.*"],
            exclude=[
                "benchmarks.scripts",
                "benchmarks.scripts.*",
            ],  # the maintainer's, not a user's
        ),
        *CONF,
    ],
    package_dir={"benchmarks.conf": "conf"},
    package_data={name: ["*.yaml"] for name in CONF},
)
