"""Capacity-planning sweeps: a grid of instances (models x hardware x engines x demand x SLOs),
every point solved once, cached by a hash of its resolved instance and placer's version, and
gathered into one table (``placer sweep SPEC``).

Modules: :mod:`~placer.sweep.spec` (the sweep file), :mod:`~placer.sweep.grid` (expanding it into
points, each resolved to a :class:`~placer.problem.Problem` and keyed), :mod:`~placer.executors`
(local processes or Ray, the same abstraction ``placer compare`` uses), :mod:`~placer.sweep.store`
(the per-point cache that makes a sweep resumable), :mod:`~placer.sweep.point` (what a worker runs
and the figures it sends back), :mod:`~placer.sweep.table` (CSV and Parquet) and
:mod:`~placer.sweep.run` (the loop tying them together).

This package file imports nothing, so that ``placer.compare`` can use the executors without
pulling in the modules that themselves import ``placer.compare``.
"""
