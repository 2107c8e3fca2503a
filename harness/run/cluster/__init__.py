"""The Ray executor: a suite's points measured on a Ray cluster (`harness run SUITE --executor ray`).

    runner ─► driver.py (ClusterBackend: units out, (point, rows) back as units finish)
                 │  session.py   connect to a cluster (ship this checkout) or start a local instance
                 │  nodes.py     the cluster's nodes, their CPUs, GPUs and measuring slots
                 │  pool.py      one NodeMeasurer actor per measuring slot, started, checked, replaced
                 ▼
              remote.py (on a node) ─► unit.py: run_unit = the local rounds (measure_tasks) with
                                      this node's fork server, rows stamped with the node
              ledger.py  counts each unit's starts: a second start is a retry
    dryrun.py   `--dry-run --executor ray`: the units, and the cluster's nodes with their slots

A unit is one point with all its variants, so the variants a ratio pairs are always measured on
one node, in lockstep, exactly as a local run measures them. A timing unit holds a measuring slot
(the custom resource SLOT_RESOURCE, one per node; the measurer holding it also holds the node's
CPUs and GPUs), so no other work shares its cores. Accuracy units (no timing at stake) are plain
Ray tasks asking for CPUs only, several to a node. Ray's retries are off; a unit started twice
anyway is recorded `retried`.

settings.py, code.py and unit.py import nothing of Ray (the command line checks options and the
extra with the first two; nodes and driver share the third); every other module here imports Ray
and is imported only once require_ray() has passed.
"""
