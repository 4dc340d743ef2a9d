"""The strategy model in OR-Tools CP-SAT. Sections follow ``docs/formulation.md``.

Integer scaling is done once, here: times in nanoseconds (``TIME_UNITS_PER_S``), memory in
kilobytes (``BYTES_PER_UNIT``). Resource coefficients are rounded up and capacities down, so a
plan the model accepts is never one the evaluator rejects.
"""

from __future__ import annotations

import math
import threading
import time

from ortools.sat.python import cp_model

from placer.catalogue.engines import fixed_stage_starts
from placer.costmodel.phase import PHASES
from placer.formulation.data import FormulationData
from placer.formulation.terms import objective_terms, stage_bounds
from placer.result import BackendSolution, SolveStatus
from placer.stopping import StopToken

TIME_UNITS_PER_S = 1e9
BYTES_PER_UNIT = 1e3
TRAFFIC_UNITS_PER_BYTE = 1.0
#: short phase tags in variable names (kept as the model's names always were)
_TAG = {"prefill": "pre", "decode": "dec"}


def up(value: float, scale: float) -> int:
    """Scale and round a resource use up."""
    return int(math.ceil(value * scale - 1e-9))


def down(value: float, scale: float) -> int:
    """Scale and round a capacity down."""
    return int(math.floor(value * scale + 1e-9))


class StrategyModel:
    """Variables and constraints of the joint degrees + partition model (F1)-(F9)."""

    def __init__(self, data: FormulationData) -> None:
        self.data = data
        self.model = cp_model.CpModel()
        self.bounds = [stage_bounds(data, c) for c in data.configs]
        self._variables()
        self.add_one_configuration()
        self.add_degree_rules()
        self.add_partition()
        self.add_stage_times_and_memory()
        self.add_slo_bounds()
        self.terms = self._objective_terms()

    # --- variables -----------------------------------------------------------------------
    def _variables(self) -> None:
        data, m = self.data, self.model
        self.z = [m.NewBoolVar(f"z[{i}]") for i in range(len(data.configs))]
        self.pmax = data.max_pp
        # + one unit per rounded term: each coefficient is rounded up on its own
        slack = data.num_layers + 8
        self.t_ub = max(up(c.total_s("prefill", data.class_counts), TIME_UNITS_PER_S) for c in data.configs) + slack
        self.td_ub = max(up(c.total_s("decode", data.class_counts), TIME_UNITS_PER_S) for c in data.configs) + slack
        self.t_pre = m.NewIntVar(0, self.t_ub, "T_pre")
        self.t_dec = m.NewIntVar(0, self.td_ub, "T_dec")
        self.start = [m.NewIntVar(0, data.num_layers, f"a[{s}]") for s in range(self.pmax + 1)]

    def add_one_configuration(self) -> None:
        """(F1) exactly one configuration."""
        self.model.AddExactlyOne(self.z)

    def add_degree_rules(self) -> None:
        """(D4)/(R1)-(R6): one-hot degree variables linked to the configuration; rules on them."""
        data, m = self.data, self.model
        self.degree: dict[tuple[str, int], cp_model.IntVar] = {}
        for name in ("pp", "tp", "dp_attn", "ep", "tp_moe", "replicas"):
            values = sorted({getattr(c.par, name) for c in data.configs})
            for v in values:
                var = m.NewBoolVar(f"{name}[{v}]")
                m.Add(var == sum(z for z, c in zip(self.z, data.configs, strict=True) if getattr(c.par, name) == v))
                self.degree[(name, v)] = var
        for z, config in zip(self.z, data.configs, strict=True):
            if not config.admissible:
                m.Add(z == 0)  # a rule (R1)-(R6) fails for this combination of degrees

    def add_partition(self) -> None:
        """(F2)-(F3) contiguous stages covering every layer once, in order; stage s in use iff s < pp."""
        data, m = self.data, self.model
        m.Add(self.start[0] == 0)
        m.Add(self.start[self.pmax] == data.num_layers)
        prefix = data.prefix_counts()
        self.active = []
        self.count: list[list[cp_model.IntVar]] = [[] for _ in range(data.num_classes)]
        for s in range(self.pmax):
            active = sum(self.degree[("pp", p)] for p in range(s + 1, self.pmax + 1) if ("pp", p) in self.degree)
            self.active.append(active)
            size = self.start[s + 1] - self.start[s]
            m.Add(size >= active)
            m.Add(size <= data.num_layers * active)
        for (name, pp), chosen in self.degree.items():  # (R7) an engine that splits the layers itself
            fixed = fixed_stage_starts(data.problem.engine, data.num_layers, pp) if name == "pp" else None
            for s, first in enumerate(fixed or ()):
                m.Add(self.start[s] == first).OnlyEnforceIf(chosen)
        for k in range(data.num_classes):
            at = [m.NewIntVar(0, int(prefix[k, -1]), f"P[{k},a[{s}]]") for s in range(self.pmax + 1)]
            for s in range(self.pmax + 1):
                m.AddElement(self.start[s], [int(x) for x in prefix[k]], at[s])
            for s in range(self.pmax):
                n = m.NewIntVar(0, int(prefix[k, -1]), f"n[{k},{s}]")
                m.Add(n == at[s + 1] - at[s])
                self.count[k].append(n)

    def _coef(self, name: str, values: list[int]) -> tuple[cp_model.IntVar, int]:
        var = self.model.NewIntVar(min(values), max(values), name)
        self.model.Add(var == sum(v * z for v, z in zip(values, self.z, strict=True)))
        return var, max(values)

    def add_stage_times_and_memory(self) -> None:
        """(F4) stage time and memory per micro-batch: class coefficients times class counts."""
        data, m = self.data, self.model
        cfgs = data.configs
        usable = down(data.usable_bytes, 1 / BYTES_PER_UNIT)
        embed_pre, embed_dec = (
            sum(up(c.embed_s[phase], TIME_UNITS_PER_S) * z for c, z in zip(cfgs, self.z, strict=True))
            for phase in PHASES
        )
        embed_mem = sum(up(c.embed_bytes, 1 / BYTES_PER_UNIT) * z for c, z in zip(cfgs, self.z, strict=True))
        fixed_mem = sum(up(c.fixed_bytes, 1 / BYTES_PER_UNIT) * z for c, z in zip(cfgs, self.z, strict=True))
        # (J3) GPU-seconds per batch, per stage: G m tau rounded as one product, so configurations
        # whose true G m tau are equal (replicas splitting a batch, say) stay tied after scaling.
        phase = data.problem.objective.throughput_phase
        gm = [c.gpus * c.micro[phase] for c in cfgs]
        layer_s = [c.layer_s[phase] for c in cfgs]
        embed_s = [c.embed_s[phase] for c in cfgs]
        head_s = [c.head_s[phase] for c in cfgs]
        embed_gsec = sum(up(f * e, TIME_UNITS_PER_S) * z for f, e, z in zip(gm, embed_s, self.z, strict=True))
        self.stage_gpu_seconds = []
        for k in range(data.num_classes):
            gsec = self._coef(f"gsec[{k}]", [up(f * t[k], TIME_UNITS_PER_S) for f, t in zip(gm, layer_s, strict=True)])
            for s in range(self.pmax):
                prod = m.NewIntVar(0, gsec[1] * data.class_counts[k], f"gsec[{k},{s}]")
                m.AddMultiplicationEquality(prod, [gsec[0], self.count[k][s]])
                setattr(self, f"_prod_gsec_{k}_{s}", prod)
        for s in range(self.pmax):
            head_gsec = sum(
                up(f * h, TIME_UNITS_PER_S) * z
                for f, h, z, c in zip(gm, head_s, self.z, cfgs, strict=True)
                if c.par.pp == s + 1
            )
            body = sum(getattr(self, f"_prod_gsec_{k}_{s}") for k in range(data.num_classes))
            self.stage_gpu_seconds.append(body + head_gsec + (embed_gsec if s == 0 else 0))
        for k in range(data.num_classes):
            tau_pre, tau_dec = (
                self._coef(f"tau_{_TAG[phase]}[{k}]", [up(c.layer_s[phase][k], TIME_UNITS_PER_S) for c in cfgs])
                for phase in PHASES
            )
            mu = self._coef(f"mu[{k}]", [up(c.layer_bytes[k], 1 / BYTES_PER_UNIT) for c in cfgs])
            for s in range(self.pmax):
                for (coef, coef_max), tag in ((tau_pre, "pre"), (tau_dec, "dec"), (mu, "mem")):
                    prod = m.NewIntVar(0, coef_max * data.class_counts[k], f"{tag}[{k},{s}]")
                    m.AddMultiplicationEquality(prod, [coef, self.count[k][s]])
                    setattr(self, f"_prod_{tag}_{k}_{s}", prod)
        for s in range(self.pmax):
            last = [(c, z) for c, z in zip(cfgs, self.z, strict=True) if c.par.pp == s + 1]
            head_pre, head_dec = (sum(up(c.head_s[phase], TIME_UNITS_PER_S) * z for c, z in last) for phase in PHASES)
            head_mem = sum(up(c.head_bytes, 1 / BYTES_PER_UNIT) * z for c, z in last)
            ks = range(data.num_classes)
            pre = sum(getattr(self, f"_prod_pre_{k}_{s}") for k in ks) + head_pre + (embed_pre if s == 0 else 0)
            dec = sum(getattr(self, f"_prod_dec_{k}_{s}") for k in ks) + head_dec + (embed_dec if s == 0 else 0)
            mem = sum(getattr(self, f"_prod_mem_{k}_{s}") for k in ks) + head_mem + (embed_mem if s == 0 else 0)
            m.Add(self.t_pre >= pre)
            m.Add(self.t_dec >= dec)
            m.Add(mem + fixed_mem <= usable)  # (M) memory per GPU

    def add_slo_bounds(self) -> None:
        """(F5)-(F8) every SLO as a bound on T_pre / T_dec, enforced for the chosen configuration."""
        m = self.model
        for z, bound in zip(self.z, self.bounds, strict=True):
            if bound is None:
                m.Add(z == 0)
                continue
            if math.isfinite(bound.prefill_s):
                m.Add(self.t_pre <= down(bound.prefill_s, TIME_UNITS_PER_S)).OnlyEnforceIf(z)
            if math.isfinite(bound.decode_s):
                m.Add(self.t_dec <= down(bound.decode_s, TIME_UNITS_PER_S)).OnlyEnforceIf(z)

    def _objective_terms(self) -> dict[str, tuple[cp_model.IntVar, float]]:
        """(J1)-(J4) objective terms as integer variables with their unit scale."""
        data, m, cfgs = self.data, self.model, self.data.configs
        terms: dict[str, tuple[cp_model.IntVar, float]] = {}
        g = m.NewIntVar(0, max(c.gpus for c in cfgs), "gpus")
        m.Add(g == sum(c.gpus * z for c, z in zip(cfgs, self.z, strict=True)))
        terms["min_gpus"] = (g, 1.0)
        traffic = [int(round(c.cross_node_bytes_per_token * TRAFFIC_UNITS_PER_BYTE)) for c in cfgs]
        x = m.NewIntVar(0, max(traffic), "cross_node")
        m.Add(x == sum(v * z for v, z in zip(traffic, self.z, strict=True)))
        terms["min_cross_node_traffic"] = (x, TRAFFIC_UNITS_PER_BYTE)
        counts = data.class_counts
        ttft = m.NewIntVar(
            0,
            max(
                up(c.total_s("prefill", counts), TIME_UNITS_PER_S) + (c.micro["prefill"] - 1) * self.t_ub for c in cfgs
            ),
            "ttft",
        )
        for c, z in zip(cfgs, self.z, strict=True):
            m.Add(
                ttft >= up(c.total_s("prefill", counts), TIME_UNITS_PER_S) + (c.micro["prefill"] - 1) * self.t_pre
            ).OnlyEnforceIf(z)
        terms["min_ttft"] = (ttft, TIME_UNITS_PER_S)
        phase = data.problem.objective.throughput_phase
        if phase == "prefill":
            ub = max(c.gpus * c.micro["prefill"] for c in cfgs) * self.t_ub
        else:
            ub = max(
                c.gpus * max(c.micro["decode"] * self.td_ub, up(c.total_s("decode", counts), TIME_UNITS_PER_S))
                for c in cfgs
            )
        y = m.NewIntVar(0, ub, "gpu_seconds")
        for stage in self.stage_gpu_seconds:  # y >= G m T, stage by stage
            m.Add(y >= stage)
        if phase == "decode":  # TPOT >= S_dec: y >= G S_dec
            m.Add(
                y
                >= sum(
                    up(c.gpus * c.total_s("decode", counts), TIME_UNITS_PER_S) * z
                    for c, z in zip(cfgs, self.z, strict=True)
                )
            )
        terms["max_throughput_per_gpu"] = (y, TIME_UNITS_PER_S)
        return terms


_STATUS = {
    cp_model.OPTIMAL: SolveStatus.OPTIMAL,
    cp_model.FEASIBLE: SolveStatus.FEASIBLE,
    cp_model.INFEASIBLE: SolveStatus.INFEASIBLE,
    cp_model.UNKNOWN: SolveStatus.NO_PLAN,
    cp_model.MODEL_INVALID: SolveStatus.NO_PLAN,
}


def solve_interruptibly(
    solver: cp_model.CpSolver, model: cp_model.CpModel, stop: StopToken | None = None
) -> tuple[int, bool]:
    """Run one CP-SAT search so that Ctrl-C or the command's deadline stops it with its incumbent.

    CP-SAT's own SIGINT catcher would end the search silently (the caller could not tell an
    interrupted pass from a timed-out one), and a Python handler cannot run while the main thread
    waits inside the C++ search. So the search runs in a worker thread and the main thread polls
    ``stop`` (whose flag a SIGINT handler sets, see :func:`placer.stopping.sigint_stops`); a
    ``KeyboardInterrupt`` raised there (no handler installed) counts the same. Either calls
    ``stop_search``. Returns (status code, interrupted).
    """
    token = stop if stop is not None else StopToken()
    solver.parameters.catch_sigint_signal = False
    outcome: dict[str, int] = {}
    failure: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        try:
            outcome["code"] = solver.Solve(model)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=search, name="cpsat-search", daemon=True).start()
    interrupted = stopped = False
    while not done.is_set():
        try:
            done.wait(0.02)
            if not stopped and token.should_stop():
                stopped, interrupted = True, token.interrupted
                solver.stop_search()
        except KeyboardInterrupt:
            interrupted = stopped = True
            solver.stop_search()
    if failure:
        raise failure[0]
    return outcome["code"], interrupted


def solve(
    data: FormulationData,
    time_limit_s: float | None = None,
    workers: int = 1,
    seed: int = 0,
    stop: StopToken | None = None,
    work_limit: float | None = None,
) -> BackendSolution:
    """Lexicographic solve: one CP-SAT pass per objective term, each fixing the previous optimum.

    Ctrl-C or the deadline of ``stop`` during a pass stops the search; the incumbent found so far
    is returned (marked ``interrupted`` for Ctrl-C) and the remaining passes are skipped.
    ``work_limit`` is CP-SAT's deterministic time for the whole solve, split over the passes as
    they go: the same input stops at the same point on any machine (what tests use)."""
    started = time.perf_counter()
    token = StopToken.within(stop, time_limit_s)
    work_used = 0.0
    if not data.configs:
        return BackendSolution("cpsat", SolveStatus.INFEASIBLE, None, (), {}, None, time.perf_counter() - started)
    built = StrategyModel(data)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    terms: dict[str, float] = {}
    statuses: list[str] = []
    overall = SolveStatus.OPTIMAL
    primary_bound: float | None = None
    hint_values: list[int] | None = None
    hint_starts: tuple[int, ...] = ()
    interrupted = False
    chosen: int | None = None
    starts: tuple[int, ...] = ()
    for index, name in enumerate(objective_terms(data)):
        var, scale = built.terms[name]
        remaining = token.remaining_s()
        work_left = math.inf if work_limit is None else work_limit - work_used
        if remaining <= 0 or work_left <= 0:
            overall = SolveStatus.FEASIBLE if terms else SolveStatus.NO_PLAN
            interrupted = interrupted or token.interrupted
            break
        if math.isfinite(remaining):
            solver.parameters.max_time_in_seconds = remaining
        if math.isfinite(work_left):
            solver.parameters.max_deterministic_time = work_left
        built.model.ClearHints()
        if hint_values is None and data.hint_config is not None:
            hint_values = [int(i == data.hint_config) for i in range(len(built.z))]
            hint_starts = data.hint_starts
        if hint_values is not None:
            for s, a in enumerate(hint_starts + (data.num_layers,) * (built.pmax + 1 - len(hint_starts))):
                built.model.AddHint(built.start[s], a)
            for z, v in zip(built.z, hint_values, strict=True):
                built.model.AddHint(z, v)
        built.model.Minimize(var)
        code, interrupted = solve_interruptibly(solver, built.model, token)
        work_used += solver.deterministic_time
        status = _STATUS.get(code, SolveStatus.NO_PLAN)
        statuses.append(f"{name}:{status.value}" + (" (interrupted)" if interrupted else ""))
        if status in (SolveStatus.INFEASIBLE, SolveStatus.NO_PLAN):
            if index == 0:
                return BackendSolution(
                    "cpsat", status, None, (), {}, None, time.perf_counter() - started, tuple(statuses), interrupted
                )
            overall = SolveStatus.FEASIBLE
            break
        value = int(solver.Value(var))
        if index == 0:
            primary_bound = solver.BestObjectiveBound() / scale
        if status != SolveStatus.OPTIMAL:
            overall = SolveStatus.FEASIBLE
        hint_values = [int(solver.Value(z)) for z in built.z]
        chosen = hint_values.index(1)
        terms[name] = value / scale
        starts = tuple(int(solver.Value(built.start[s])) for s in range(data.configs[chosen].par.pp))
        hint_starts = starts
        built.model.Add(var <= value)  # keep this term at its optimum for the next passes
        if interrupted:
            break
    if chosen is None:
        overall = SolveStatus.NO_PLAN
    elif "min_cross_node_traffic" in terms:
        # Fixed by the final configuration alone: reported exactly, not as the rounded integer
        # (a later pass may have moved to a configuration that ties with it after rounding).
        terms["min_cross_node_traffic"] = data.configs[chosen].cross_node_bytes_per_token
    return BackendSolution(
        "cpsat",
        overall,
        chosen,
        starts,
        terms,
        primary_bound,
        time.perf_counter() - started,
        tuple(statuses),
        interrupted,
    )
