"""Profiles of a point, kept apart from its timed runs (a profiler perturbs what it measures).

- `pyspy`: sample a whole worker process with py-spy -> speedscope JSON + flame graph SVG.
- `torch_profile`: torch.profiler over a few steps -> Perfetto/Chrome trace + per-step top ops.
- `flamegraph`: the SVG renderer the py-spy path uses (matplotlib, no perl).

Submodules are imported on use, not here: `torch_profile` imports torch, which a process that
only post-processes py-spy output should not have to pay for.
"""
