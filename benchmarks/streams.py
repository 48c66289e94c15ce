"""Random draws per seed inside ``torch.func.vmap``: a function vmapped over N seeds draws, for
seed s, exactly what it draws unbatched in seed s's own run.

vmap's own ``randomness="different"`` draws one batched tensor from one generator, so seed s would
see other numbers than in its own run. ``SeedStreams`` (a ``TorchFunctionMode``) instead takes
every random op the function calls inside the vmap, makes it once per seed, unbatched, from that
seed's saved generator states (CPU and accelerator), and hands the stacked result back as one
batched tensor. Anything random that it does not know stays refused by vmap's default
``randomness="error"``, so no draw goes unnoticed.

It reaches into functorch's internals (``torch._C._functorch``: a batched tensor's level, its
unbatched value, wrapping one; ``temporarily_pop_interpreter_stack`` to draw outside the vmap),
which torch does not promise to keep: ``tests/test_vae_seeds.py`` checks each kind of draw
against its unbatched twin, so a torch that changes them fails there.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

try:
    from torch._C import _functorch
    from torch._functorch.pyfunctorch import temporarily_pop_interpreter_stack

    MISSING = ""
except ImportError as error:  # an older torch: everything else works, seeds train apart
    MISSING = f"this torch {torch.__version__} lacks functorch's {error.name or error}"

RANDOM_OPS = frozenset(
    {
        torch.rand,
        torch.rand_like,
        torch.randn,
        torch.randn_like,
        torch.randint,
        torch.randint_like,
        torch.randperm,
        torch.normal,
        torch.bernoulli,
        torch.multinomial,
        torch.poisson,
        torch._standard_gamma,
        torch._sample_dirichlet,
        torch.Tensor.normal_,
        torch.Tensor.uniform_,
        torch.Tensor.exponential_,
        torch.Tensor.bernoulli_,
        torch.Tensor.random_,
        torch.Tensor.geometric_,
        torch.Tensor.log_normal_,
        torch.Tensor.cauchy_,
    }
)
"""The random ops a function may call under ``SeedStreams`` (the ones torch.distributions and the
estimators use, and their kin). An in-place one must be used through its return value (as
``torch.distributions`` does, ``torch.empty(shape).normal_()``): on a tensor not batched over the
seeds, the seeds' draws come back as a new batched tensor, since vmap cannot write N values into
one."""


def default_generators(device: torch.device) -> list[torch.Generator]:
    """The generators that unseeded draws on ``device`` (and on the CPU) use."""
    generators = [torch.default_generator]
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        generators.append(torch.cuda.default_generators[index])
    return generators


class SeedStreams(TorchFunctionMode):
    """Per-seed random streams for a function vmapped over seeds (the vmapped dimension is the
    seed): ``states[s]`` holds seed s's generator states, advanced by each draw as its own run
    would advance them. Enter it around the ``vmap`` call."""

    def __init__(self, states: list[list[torch.Tensor]], device: torch.device) -> None:
        super().__init__()
        self.states, self.generators = states, default_generators(device)

    @classmethod
    def capture(cls, device: torch.device) -> list[torch.Tensor]:
        """The states of the default generators now: one seed's stream from here on."""
        return [g.get_state() for g in default_generators(device)]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in RANDOM_OPS:
            return func(*args, **kwargs)
        level = _functorch.maybe_current_level()
        if level is None:
            return func(*args, **kwargs)
        if any(isinstance(a, torch.Generator) for a in (*args, *kwargs.values())):
            raise RuntimeError(
                f"{func.__name__} with a generator of its own under seeds side by side: its "
                "draws cannot be split by seed; draw from the default generator"
            )
        per_seed = [
            (
                [seed_slice(a, s, level) for a in args],
                {k: seed_slice(v, s, level) for k, v in kwargs.items()},
            )
            for s in range(len(self.states))
        ]
        in_place = func.__name__.endswith("_")
        draws = []
        with temporarily_pop_interpreter_stack(), torch._C.DisableTorchFunction():
            saved = [g.get_state() for g in self.generators]
            try:
                for s, (seed_args, seed_kwargs) in enumerate(per_seed):
                    if in_place:  # each seed fills a tensor of its own (the op overwrites all)
                        seed_args[0] = torch.empty_like(seed_args[0])
                    for g, state in zip(self.generators, self.states[s], strict=True):
                        g.set_state(state)
                    draws.append(func(*seed_args, **seed_kwargs))
                    self.states[s] = [g.get_state() for g in self.generators]
            finally:
                for g, state in zip(self.generators, saved, strict=True):
                    g.set_state(state)
            stacked = torch.stack(draws)
        batched = _functorch._add_batch_dim(stacked, 0, level)
        if in_place and is_batched(args[0], level):
            return args[0].copy_(batched)
        return batched


def is_batched(value: object, level: int) -> bool:
    """Whether ``value`` is a tensor batched over the seeds at vmap ``level``."""
    return (
        isinstance(value, torch.Tensor)
        and _functorch.is_batchedtensor(value)
        and _functorch.maybe_get_level(value) == level
    )


def seed_slice(value: object, seed: int, level: int) -> object:
    """Seed ``seed``'s part of a tensor batched over the seeds; anything else as it is."""
    if not is_batched(value, level):
        return value
    physical, dim = _functorch._unwrap_batched(value, level)
    return physical.select(dim, seed)
