"""evotune: genetic algorithms for transfer learning in PyTorch.

The Python API (`evotune.api`; importing it loads no torch):

- `run(config, *, out=None, overrides=(), quiet=True, overwrite=False) -> Run`
- `resume(path, *, overrides=(), quiet=True) -> Run`
- `open_run(path) -> Run`
- `Run`: `.path`, `.summary`, `.best`, `.config`, `.journal()`, `.export(path)`,
  `.load_model()`, `.predict(data)`, `.report()`
- `UserError` (bad input: the command line's exit code 2), `RunError` (a run that
  cannot go on: exit code 1)
"""

from evotune.api import Best, Run, open_run, resume, run
from evotune.errors import RunError, UserError

__version__ = "0.1.0"

__all__ = ["Best", "Run", "RunError", "UserError", "__version__", "open_run", "resume", "run"]
