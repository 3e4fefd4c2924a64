"""After a `prune` search: retrain the Pareto front (same seeds, so the same heads as
in the search), measure it on the test split, and write

- `pareto.csv`: one row per front member, fitness, test metrics and sizes;
- test metrics into summary.json's `pareto` entries;
- `analysis.json`: the ensemble tables and explanations, rendered by the report;
- `plots/feature_frequency.png`, `plots/gradcam.png`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from evotune.engine.problem import evaluation_seed
from evotune.engine.state import atomic_write_json, atomic_write_text
from evotune.prune.ensembles import Outputs, accuracy_windows, auroc_windows
from evotune.prune.explain import frequency, plot_frequency, plot_gradcam, top
from evotune.train.popheads import predict


def front_genomes(task: Any, summary: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Genomes and evaluation seeds of the front (`run_seed` per entry when merged)."""
    entries = summary.get("pareto") or []
    genomes = np.stack([task.space.from_json(e["genome"]) for e in entries])
    seeds = np.array(
        [
            evaluation_seed(e.get("run_seed", summary["seed"]), task.space.hash(g))
            for e, g in zip(entries, genomes)
        ],
        dtype=np.int64,
    )
    return genomes, seeds


def analyse(task: Any, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    if not task.options.analysis or not summary.get("pareto"):
        return summary
    genomes, seeds = front_genomes(task, summary)
    heads = task.train(genomes, seeds)
    outputs, on_test = _outputs(task, heads)
    tested = task.score(heads, outputs.features, outputs.labels, outputs.ood)
    prefix = "test_" if on_test else "holdout_"
    for entry, row in zip(summary["pareto"], tested):
        entry["metrics"] |= {f"{prefix}{k}": v for k, v in row.items()}
    write_pareto_csv(run_dir / "pareto.csv", summary)
    sections = _ensemble_sections(task, summary, outputs.result, on_test)
    sections += _explanation_sections(task, genomes, run_dir / "plots")
    atomic_write_json(run_dir / "analysis.json", {"task": "prune", "sections": sections})
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


class _Eval:
    def __init__(self, features, labels, ood, result: Outputs) -> None:
        self.features, self.labels, self.ood, self.result = features, labels, ood, result


def _outputs(task: Any, heads: list) -> tuple[_Eval, bool]:
    """The front's outputs on the test split (the validation split when there is none)."""
    f = task.feats
    on_test = f.test_x is not None and len(f.test_x) > 0
    x, y, ood = (f.test_x, f.test_y, f.ood_test) if on_test else (f.val_x, f.val_y, f.ood_val)
    logits = predict(heads, x)
    out_scores = None
    if ood is not None and len(ood):
        out_scores = task.ood_objective_scores(heads, ood)
    in_scores = task.ood_objective_scores(heads, x, logits)
    return _Eval(x, y, ood, Outputs(logits, y, in_scores, out_scores)), on_test


def _ensemble_sections(
    task: Any, summary: dict[str, Any], out: Outputs, on_test: bool
) -> list[dict[str, Any]]:
    where = "test" if on_test else "validation (no test split)"
    metrics = [e["metrics"] for e in summary["pareto"]]
    windows = [tuple(w) for w in task.options.windows]
    rows = accuracy_windows(np.array([m["accuracy"] for m in metrics]), out, windows)
    sections = [
        _table_section(
            "Ensembles by accuracy window",
            f"Front members whose validation accuracy lies in each percentile window vote "
            f"by majority; accuracy on the {where} set, against the window's best member "
            f"(by validation accuracy) and the members' mean.",
            rows,
        )
    ]
    if out.ood_scores is not None and all("auroc" in m for m in metrics):
        rows = auroc_windows(np.array([m["auroc"] for m in metrics]), out, windows)
        sections.append(
            _table_section(
                "Ensembles by OOD AUROC window",
                f"Members grouped by validation AUROC percentiles; the ensemble's OOD score "
                f"is the members' mean {task.options.ood_score} score. AUROC on the {where} "
                f"and OOD inputs.",
                rows,
            )
        )
    return sections


def _explanation_sections(task: Any, genomes: np.ndarray, plots: Path) -> list[dict[str, Any]]:
    fm, nm = task.masks(genomes)
    out = []
    for what, masks in (("feature", fm), ("neuron", nm)):
        if task.options.mode not in (f"{what}s", "both"):
            continue
        freq = frequency(masks)
        chosen = top(freq, task.options.explain.top)
        images = [{"file": plot_frequency(freq, chosen, what, plots / f"{what}_frequency.png")}]
        if what == "feature" and task.net is not None and task.samples is not None:
            cam = plot_gradcam(
                task.net, task.samples, chosen, task.options.explain.stage, plots / "gradcam.png"
            )
            images += [{"file": cam}] if cam else []
        rows = [{"rank": r + 1, what: i, "frequency": float(freq[i])} for r, i in enumerate(chosen)]
        section = _table_section(
            f"Most frequent {what}s across the front",
            f"How many of the front's {len(masks)} members keep each {what}; "
            f"the top {len(chosen)}."
            + (" Grad-CAM++ maps at the backbone's last conv stage." if len(images) > 1 else ""),
            rows,
        )
        section["images"] = [{"file": f"plots/{Path(i['file']).name}"} for i in images]
        out.append(section)
    return out


def _table_section(title: str, text: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    headers = list(rows[0]) if rows else []
    return {
        "title": title,
        "text": text,
        "table": {"headers": headers, "rows": [[r[h] for h in headers] for r in rows]},
    }


def write_pareto_csv(path: Path, summary: dict[str, Any]) -> None:
    """One row per front member: index, hash, objectives, metrics, genome."""
    names = [o["name"] for o in summary["objectives"]]
    entries = summary.get("pareto") or []
    extra = sorted({k for e in entries for k in e.get("metrics", {})} - set(names))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "hash", *names, *extra, "genome"])
    for i, e in enumerate(entries):
        metrics = e.get("metrics", {})
        writer.writerow(
            [i, e.get("hash", ""), *e["fitness"], *(metrics.get(k, "") for k in extra), e["genome"]]
        )
    atomic_write_text(path, buffer.getvalue())
