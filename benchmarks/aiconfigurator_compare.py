"""placer's serving figures beside NVIDIA aiconfigurator's, for the same settings.

    python benchmarks/aiconfigurator_compare.py [--venv DIR] [--out results/serving]

aiconfigurator (``pip install aiconfigurator``, pinned below) is installed into its own virtual
environment, never into placer's: it is a peer to compare with, not a dependency. For each setting
of issue 11 it runs ``aiconfigurator cli default --serving-mode agg`` (aggregated serving, the
same kind of deployment placer plans) and reads its best configuration from
``best_config_topn.csv``. placer then evaluates a plan with the same degrees and the same
concurrency on its own serving instance (``instances/*-serving.json``), with its own cost model,
so the two columns compare the two performance models at one configuration. Writes
``aiconfigurator.md`` and ``aiconfigurator.json`` to ``--out``.

aiconfigurator models TensorRT-LLM from measured kernel tables (its "silicon" database) where
placer uses a roofline with named efficiency factors: differences are expected, and the Markdown
says where they come from.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AICONFIGURATOR = "aiconfigurator==0.12.0"


@dataclass(frozen=True)
class Setting:
    """One of issue 11's questions: a model on a number of GPUs with per-request SLOs."""

    name: str
    instance: str  # placer's instance of the same setting
    model_path: str  # aiconfigurator's model id (its bundled configs) or a folder with config.json
    system: str
    gpus: int
    isl: int
    osl: int
    ttft_ms: float
    tpot_ms: float


SETTINGS = (
    Setting("DeepSeek-V3, 16 x H200", "instances/deepseek-v3-h200-serving.json", "deepseek-ai/DeepSeek-V3",
            "h200_sxm", 16, 4000, 500, 2000, 50),
    Setting("Qwen3-235B-A22B, 8 x H200", "instances/qwen3-235b-h200-serving.json", "Qwen/Qwen3-235B-A22B",
            "h200_sxm", 8, 4000, 500, 2000, 50),
    Setting("Mixtral-8x7B, 8 x H100", "instances/mixtral-8x7b-h100-serving.json",
            str(ROOT / "tests/data/hf/mixtral-8x7b"), "h100_sxm", 8, 4000, 500, 2000, 40),
)  # fmt: skip


def ensure_venv(venv: Path) -> Path:
    """aiconfigurator's own environment (created once); returns its ``aiconfigurator`` command."""
    command = venv / "bin" / "aiconfigurator"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", AICONFIGURATOR], check=True)
    return command


def run_aiconfigurator(command: Path, setting: Setting, workdir: Path) -> dict[str, str]:
    """The best aggregated configuration aiconfigurator finds for ``setting`` (its CSV row)."""
    save = workdir / setting.system / str(setting.gpus)
    args = [
        str(command), "cli", "default", "--model-path", setting.model_path, "--total-gpus", str(setting.gpus),
        "--system", setting.system, "--isl", str(setting.isl), "--osl", str(setting.osl),
        "--ttft", str(setting.ttft_ms), "--tpot", str(setting.tpot_ms), "--serving-mode", "agg",
        "--save-dir", str(save), "--no-color",
    ]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    table = next(save.rglob("agg/best_config_topn.csv"))
    with table.open() as handle:
        return next(csv.DictReader(handle))


def placer_at(setting: Setting, row: dict[str, str]) -> dict[str, object]:
    """placer's figures for aiconfigurator's configuration: same degrees, same concurrency."""
    from placer.api import load_problem
    from placer.schema import Parallelism
    from placer.serving import evaluate_serving
    from placer.simulate import simulate
    from placer.strategy import plan_from_starts

    problem = load_problem(ROOT / setting.instance)
    tp, dp, moe_tp, ep = (int(row[k]) for k in ("tp", "dp", "moe_tp", "moe_ep"))
    replicas = int(row["replicas"])
    par = Parallelism(pp=int(row["pp"]), tp=tp, dp_attn=dp, ep=ep, tp_moe=moe_tp, replicas=replicas)
    # aiconfigurator's CSV row is per replica (concurrency, GPUs): the deployment holds replicas of it
    total = int(row["concurrency"]) * replicas
    workload = problem.workload.model_copy(update={"kind": "concurrency", "concurrency": total})
    problem = problem.replace(workload=workload)
    plan = plan_from_starts(problem, par, (0,), "aiconfigurator")
    evaluation = evaluate_serving(problem, plan)
    point = evaluation.serving
    simulated = simulate(problem, plan, requests=2000, seed=0)
    return {
        "parallelism": par.model_dump(),
        "ttft_ms": point.ttft_s * 1e3,
        "tpot_ms": point.tpot_s * 1e3,
        "output_tokens_per_s_per_gpu": point.output_tokens_per_s_per_gpu,
        "feasible": evaluation.feasible,
        "simulated": {
            "ttft_ms": simulated.run.ttft.mean * 1e3,
            "ttft_p99_ms": simulated.run.ttft.p99 * 1e3,
            "tpot_ms": simulated.run.tpot.mean * 1e3,
            "output_tokens_per_s_per_gpu": simulated.output_tokens_per_s_per_gpu,
        },
    }


def placer_optimum(setting: Setting) -> dict[str, object]:
    """placer's own answer to the setting: most output tokens/s per GPU under its TTFT and TPOT
    bounds, concurrency chosen by the solver (what aiconfigurator searches for), proven."""
    from placer.api import load_problem
    from placer.frontier import point_from, tpot_problem
    from placer.solve import solve

    problem = tpot_problem(load_problem(ROOT / setting.instance), setting.tpot_ms)
    return point_from("tpot_ms", setting.tpot_ms, solve(problem, time_limit_s=None)).to_dict()


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "# placer beside aiconfigurator (aggregated serving, same configuration and concurrency)",
        "",
        f"aiconfigurator {AICONFIGURATOR.split('==')[1]} (`--serving-mode agg`, TensorRT-LLM, its default database); "
        "placer evaluates the configuration aiconfigurator chose, at the same total concurrency, with its own cost "
        "model. Regenerate with `python benchmarks/aiconfigurator_compare.py`.",
        "",
        "Columns: aiconfigurator / placer's analytic model (`placer evaluate`) / placer's simulation "
        "(`placer simulate`, 2,000 requests, seed 0).",
        "",
        "| setting | configuration (aiconfigurator) | concurrency | TTFT ms | TPOT ms | output tok/s/GPU |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        aic, ours = row["aiconfigurator"], row["placer"]
        sim = ours["simulated"]
        total = int(aic["concurrency"]) * int(aic["replicas"])
        lines.append(
            f"| {row['setting']} | {aic['parallel']} x{aic['replicas']} | {total} "
            f"| {float(aic['ttft']):,.0f} / {ours['ttft_ms']:,.0f} / {sim['ttft_ms']:,.0f} "
            f"| {float(aic['tpot']):.1f} / {ours['tpot_ms']:.1f} / {sim['tpot_ms']:.1f} "
            f"| {float(aic['tokens/s/gpu']):,.0f} / {ours['output_tokens_per_s_per_gpu']:,.0f} "
            f"/ {sim['output_tokens_per_s_per_gpu']:,.0f} |"
        )
    lines += [
        "",
        "## Each tool's own optimum for the setting",
        "",
        "aiconfigurator: its top aggregated configuration (it uses every GPU of the budget). placer: `placer solve` "
        "with the most output tokens/s per GPU under the same TTFT and TPOT bounds and the concurrency chosen by "
        "the solver (it may use fewer GPUs than the budget when that gives more per GPU), proven optimal.",
        "",
        "| setting | tool | configuration | GPUs | concurrency | TTFT ms | TPOT ms | output tok/s/GPU | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        aic, best = row["aiconfigurator"], row["placer_optimum"]
        total = int(aic["concurrency"]) * int(aic["replicas"])
        lines.append(
            f"| {row['setting']} | aiconfigurator | {aic['parallel']} x{aic['replicas']} | "
            f"{int(aic['num_total_gpus']) * int(aic['replicas'])} | {total} | {float(aic['ttft']):,.0f} | "
            f"{float(aic['tpot']):.1f} | {float(aic['tokens/s/gpu']):,.0f} | (its search) |"
        )
        if best.get("gpus") is None:
            lines.append(f"| {row['setting']} | placer | no plan: {best.get('reason')} | | | | | | {best['status']} |")
            continue
        lines.append(
            f"| {row['setting']} | placer | {best['degrees']} | {best['gpus']} | {best['concurrency']:,.0f} | "
            f"{best['ttft_s'] * 1e3:,.0f} | {best['tpot_ms']:.1f} | {best['tokens_per_s_per_gpu']:,.0f} | "
            f"{best['status']} |"
        )
    lines += [
        "",
        "## Where they differ, and why",
        "",
        "- **Same configuration, same load, two performance models** (first table). The concurrency is "
        "aiconfigurator's choice (the largest meeting its TTFT bound). The second table compares the optimisers, "
        "each on its own performance model: placer's larger throughput per GPU there follows from its shorter "
        "decode step below, not from a better search alone.",
        "- **Decode step (TPOT, throughput).** Where the decode batch per GPU is small (DeepSeek-V3 and Qwen3 with "
        "attention DP over every GPU), placer's step is shorter than aiconfigurator's: placer prices expert-weight "
        "and KV reads with a roofline and the hardware profile's HBM utilisation, and the all-to-all with its "
        "alpha-beta model; aiconfigurator interpolates measured TensorRT-LLM kernels (for DeepSeek-V3 it reports "
        "using single-node EP8 all-to-all data in place of EP16 over two nodes). Where the batch is large "
        "(Mixtral, 48 requests per GPU) the two agree to within a few percent. No H200 serving measurement is in "
        "placer's fidelity data to say which is closer on the first two.",
        "- **TTFT.** Both placer columns admit a prompt into the next step's prefill budget (8,192 tokens per "
        "attention-DP rank) and agree with each other (fixed prompt and output lengths keep the closed loop's "
        "requests in phase, so prompts share prefill steps: section 11, Q6b). aiconfigurator's aggregated-serving "
        "TTFT is about 2x placer's: its model charges a new request for the in-flight decode steps it waits "
        "behind, where placer charges prefill and decode as one additive step. Neither side has been checked "
        "against a measured TTFT at this load.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "placer" / "aiconfigurator-venv")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "serving")
    options = parser.parse_args()
    command = ensure_venv(options.venv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for setting in SETTINGS:
            row = run_aiconfigurator(command, setting, Path(workdir))
            row["replicas"] = str(max(1, setting.gpus // int(row["num_total_gpus"])))
            rows.append(
                {
                    "setting": setting.name,
                    "aiconfigurator": row,
                    "placer": placer_at(setting, row),
                    "placer_optimum": placer_optimum(setting),
                }
            )
            print(f"{setting.name}: done", flush=True)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "aiconfigurator.json").write_text(json.dumps(rows, indent=2) + "\n")
    (options.out / "aiconfigurator.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
