"""Seeds side by side (``task.parallel_seeds``): each seed's tables equal its own run's, the
per-seed random streams under vmap, a seed that diverges alone, resume, and the refusals."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from cli import run
from test_vae import DivergesAtCall, train, whole_and_resumed

from benchmarks.streams import SeedStreams
from benchmarks.tasks.vae.models import estimators_for, objective_estimators
from estimators.base import REGISTRY
from estimators.errors import ConfigError

SEEDS = 3


def draws(x: torch.Tensor) -> torch.Tensor:
    """One of each kind of random op that torch.distributions and the estimators make, on x's
    device and one on the CPU."""
    p = torch.sigmoid(x)
    return torch.cat(
        [
            torch.distributions.Normal(x, 1.0).rsample((2,)).flatten(),
            torch.distributions.Bernoulli(probs=p).sample().flatten(),
            torch.distributions.Categorical(logits=torch.stack([x, -x], -1)).sample((3,)).flatten(),
            torch._standard_gamma(p.exp()),
            torch.rand_like(x),
            torch.randint(0, 5, x.shape, device=x.device).to(x.dtype),
            torch.empty_like(x).exponential_(),
            torch.empty(4, device=x.device).normal_(),
            torch.empty(4).uniform_().to(x.device),
        ]
    )


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ),
    ],
)
def test_each_seeds_draws_under_vmap_are_its_own_runs_draws(device):
    x = torch.randn(SEEDS, 6, device=device)
    states = []
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        states.append(SeedStreams.capture(x.device))
    with SeedStreams(states, x.device):
        batched = torch.vmap(draws)(x)
        batched_again = torch.vmap(draws)(x)  # each stream goes on where it stopped
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        torch.testing.assert_close(batched[seed], draws(x[seed]), rtol=0, atol=0)
        torch.testing.assert_close(batched_again[seed], draws(x[seed]), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # Gamma's clamp_ under vmap
def test_the_streams_leave_the_global_generator_as_it_was_and_differentiate_draws():
    concentration = torch.rand(SEEDS, 5).add(0.5).requires_grad_()
    states = []
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        states.append(SeedStreams.capture(concentration.device))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    gamma = lambda c: torch.distributions.Gamma(c, 1.0).rsample()  # noqa: E731
    with SeedStreams(states, concentration.device):
        batched = torch.vmap(gamma)(concentration)
    assert torch.equal(torch.get_rng_state(), before)
    (grad,) = torch.autograd.grad(batched.sum(), concentration)
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        own = concentration.detach()[seed].requires_grad_()
        value = gamma(own)
        (own_grad,) = torch.autograd.grad(value.sum(), own)
        torch.testing.assert_close(batched[seed], value, rtol=0, atol=0)
        torch.testing.assert_close(grad[seed], own_grad, rtol=0, atol=0)


def test_a_draw_with_its_own_generator_is_refused_side_by_side():
    states = [SeedStreams.capture(torch.device("cpu")) for _ in range(2)]
    generator = torch.Generator().manual_seed(0)
    refused = pytest.raises(RuntimeError, match="rand with a generator of its own")
    with refused, SeedStreams(states, torch.device("cpu")):
        torch.vmap(lambda x: x + torch.rand(x.shape, generator=generator))(torch.zeros(2, 3))


def own_runs(tmp_path, *args, seeds=range(SEEDS)):
    """Each seed's own run's tables by seed, and the same seeds' side by side."""
    alone = {s: train(tmp_path / f"seed{s}", *args, f"seed={s}") for s in seeds}
    parallel = [f"seed={seeds[0]}", f"task.parallel_seeds={len(seeds)}"]
    return alone, train(tmp_path / "together", *args, *parallel)


def assert_each_seed_as_alone(alone, together, tables=("train", "eval", "grad_var"), rel=1e-4):
    """Seed s's rows of ``together`` are its own run's, every measured column within ``rel``
    (float rounding: the batched matrix products sum in another order, about 1e-7 relative a
    step here, measured; 1e-4 leaves room for it to grow over the steps)."""
    for name in tables:
        for seed, own in alone.items():
            own = own[name]
            rows = together[name][together[name].seed == seed].reset_index(drop=True)
            assert len(rows) == len(own), (name, seed)
            for column in own.columns:
                if column == "time_s":
                    continue
                if pd.api.types.is_numeric_dtype(own[column]):
                    # a mean of logs (near 0 at times): its error is the variances' relative one;
                    # an SNR's standard deviation of nearly equal estimates loses digits: the
                    # rounding grows with the SNR (1.7e-4 at an SNR of 167 measured)
                    tolerance = {"rel": rel}
                    if column == "mean_log_var":
                        tolerance = {"abs": rel}
                    elif column == "snr":
                        tolerance = {"rel": 10 * rel}
                    assert rows[column].to_numpy() == pytest.approx(
                        own[column].to_numpy(), nan_ok=True, **tolerance
                    ), f"{name}.{column} seed {seed}"
                else:
                    assert rows[column].tolist() == own[column].tolist(), f"{name}.{column}"


# A Bernoulli or categorical draw is a threshold that float rounding can flip (about once in the
# 10^5 draws of a late probe, as with task.compile): their grad_var tables are compared below
# where the latent is continuous.
@pytest.mark.parametrize(
    "args, first, tables",
    [
        (["estimator=reparam"], 0, ("train", "eval", "grad_var")),
        (["estimator=stl"], 5, ("train", "eval", "grad_var")),
        (["estimator=disarm", "task.latent=bernoulli"], 0, ("train", "eval")),
        (
            ["estimator=carms", "task.latent=categorical", "task.num_samples=3"],
            0,
            ("train", "eval"),
        ),
    ],
    ids=["reparam", "stl-objective-path-from-seed-5", "disarm-bernoulli", "carms-categorical"],
)
def test_each_seed_side_by_side_gives_its_own_runs_tables(tmp_path, args, first, tables):
    seeds = range(first, first + SEEDS)
    alone, together = own_runs(tmp_path, *args, seeds=seeds)
    assert_each_seed_as_alone(alone, together, tables)
    for name in tables:
        assert sorted(set(together[name].seed)) == list(seeds), name
    model = json.loads((tmp_path / "together" / "model.json").read_text())
    assert model["parallel_seeds"] == SEEDS
    assert json.loads((tmp_path / "together" / "status.json").read_text())["status"] == "completed"


def side_by_side(name: str) -> bool:
    """Whether the estimator's defaults train seeds side by side: no state, and vmappable."""
    estimator = REGISTRY[name]()
    return estimator.vmappable and not (estimator.trainable or estimator.state_dict())


@pytest.mark.slow  # about 2 s an estimator and latent on 2 cores
@pytest.mark.parametrize(
    "latent, objective, name",
    [
        (latent, objective, name)
        for latent in ("gaussian", "bernoulli", "categorical")
        for objective, names in (
            ("elbo", estimators_for(latent, 2, 3)),
            ("iwae", objective_estimators("iwae", latent)),
        )
        for name in names
        if side_by_side(name)
    ],
)
def test_every_estimator_that_vmaps_trains_its_seeds_as_their_own_runs(
    tmp_path, latent, objective, name
):
    args = [
        f"estimator={name}",
        f"task.latent={latent}",
        f"task.objective={objective}",
        "task.categories=3",
        "task.epochs=1",
        "task.max_steps=6",
        "task.grad_var_every=3",
        "task.grad_var_samples=4",
        "task.iwae_k=10",
    ]
    alone, together = own_runs(tmp_path, *args, seeds=range(2))
    tables = ("train", "eval", "grad_var") if latent == "gaussian" else ("train", "eval")
    assert_each_seed_as_alone(alone, together, tables)


class DivergesAtRandom(DivergesAtCall):
    """reparam (reinforce for a discrete latent), except that on the third call f and its
    gradient become NaN where a uniform draw (the seed's own, side by side too) is below 1/2."""

    def spoil(self, value):
        if self.calls != 3:
            return value
        return value * torch.where(torch.rand(()) < 0.5, float("nan"), 1.0)


# NaN parameters in a categorical seed would make its next draw raise (long before the trainer
# reads that it diverged): its gradient reaches its parameters as zero from the step it diverges.
@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_a_seed_that_diverges_stops_alone_and_the_others_train_on_as_their_own_runs(
    tmp_path, capsys, latent
):
    args = ("task.grad_var_every=0", f"task.latent={latent}")
    alone = {
        s: train(tmp_path / f"seed{s}", *args, f"seed={s}", make=DivergesAtRandom) for s in range(4)
    }
    statuses = [json.loads((tmp_path / f"seed{s}" / "status.json").read_text()) for s in range(4)]
    diverged = [s for s in range(4) if statuses[s]["status"] == "diverged"]
    assert 0 < len(diverged) < 4  # these seeds' draws give both kinds
    capsys.readouterr()
    together = train(tmp_path / "together", *args, "task.parallel_seeds=4", make=DivergesAtRandom)
    assert_each_seed_as_alone(alone, together, ("train", "eval"))
    status = json.loads((tmp_path / "together" / "status.json").read_text())
    assert status["status"] == "diverged"
    named = [f"seed {s}: diverged at step 3" for s in range(4)]
    assert [line in status["message"] for line in named] == [s in diverged for s in range(4)]
    err = capsys.readouterr().err
    assert [line in err for line in named] == [s in diverged for s in range(4)]


class DivergesNowAndThen(DivergesAtCall):
    """reparam, except that f and its gradient become NaN where a uniform draw (each seed's own)
    falls below 1/30: each seed diverges at a step its stream decides, resumed or not."""

    def spoil(self, value):
        return value * torch.where(torch.rand(()) < 1 / 30, float("nan"), 1.0)


@pytest.mark.parametrize("make", [None, DivergesNowAndThen], ids=["reparam", "seeds-diverge"])
def test_seeds_side_by_side_resume_after_a_kill_with_the_same_numbers(tmp_path, monkeypatch, make):
    args = ("estimator=reparam", "task.parallel_seeds=3")
    whole, resumed = whole_and_resumed(tmp_path, monkeypatch, args, make=make)
    whole_status, resumed_status = (
        json.loads((tmp_path / run / "status.json").read_text()) for run in ("whole", "resumed")
    )
    if make is not None:  # seeds 1 and 2 diverge before the kill (steps 13 and 21), seed 0 never
        assert whole_status["message"].startswith("seed 1: diverged at step 13")
    assert resumed_status["status"] == whole_status["status"]
    assert resumed_status["message"] == whole_status["message"]
    for name in ("train", "eval", "grad_var"):
        a = whole[name].drop(columns="time_s", errors="ignore")
        b = resumed[name].drop(columns="time_s", errors="ignore")
        pd.testing.assert_frame_equal(a, b)


def test_a_checkpoint_resumes_only_with_the_parallel_seeds_that_wrote_it(tmp_path):
    train(tmp_path / "one", "task.max_steps=null", "task.epochs=1")
    with pytest.raises(ConfigError, match="written by a run with task.parallel_seeds=1"):
        train(tmp_path / "one", "task.parallel_seeds=2", "resume=true")
    train(tmp_path / "two", "task.max_steps=null", "task.epochs=1", "task.parallel_seeds=2")
    with pytest.raises(ConfigError, match="written by a run with task.parallel_seeds=2"):
        train(tmp_path / "two", "resume=true")


@pytest.mark.slow
@pytest.mark.parametrize("model", [["--images=256"], ["--tiny"]], ids=["mnist-shaped", "tiny"])
def test_the_seeds_benchmark_times_both_ways(tmp_path, model):
    out = tmp_path / "seeds.csv"
    args = [*model, "--repeats=1", "--steps=3", "--seeds", "1", "2", f"--out={out}"]
    done = run(*args, module="benchmarks.scripts.bench_vae_seeds")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert table.seeds.tolist() == [1, 2] and set(table.steps) == {3}
    assert (table.side_by_side_s > 0).all() and (table.apart_s > 0).all()
    assert table.ratio_to_one_seed.iloc[0] == 1.0
    assert table.speedup.tolist() == pytest.approx((table.apart_s / table.side_by_side_s).tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "args",
    [["estimator=reparam"], ["estimator=disarm", "task.latent=bernoulli"]],
    ids=["reparam", "disarm-bernoulli"],
)
def test_seeds_side_by_side_on_the_gpu_give_their_own_runs_tables(tmp_path, args):
    cuda = torch.device("cuda")
    alone = {s: train(tmp_path / f"seed{s}", *args, f"seed={s}", device=cuda) for s in range(SEEDS)}
    together = train(tmp_path / "together", *args, f"task.parallel_seeds={SEEDS}", device=cuda)
    assert_each_seed_as_alone(alone, together, ("train", "eval"))
