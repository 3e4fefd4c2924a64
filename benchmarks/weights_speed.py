"""GA generations per second on the genetic autoencoder's first layer: evotune vs PyGAD
(torchga) vs EvoTorch, one process, one problem.

The problem, for every library: a tied autoencoder layer 784-500 (one weight matrix,
392,000 genes, float32), population 10, fitness 1/RMSE of the reconstruction of the same
--batch MNIST test images (x/255), 6 new children per generation (4 elites kept: EvoTorch
needs an even number of children). Operators as close to the seed's as each library
allows: each weight from parent 1 with p = 0.8 (PyGAD's uniform crossover: 0.5), 1% of
the weights set to zero.

- evotune: the `weights` task's batched fitness (all members in one GEMM + one batched
  matmul) with the engine's GA (truncation, uniform crossover swap 0.2, zero-out 0.01);
  "algorithm" = ask/evaluate/tell alone (as EvoTorch runs), "run loop" = `evotune run`
  of the same layer (genome hashes, journal, best-genome file, checkpoint every
  generation).
- PyGAD 3.x torchga, as its documentation trains a torch model: per solution,
  `model_weights_as_dict` + `load_state_dict` + forward (sss selection, keep_elitism 4,
  uniform crossover, mutation by replacement with 0 on 1% of the genes).
- EvoTorch's GeneticAlgorithm on a vectorized Problem whose fitness is the same
  batched kernel, with the same crossover and zero mutation written as EvoTorch operators
  (tournament selection, elitist, parents not re-evaluated).

Achieved GFLOP/s = fitness FLOPs (4 x batch x 784 x 500 per evaluation) / wall time,
against the float32 matmul peak (2048^2 GEMM) measured in the same run.

    python benchmarks/weights_speed.py [--batch 1024] [--generations 20] [--pygad-generations 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import MNIST, require  # noqa: E402

from evotune.config import resolve  # noqa: E402
from evotune.engine.problem import losses_of  # noqa: E402
from evotune.runner import build_algorithm, start  # noqa: E402
from evotune.tasks.weights import WeightsTask  # noqa: E402
from evotune.train.popnets import population_rmse  # noqa: E402

POP, ELITES, IN, OUT = 10, 4, 784, 500


def raw_config(batch: int, generations: int) -> dict:
    return {
        "task": {"name": "weights", "mode": "ga", "sizes": [IN, OUT]},
        "data": {"source": "idx", "path": str(require(MNIST))},
        "search": {"preset": "seed", "elitism": ELITES, "generations": generations},
        "fitness": {"examples": batch, "device": "cpu"},
        "output": {"report": False},
    }


def matmul_peak() -> float:
    a = torch.rand(2048, 2048)
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - began)
    return 2 * 2048**3 / best / 1e9


def evotune_algorithm(task: WeightsTask, config, generations: int) -> dict:
    """ask / evaluate / tell, no files; also times ask (numpy operators) alone."""
    rng = np.random.default_rng(0)
    algo = build_algorithm(config.search, task.space, 1, rng)
    ask_seconds, evaluations = 0.0, 0

    def generation() -> None:
        nonlocal ask_seconds, evaluations
        began = time.perf_counter()
        genomes = algo.ask()
        ask_seconds += time.perf_counter() - began
        # no hashing here (the AE fitness ignores its seeds; the run loop row pays for it)
        fitness = np.array([e.fitness for e in task.evaluate(genomes, np.zeros(len(genomes)))])
        algo.tell(genomes, losses_of(task.objectives, fitness))
        evaluations += len(genomes)

    generation()  # the initial population (10 evaluations), not timed
    ask_seconds, evaluations = 0.0, 0
    began = time.perf_counter()
    for _ in range(generations):
        generation()
    wall = time.perf_counter() - began
    best = float(-algo.losses[0, 0])
    return {"wall": wall, "evaluations": evaluations, "ask": ask_seconds, "best": best}


def evotune_loop(batch: int, generations: int) -> dict:
    """`evotune run` of the same layer; the stage's own wall time (not the SVM after)."""
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        summary = start(resolve(raw_config(batch, generations + 1)), run_dir)
        stage = summary["stages"]["layer1"]
        lines = (run_dir / "stages" / "layer1" / "generations.jsonl").read_text().splitlines()
        first = json.loads(lines[0])["seconds"]  # the initial population, not timed
        size = sum(p.stat().st_size for p in (run_dir / "stages").rglob("*") if p.is_file())
    return {
        "wall": stage["wall_seconds"] - first,
        "evaluations": stage["evaluations"] - POP,
        "best": stage["best"]["fitness"][0],
        "disk_mb": size / 2**20,
    }


class TiedLayer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(OUT, IN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.weight.T) @ self.weight


def pygad_run(x: torch.Tensor, initial: np.ndarray, generations: int) -> dict:
    import pygad
    import pygad.torchga as torchga

    model, calls, stamps = TiedLayer(), [0], []

    def fitness_func(ga, solution, index):
        calls[0] += 1
        model.load_state_dict(torchga.model_weights_as_dict(model, solution))
        with torch.no_grad():
            rmse = torch.sqrt(((model(x) - x) ** 2).mean())
        return float(1.0 / rmse)

    def on_generation(ga) -> None:  # after a generation's operators and fitness
        stamps.append((time.perf_counter(), calls[0]))

    def make(gens: int):
        return pygad.GA(
            num_generations=gens,
            on_generation=on_generation,
            num_parents_mating=POP - ELITES,
            initial_population=initial.copy(),
            fitness_func=fitness_func,
            parent_selection_type="sss",
            keep_elitism=ELITES,
            crossover_type="uniform",
            mutation_type="random",
            mutation_by_replacement=True,
            random_mutation_min_val=0.0,
            random_mutation_max_val=0.0,
            mutation_percent_genes=1,
            random_seed=0,
            suppress_warnings=True,
        )

    ga = make(generations + 1)
    ga.run()
    # timed from the end of the first generation to the end of the last: the initial
    # population's fitness and run()'s input checks are left out
    (t0, c0), (t1, c1) = stamps[0], stamps[-1]
    best = float(ga.best_solution(ga.last_generation_fitness)[1])
    return {"wall": t1 - t0, "evaluations": c1 - c0, "best": best}


def evotorch_run(x: torch.Tensor, generations: int) -> dict:
    from evotorch import Problem
    from evotorch.algorithms import GeneticAlgorithm
    from evotorch.operators import CopyingOperator, CrossOver

    class UniformCrossOver(CrossOver):
        def _do_cross_over(self, parents1, parents2):
            first = self.problem.make_uniform_shaped_like(parents1) < 0.8
            children = torch.cat(
                [torch.where(first, parents1, parents2), torch.where(first, parents2, parents1)]
            )
            return self._make_children_batch(children)

    class ZeroMutation(CopyingOperator):
        @torch.no_grad()
        def _do(self, batch):
            result = copy.deepcopy(batch)
            data = result.access_values()
            data[self.problem.make_uniform_shaped_like(data) < 0.01] = 0
            return result

    def fitness(values: torch.Tensor) -> torch.Tensor:
        w = values.view(len(values), OUT, IN)
        return 1.0 / population_rmse(x, w, x).float()

    bound = float(np.sqrt(6 / (IN + OUT)))
    problem = Problem(
        "max",
        fitness,
        solution_length=IN * OUT,
        initial_bounds=(-bound, bound),
        dtype=torch.float32,
        vectorized=True,
        seed=0,
    )
    ga = GeneticAlgorithm(
        problem,
        operators=[
            UniformCrossOver(problem, tournament_size=2, num_children=POP - ELITES),
            ZeroMutation(problem),
        ],
        popsize=POP,
        elitist=True,
        re_evaluate=False,
    )
    ga.step()  # the initial population, not timed
    began = time.perf_counter()
    ga.run(generations)
    wall = time.perf_counter() - began
    best = float(ga.status["pop_best_eval"])
    return {"wall": wall, "evaluations": generations * (POP - ELITES), "best": best}


def kernel_gflops(task: WeightsTask, batch: int) -> float:
    genomes = task.space.sample(POP, np.random.default_rng(1))
    task.evaluate(genomes, np.zeros(POP))
    began = time.perf_counter()
    for _ in range(3):
        task.evaluate(genomes, np.zeros(POP))
    return 3 * POP * 4 * batch * IN * OUT / (time.perf_counter() - began) / 1e9


def table(rows: dict[str, dict], batch: int, peak: float) -> str:
    base = rows["evotune (algorithm)"]
    base_rate = base["generations"] / base["wall"]
    lines = [
        "| library | generations | gen/s | evaluations/s | vs evotune | achieved GFLOP/s | "
        "% of matmul peak | best 1/RMSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        rate = r["generations"] / r["wall"]
        gflops = r["evaluations"] * 4 * batch * IN * OUT / r["wall"] / 1e9
        lines.append(
            f"| {name} | {r['generations']} | {rate:.2f} | {r['evaluations'] / r['wall']:.1f} | "
            f"{rate / base_rate:.3f}x | {gflops:.1f} | {100 * gflops / peak:.0f}% | "
            f"{r['best']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--pygad-generations", type=int, default=3, help="timed ones")
    parser.add_argument("--skip", nargs="*", default=[], choices=["pygad", "evotorch", "loop"])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = resolve(raw_config(args.batch, args.generations))
    task = WeightsTask.from_config(config)
    task.enter_stage("layer1")
    x = task.layer.fit_inputs.contiguous()
    peak = matmul_peak()
    rows: dict[str, dict] = {}
    rows["evotune (algorithm)"] = {
        **evotune_algorithm(task, config, args.generations),
        "generations": args.generations,
    }
    if "loop" not in args.skip:
        rows["evotune (run loop)"] = {
            **evotune_loop(args.batch, args.generations),
            "generations": args.generations,
        }
    if "evotorch" not in args.skip:
        rows["EvoTorch GeneticAlgorithm"] = {
            **evotorch_run(x, args.generations),
            "generations": args.generations,
        }
    if "pygad" not in args.skip:
        initial = task.space.sample(POP, np.random.default_rng(0))
        rows["PyGAD torchga"] = {
            **pygad_run(x, initial, args.pygad_generations),
            "generations": args.pygad_generations,
        }
    peak = max(peak, matmul_peak())
    ours = rows["evotune (algorithm)"]
    print(
        f"batch {args.batch}, population {POP}, {POP - ELITES} children per generation, "
        f"{IN}x{OUT} = {IN * OUT} genes, torch threads {torch.get_num_threads()}"
    )
    print(
        f"float32 matmul peak (2048^2, best of 10): {peak:.1f} GFLOP/s; batched fitness "
        f"kernel alone: {kernel_gflops(task, args.batch):.1f} GFLOP/s"
    )
    print(
        f"evotune ask() (numpy selection, crossover, mutation, repair): "
        f"{1000 * ours['ask'] / args.generations:.1f} ms per generation, "
        f"{100 * ours['ask'] / ours['wall']:.0f}% of the generation"
    )
    if "evotune (run loop)" in rows:
        print(
            f"run loop's files for {args.generations + 1} generations: "
            f"{rows['evotune (run loop)']['disk_mb']:.1f} MB"
        )
    print()
    print(table(rows, args.batch, peak))


if __name__ == "__main__":
    main()
