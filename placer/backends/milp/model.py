"""The strategy model as a MILP in PuLP (HiGHS when installed, else CBC). Sections follow
``docs/formulation.md`` and mirror ``placer.backends.cpsat.model`` constraint family by family.

Variables are continuous in physical units, scaled once here for conditioning: times in
milliseconds (``TIME_UNITS_PER_S``), memory in gigabytes (``BYTES_PER_UNIT``). No integer
rounding is needed; instead every capacity (memory, SLO bounds) is tightened by a margin
(``MARGIN``: 1 ns / 1 kB, the granularity CP-SAT rounds to) larger than the solver's feasibility
tolerances, and the chosen plan is re-checked exactly in floating point before it is returned
(re-solved with a wider margin in the rare case the check fails). So a plan the model accepts is
never one the evaluator rejects. Reported terms are recomputed exactly from the chosen
configuration and partition, never read from solver variables.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
import time
from pathlib import Path

# Load OR-Tools before PuLP: PuLP imports highspy when it is installed, and OR-Tools' library
# then fails to load in the same process (conflicting HiGHS symbols). Loading OR-Tools first is safe.
import ortools.sat.python.cp_model  # noqa: F401, E402  (only for the load order above)
import pulp

from placer.catalogue.engines import fixed_stage_starts
from placer.costmodel.phase import PHASES
from placer.formulation.data import Config, FormulationData
from placer.formulation.terms import StageBounds, objective_terms, stage_bounds, term_value
from placer.result import BackendSolution, SolveStatus
from placer.stopping import StopToken

TIME_UNITS_PER_S = 1e3  # milliseconds
BYTES_PER_UNIT = 1e9  # gigabytes
TRAFFIC_UNITS_PER_BYTE = 1.0
#: short phase tags in variable names (kept as the model's names always were)
_TAG = {"prefill": "pre", "decode": "dec"}
#: Capacity tightening in model units (1e-6 ms = 1 ns, 1e-6 GB = 1 kB); widened on a failed re-check.
MARGIN = 1e-6
#: Scale of each objective term from physical units to model units.
TERM_SCALE = {
    "min_gpus": 1.0,
    "min_cross_node_traffic": TRAFFIC_UNITS_PER_BYTE,
    "min_ttft": TIME_UNITS_PER_S,
    "max_throughput_per_gpu": TIME_UNITS_PER_S,
}


def make_solver(time_limit_s: float, workers: int, seed: int, log_path: str | None = None) -> pulp.LpSolver:
    """CBC by default; in-process HiGHS with ``PLACER_MILP_SOLVER=highs``. Gaps closed to optimality.

    HiGHS is opt-in because loading ``highspy`` and OR-Tools in one process breaks OR-Tools' import
    (observed with highspy 1.15 and ortools 9.15); even asking PuLP whether HiGHS is available loads it.
    """
    choice = os.environ.get("PLACER_MILP_SOLVER", "cbc").lower()
    available = pulp.listSolvers(onlyAvailable=True) if choice == "highs" else []
    if "HiGHS" in available:
        return pulp.HiGHS(
            msg=False, timeLimit=time_limit_s, threads=workers, gapRel=1e-9, gapAbs=1e-9, random_seed=seed
        )
    if "HiGHS_CMD" in available:
        return pulp.HiGHS_CMD(msg=False, timeLimit=time_limit_s, threads=workers, gapRel=1e-9, gapAbs=1e-9)
    return pulp.PULP_CBC_CMD(
        msg=False,
        timeLimit=time_limit_s,
        threads=workers,
        gapRel=1e-9,
        gapAbs=1e-9,
        options=[f"randomSeed {seed}"],
        logPath=log_path,
    )


@dataclasses.dataclass(frozen=True)
class CbcSummary:
    """What CBC's closing lines say: how the search ended and its proven lower bound (model units)."""

    result: str  # e.g. "Optimal solution found", "Stopped on time", "Problem proven infeasible"
    lower_bound: float | None

    @property
    def proven_infeasible(self) -> bool:
        return "infeasible" in self.result.lower()


def read_cbc_log(path: str) -> CbcSummary | None:
    """Parse CBC's summary (``Result - ...``, ``Lower bound: x``) from its log file, if written.

    PuLP maps CBC's status to "not solved" for both a time-out and some proofs of infeasibility,
    and exposes no bound; the log says which it was and what CBC proved."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    result = re.findall(r"^Result - (.+)$", text, flags=re.MULTILINE)
    bound = re.findall(r"^Lower bound:\s+(\S+)", text, flags=re.MULTILINE)
    value: float | None = None
    if bound:
        try:
            value = float(bound[-1])
        except ValueError:
            value = None
        if value is not None and not math.isfinite(value):
            value = None
    return CbcSummary(result[-1].strip() if result else "", value)


class StrategyModel:
    """Variables and constraints of the joint degrees + partition model (F1)-(F9), linearised."""

    def __init__(self, data: FormulationData, margin: float = MARGIN) -> None:
        self.data = data
        self.margin = margin
        self.lp = pulp.LpProblem("placer", pulp.LpMinimize)
        self.bounds = [stage_bounds(data, c) for c in data.configs]
        self._variables()
        self.add_one_configuration()
        self.add_degree_rules()
        self.add_partition()
        self.add_stage_times_and_memory()
        self.add_slo_bounds()
        self.terms = self._objective_terms()

    def var(
        self, name: str, low: float | None = None, high: float | None = None, cat: str = pulp.LpContinuous
    ) -> pulp.LpVariable:
        """A new variable of this model (``add_variable`` on PuLP >= 3.3, the constructor before)."""
        if hasattr(self.lp, "add_variable"):
            return self.lp.add_variable(name, low, high, cat=cat)
        return pulp.LpVariable(name, low, high, cat=cat)

    def add(self, constraint: pulp.LpConstraint) -> None:
        self.lp += constraint

    # --- variables -----------------------------------------------------------------------
    def _variables(self) -> None:
        data = self.data
        counts = data.class_counts
        self.z = [self.var(f"z_{i}", cat=pulp.LpBinary) for i in range(len(data.configs))]
        self.pmax = data.max_pp
        # valid upper bounds on the max-stage times (any stage is at most the whole pipeline), padded
        self.t_ub = max(c.total_s("prefill", counts) for c in data.configs) * TIME_UNITS_PER_S * (1 + 1e-6) + 1e-3
        self.td_ub = max(c.total_s("decode", counts) for c in data.configs) * TIME_UNITS_PER_S * (1 + 1e-6) + 1e-3
        self.t_pre = self.var("T_pre", 0, self.t_ub)
        self.t_dec = self.var("T_dec", 0, self.td_ub)
        self.start = [self.var(f"a_{s}", 0, data.num_layers, cat=pulp.LpInteger) for s in range(self.pmax + 1)]

    def add_one_configuration(self) -> None:
        """(F1) exactly one configuration."""
        self.add(pulp.lpSum(self.z) == 1)

    def add_degree_rules(self) -> None:
        """(D4)/(R1)-(R6): one-hot degree variables linked to the configuration; rules on them."""
        data = self.data
        self.degree: dict[tuple[str, int], pulp.LpVariable] = {}
        for name in ("pp", "tp", "dp_attn", "ep", "tp_moe", "replicas"):
            for v in sorted({getattr(c.par, name) for c in data.configs}):
                var = self.var(f"deg_{name}_{v}", cat=pulp.LpBinary)
                self.add(
                    var == pulp.lpSum(z for z, c in zip(self.z, data.configs, strict=True) if getattr(c.par, name) == v)
                )
                self.degree[(name, v)] = var
        for z, config in zip(self.z, data.configs, strict=True):
            if not config.admissible:
                self.add(z == 0)  # a rule (R1)-(R6) fails for this combination of degrees

    def add_partition(self) -> None:
        """(F2)-(F3) contiguous stages covering every layer once, in order; stage s in use iff s < pp."""
        data = self.data
        length = data.num_layers
        self.add(self.start[0] == 0)
        self.add(self.start[self.pmax] == length)
        self.active = []
        for s in range(self.pmax):
            active = pulp.lpSum(self.degree[("pp", p)] for p in range(s + 1, self.pmax + 1) if ("pp", p) in self.degree)
            self.active.append(active)
            size = self.start[s + 1] - self.start[s]
            self.add(size >= active)
            self.add(size <= length * active)
        for (name, pp), chosen in self.degree.items():  # (R7) an engine that splits the layers itself
            fixed = fixed_stage_starts(data.problem.engine, length, pp) if name == "pp" else None
            for s, first in enumerate(fixed or ()):  # a_s = first when this pp is chosen (big-M: L)
                self.add(self.start[s] - first <= length * (1 - chosen))
                self.add(first - self.start[s] <= length * (1 - chosen))
        self.position = [self.position_one_hot(s) for s in range(self.pmax + 1)]
        prefix = data.prefix_counts()
        self.count_bits: list[list[list[tuple[int, pulp.LpVariable]]]] = []
        for k in range(data.num_classes):
            at = [
                pulp.lpSum(int(prefix[k, i]) * b for i, b in enumerate(self.position[s])) for s in range(self.pmax + 1)
            ]
            per_stage = []
            for s in range(self.pmax):
                per_stage.append(self.count_in_binary(f"{k}_{s}", at[s + 1] - at[s], int(prefix[k, -1])))
            self.count_bits.append(per_stage)

    def position_one_hot(self, s: int) -> list[pulp.LpVariable]:
        """(F3) b[s][i] = 1 iff a_s == i, so that P[k][a_s] = sum_i P[k][i] b[s][i] is linear."""
        b = [self.var(f"b_{s}_{i}", cat=pulp.LpBinary) for i in range(self.data.num_layers + 1)]
        self.add(pulp.lpSum(b) == 1)
        self.add(self.start[s] == pulp.lpSum(i * v for i, v in enumerate(b)))
        return b

    def count_in_binary(self, tag: str, count: pulp.LpAffineExpression, most: int) -> list[tuple[int, pulp.LpVariable]]:
        """(F3) n[k][s] = P[k][a_{s+1}] - P[k][a_s] = sum_j 2^j beta_j, for the products of (F4)."""
        bits = [
            (2**j, self.var(f"beta_{tag}_{j}", cat=pulp.LpBinary))
            for j in range(max(1, math.ceil(math.log2(most + 1))))
        ]
        self.add(count == pulp.lpSum(w * v for w, v in bits))
        return bits

    def coefficient(self, name: str, values: list[float]) -> tuple[pulp.LpVariable, float, float]:
        """(F4) tau = sum_c coef_c z_c, a configuration-dependent coefficient, with its range."""
        lo, hi = min(values), max(values)
        var = self.var(name, lo, hi)
        self.add(var == pulp.lpSum(v * z for v, z in zip(values, self.z, strict=True)))
        return var, lo, hi

    def product_with_binary(
        self, name: str, coef: tuple[pulp.LpVariable, float, float], bit: pulp.LpVariable
    ) -> pulp.LpVariable:
        """(F4) p = tau * beta, exact for binary beta (McCormick envelope with tau in [lo, hi])."""
        tau, lo, hi = coef
        p = self.var(name, min(0.0, lo), hi)
        self.add(p <= hi * bit)
        self.add(p >= lo * bit)
        self.add(p <= tau - lo * (1 - bit))
        self.add(p >= tau - hi * (1 - bit))
        return p

    def product_with_count(
        self, tag: str, coef: tuple[pulp.LpVariable, float, float], bits: list[tuple[int, pulp.LpVariable]]
    ) -> pulp.LpAffineExpression:
        """(F4) tau * n[k][s] = sum_j 2^j (tau * beta_j), exact."""
        return pulp.lpSum(w * self.product_with_binary(f"{tag}_{j}", coef, bit) for j, (w, bit) in enumerate(bits))

    def add_stage_times_and_memory(self) -> None:
        """(F4) stage time and memory per micro-batch: class coefficients times class counts."""
        data = self.data
        cfgs = data.configs
        ts, ms = TIME_UNITS_PER_S, 1 / BYTES_PER_UNIT
        usable = data.usable_bytes * ms - self.margin
        zc = list(zip(cfgs, self.z, strict=True))
        embed_pre, embed_dec = (pulp.lpSum(c.embed_s[phase] * ts * z for c, z in zc) for phase in PHASES)
        embed_mem = pulp.lpSum(c.embed_bytes * ms * z for c, z in zc)
        fixed_mem = pulp.lpSum(c.fixed_bytes * ms * z for c, z in zc)
        prods: dict[tuple[str, int, int], pulp.LpAffineExpression] = {}
        for k in range(data.num_classes):
            tau_pre, tau_dec = (
                self.coefficient(f"tau_{_TAG[phase]}_{k}", [c.layer_s[phase][k] * ts for c in cfgs]) for phase in PHASES
            )
            mu = self.coefficient(f"mu_{k}", [c.layer_bytes[k] * ms for c in cfgs])
            for s in range(self.pmax):
                for coef, tag in ((tau_pre, "pre"), (tau_dec, "dec"), (mu, "mem")):
                    prods[(tag, k, s)] = self.product_with_count(f"{tag}_{k}_{s}", coef, self.count_bits[k][s])
        ks = range(data.num_classes)
        for s in range(self.pmax):
            last = [(c, z) for c, z in zc if c.par.pp == s + 1]
            head_pre, head_dec = (pulp.lpSum(c.head_s[phase] * ts * z for c, z in last) for phase in PHASES)
            head_mem = pulp.lpSum(c.head_bytes * ms * z for c, z in last)
            pre = pulp.lpSum(prods[("pre", k, s)] for k in ks) + head_pre + (embed_pre if s == 0 else 0)
            dec = pulp.lpSum(prods[("dec", k, s)] for k in ks) + head_dec + (embed_dec if s == 0 else 0)
            mem = pulp.lpSum(prods[("mem", k, s)] for k in ks) + head_mem + (embed_mem if s == 0 else 0)
            self.add(self.t_pre >= pre)
            self.add(self.t_dec >= dec)
            self.add(mem + fixed_mem <= usable)  # (M) memory per GPU

    def add_slo_bounds(self) -> None:
        """(F5)-(F8) every SLO as a bound on T_pre / T_dec, enforced (big-M) for the chosen configuration."""
        for z, bound in zip(self.z, self.bounds, strict=True):
            if bound is None:
                self.add(z == 0)
                continue
            for var, limit, ub in ((self.t_pre, bound.prefill_s, self.t_ub), (self.t_dec, bound.decode_s, self.td_ub)):
                if not math.isfinite(limit):
                    continue
                scaled = limit * TIME_UNITS_PER_S - self.margin
                if scaled < ub:
                    self.add(var <= scaled + (ub - scaled) * (1 - z))

    def _objective_terms(self) -> dict[str, pulp.LpVariable]:
        """(J1)-(J4) objective terms as continuous variables in model units (``TERM_SCALE``)."""
        data, cfgs = self.data, self.data.configs
        counts = data.class_counts
        ts = TIME_UNITS_PER_S
        zc = list(zip(cfgs, self.z, strict=True))
        terms: dict[str, pulp.LpVariable] = {}
        g = self.var("gpus", 0)
        self.add(g == pulp.lpSum(c.gpus * z for c, z in zc))
        terms["min_gpus"] = g
        x = self.var("cross_node", 0)
        self.add(x == pulp.lpSum(c.cross_node_bytes_per_token * TRAFFIC_UNITS_PER_BYTE * z for c, z in zc))
        terms["min_cross_node_traffic"] = x
        ttft = self.var("ttft", 0)
        for c, z in zc:
            total = c.total_s("prefill", counts) * ts
            big_m = total + (c.micro["prefill"] - 1) * self.t_ub
            self.add(ttft >= total + (c.micro["prefill"] - 1) * self.t_pre - big_m * (1 - z))
        terms["min_ttft"] = ttft
        y = self.var("gpu_seconds", 0)
        if data.problem.objective.throughput_phase == "prefill":
            for c, z in zc:
                w = c.gpus * c.micro["prefill"]
                self.add(y >= w * self.t_pre - w * self.t_ub * (1 - z))
        else:
            for c, z in zc:
                w = c.gpus * c.micro["decode"]
                self.add(y >= w * self.t_dec - w * self.td_ub * (1 - z))
                self.add(y >= c.gpus * c.total_s("decode", counts) * ts * z)
        terms["max_throughput_per_gpu"] = y
        return terms


_STATUS = {
    pulp.LpSolutionOptimal: SolveStatus.OPTIMAL,
    pulp.LpSolutionIntegerFeasible: SolveStatus.FEASIBLE,  # stopped by the time limit with an incumbent
    pulp.LpSolutionInfeasible: SolveStatus.INFEASIBLE,
    pulp.LpSolutionUnbounded: SolveStatus.NO_PLAN,
    pulp.LpSolutionNoSolutionFound: SolveStatus.NO_PLAN,
}


def _status(lp: pulp.LpProblem) -> SolveStatus:
    status = _STATUS.get(lp.sol_status, SolveStatus.NO_PLAN)
    highs = getattr(lp, "solverModel", None)
    if status == SolveStatus.FEASIBLE and highs is not None and hasattr(highs, "getInfo"):
        if highs.getInfo().primal_solution_status != 2:  # PuLP maps a bare HiGHS time-out to "feasible"
            return SolveStatus.NO_PLAN
    return status


def _dual_bound(lp: pulp.LpProblem) -> float | None:
    """The solver's proven lower bound on the pass objective, where PuLP exposes one (HiGHS)."""
    highs = getattr(lp, "solverModel", None)
    if highs is not None and hasattr(highs, "getInfo"):
        bound = highs.getInfo().mip_dual_bound
        return float(bound) if math.isfinite(bound) else None
    return None


def exact_stage_times(
    data: FormulationData, config: Config, bounds: StageBounds, starts: tuple[int, ...]
) -> tuple[float, float] | None:
    """(F4)-(F9) re-checked in floating point for a chosen plan: (T_pre, T_dec), or None if it breaks one."""
    ends = list(starts[1:]) + [data.num_layers]
    if starts[0] != 0 or any(e <= s for s, e in zip(starts, ends, strict=True)):
        return None
    t_pre = t_dec = 0.0
    for s, (i, j) in enumerate(zip(starts, ends, strict=True)):
        first, last = s == 0, s == config.par.pp - 1
        layers = [data.layer_class[x] for x in range(i, j)]
        mem = sum(config.layer_bytes[k] for k in layers) + config.fixed_bytes
        pre, dec = (
            sum(config.layer_s[phase][k] for k in layers)
            + (config.embed_s[phase] if first else 0)
            + (config.head_s[phase] if last else 0)
            for phase in PHASES
        )
        mem = mem + (config.embed_bytes if first else 0) + (config.head_bytes if last else 0)
        if mem > data.usable_bytes or pre > bounds.prefill_s or dec > bounds.decode_s:
            return None
        t_pre, t_dec = max(t_pre, pre), max(t_dec, dec)
    return t_pre, t_dec


def _solve_once(
    data: FormulationData, token: StopToken, workers: int, seed: int, margin: float, started: float
) -> tuple[BackendSolution, bool]:
    """Lexicographic passes on one model; the flag says whether the exact re-check of the plan failed."""
    built = StrategyModel(data, margin)
    terms: dict[str, float] = {}
    statuses: list[str] = []
    overall = SolveStatus.OPTIMAL
    primary_bound: float | None = None
    chosen: int | None = None
    starts: tuple[int, ...] = ()
    interrupted = False
    summary: CbcSummary | None = None
    for index, name in enumerate(objective_terms(data)):
        var, scale = built.terms[name], TERM_SCALE[name]
        remaining = token.remaining_s()
        if remaining <= 0:
            overall = SolveStatus.FEASIBLE if terms else SolveStatus.NO_PLAN
            statuses.append(f"{name}:not run ({token.why() or 'no time left'})")
            break
        built.lp.setObjective(pulp.lpSum([var]))
        log = tempfile.NamedTemporaryFile(prefix="placer-cbc-", suffix=".log", delete=False)
        log.close()
        try:
            # CBC takes whole seconds; a limit under one second still gets one.
            built.lp.solve(make_solver(min(remaining, 1e7), workers, seed, log.name))
            summary = read_cbc_log(log.name)
        except KeyboardInterrupt:
            # The solver process was interrupted with us: keep the passes already finished.
            statuses.append(f"{name}:interrupted")
            overall = SolveStatus.FEASIBLE if terms else SolveStatus.NO_PLAN
            interrupted = True
            break
        finally:
            Path(log.name).unlink(missing_ok=True)
        status = _status(built.lp)
        if status == SolveStatus.NO_PLAN and summary is not None and summary.proven_infeasible:
            status = SolveStatus.INFEASIBLE  # CBC proved it; PuLP reports "not solved"
        if token.interrupted:
            interrupted = True
        statuses.append(f"{name}:{status.value}" + (f" ({summary.result})" if summary and summary.result else ""))
        if status in (SolveStatus.INFEASIBLE, SolveStatus.NO_PLAN):
            if index == 0:
                proven = summary.lower_bound if summary is not None and status == SolveStatus.NO_PLAN else None
                return BackendSolution(
                    "milp",
                    status,
                    None,
                    (),
                    {},
                    None if proven is None else proven / scale,
                    time.perf_counter() - started,
                    tuple(statuses),
                    interrupted,
                ), False
            overall = SolveStatus.FEASIBLE
            break
        if status != SolveStatus.OPTIMAL:
            overall = SolveStatus.FEASIBLE
        chosen = max(range(len(built.z)), key=lambda i: built.z[i].varValue or 0.0)
        config = data.configs[chosen]
        starts = tuple(int(round(built.start[s].varValue)) for s in range(config.par.pp))
        exact = exact_stage_times(data, config, built.bounds[chosen], starts)
        if exact is None:
            return BackendSolution(
                "milp", SolveStatus.NO_PLAN, None, (), {}, None, time.perf_counter() - started, tuple(statuses)
            ), True
        # every term of the plan so far, recomputed exactly from the configuration and partition
        terms = {t: term_value(data, config, t, *exact) for t in objective_terms(data)[: index + 1]}
        value = max(float(pulp.value(var)), terms[name] * scale)
        if index == 0:
            bound = _dual_bound(built.lp)
            if bound is None and summary is not None:
                bound = summary.lower_bound
            primary_bound = terms[name] if status == SolveStatus.OPTIMAL else (None if bound is None else bound / scale)
        if interrupted:
            break
        # keep this term at its optimum for the next passes; the tolerance absorbs LP round-off
        built.lp += var <= value * (1 + 1e-9) + 1e-12
    return BackendSolution(
        "milp",
        overall,
        chosen,
        starts,
        terms,
        primary_bound,
        time.perf_counter() - started,
        tuple(statuses),
        interrupted,
    ), False


def solve(
    data: FormulationData,
    time_limit_s: float | None = None,
    workers: int = 1,
    seed: int = 0,
    stop: StopToken | None = None,
    work_limit: float | None = None,
) -> BackendSolution:
    """Lexicographic solve: one MILP pass per objective term, each fixing the previous optimum.

    The passes share the deadline of ``stop`` (and ``time_limit_s``); a pass stopped by it keeps
    its incumbent and CBC's proven lower bound (read from its log). ``work_limit`` is not
    supported by CBC and is ignored: MILP tests bound their instances' size instead."""
    del work_limit
    started = time.perf_counter()
    token = StopToken.within(stop, time_limit_s)
    if not data.configs:
        return BackendSolution("milp", SolveStatus.INFEASIBLE, None, (), {}, None, time.perf_counter() - started)
    margin = MARGIN
    for _ in range(3):
        solution, recheck_failed = _solve_once(data, token, workers, seed, margin, started)
        if not recheck_failed:
            return solution
        margin *= 1e3  # the solver's tolerances let through a plan the exact check rejects: tighten
    return solution
