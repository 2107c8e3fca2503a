"""What the worker fork server imports before it forks a worker per request (harness/run/forkserver.py).

Pure-Python imports only: none of them starts a thread or runs a torch op, so forking after them
is safe. Two are easy to miss: torch._dynamo and torch._inductor.config are imported lazily by
AdamW's constructor and by the first torch.profiler start, about 1 s each time, which every
worker (every point) would otherwise pay again.

Then the garbage collector is told to leave everything imported so far alone (`gc.freeze`). A
worker's full collections, the explicit one between variants and the automatic ones that can land
inside a timed step, would otherwise walk the few hundred thousand objects of torch and its
compiler stack each time (about 0.15 s); frozen objects are also never written to by the
collector, so forked workers keep sharing their pages.
"""

import gc

import torch  # noqa: F401
import torch._dynamo  # noqa: F401
import torch._inductor.config  # noqa: F401
import torch.profiler  # noqa: F401
import torch.utils.flop_counter  # noqa: F401

import harness.measure.speed  # noqa: F401
import harness.measure.telemetry  # noqa: F401
import harness.run.worker  # noqa: F401
import models.flops  # noqa: F401
import models.transformer  # noqa: F401

gc.collect()
gc.freeze()
