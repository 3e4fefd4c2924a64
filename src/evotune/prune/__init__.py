"""The `prune` task's parts beyond fitness: features and OOD inputs, the analysis of
the front (pareto.csv, ensembles, explanations), export of a pruned model, and the
merging of several runs' fronts (`evotune aggregate`)."""
