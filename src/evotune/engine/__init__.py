"""Model-agnostic evolution: genome spaces, operators, algorithms and the run loop.

Nothing here imports torch models or data; tasks plug in through `problem.Problem`."""
