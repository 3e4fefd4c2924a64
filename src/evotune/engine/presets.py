"""Search presets that reproduce the published systems (SEEDS.md). A preset fills the
`search` keys a user did not set; the user's own values always win.

Settings the seeds define relative to the population ("keep the top half") are
relative here too (`elitism_fraction`), so `preset: seed` with `population: 16` keeps
8, not the seed's 12 of 24."""

from __future__ import annotations

from typing import Any

from evotune.errors import UserError, did_you_mean

PRESETS: dict[str, dict[str, Any]] = {
    # §1 selective layer tuning: population 24, keep the top half, sequential crossover,
    # per-genome 4% flip; the winners survive (their README; elitism is a setting).
    "selective-tuning": {
        "algorithm": "ga",
        "population": 24,
        "elitism_fraction": 0.5,
        "operators": {
            "selection": {"name": "truncation", "fraction": 0.5},
            "crossover": {"name": "sequential"},
            "mutation": {"name": "seed_flip", "genome_prob": 0.04, "gene_fraction": 0.04},
        },
    },
    # §2 transfer hyperparameters: tournament k=2, two-point crossover, redraw in range.
    "tl-hparams": {
        "algorithm": "ga",
        "elitism": 1,
        "operators": {
            "selection": {"name": "tournament", "k": 2},
            "crossover": {"name": "two_point"},
            "mutation": {"name": "reset"},
        },
    },
    # §3 MOEvoPruneDeepTL: NSGA-II, population 30, 200 evaluations, uniform crossover
    # (p = 1, swap 0.5), bit-flip 1/L.
    "moevoprune": {
        "algorithm": "nsga2",
        "population": 30,
        "generations": None,
        "max_evaluations": 200,
        "operators": {
            "selection": {"name": "tournament", "k": 2},
            "crossover": {"name": "uniform", "prob": 1.0, "swap": 0.5},
            "mutation": {"name": "bit_flip"},
        },
    },
    # §4 genetic autoencoder: population 10, keep the best half, each weight from parent 1
    # with p = 0.8 (uniform swap 0.2), zero-out mutation p = 0.01.
    "genetic-ae": {
        "algorithm": "ga",
        "population": 10,
        "elitism_fraction": 0.5,
        "operators": {
            "selection": {"name": "truncation", "fraction": 0.5},
            "crossover": {"name": "uniform", "prob": 1.0, "swap": 0.2},
            "mutation": {"name": "zero_out", "rate": 0.01},
        },
    },
}


def get_preset(name: str, where: str = "search.preset") -> dict[str, Any]:
    if name not in PRESETS:
        raise UserError(
            f"{where}: unknown preset {name!r}{did_you_mean(name, PRESETS)}; "
            f"choose one of {', '.join(sorted(PRESETS))} (or 'seed' for the task's own)"
        )
    return PRESETS[name]


def apply_preset(search: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
    """`search` with the preset's values filled in where the user set none; a relative
    elitism follows the population actually used."""
    preset = dict(preset)
    fraction = preset.pop("elitism_fraction", None)
    merged = {**preset, **search}
    if fraction is not None and merged.get("elitism") is None:
        population = merged.get("population")
        if isinstance(population, int) and population > 1:
            merged["elitism"] = min(population - 1, max(1, round(fraction * population)))
    operators = {**preset.get("operators", {}), **(search.get("operators") or {})}
    if operators:
        merged["operators"] = operators
    return merged
