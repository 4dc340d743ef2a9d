"""Launch configurations for serving engines from a plan: vLLM, SGLang, TensorRT-LLM, Megatron-Core.

Each engine module maps the plan's degrees onto that engine's arguments (each flag with the place
its name was checked), writes the files the engine loads, and warns about every part of the plan
the engine cannot express.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from placer.export.common import EngineExport, ExportInput, write_export

ENGINES = ("vllm", "sglang", "trtllm", "megatron")

__all__ = ["ENGINES", "EngineExport", "ExportInput", "build_export", "write_export", "export_plan"]


def _builder(engine: str) -> Callable[[ExportInput], EngineExport]:
    if engine == "vllm":
        from placer.export.vllm import export
    elif engine == "sglang":
        from placer.export.sglang import export
    elif engine == "trtllm":
        from placer.export.trtllm import export
    elif engine == "megatron":
        from placer.export.megatron import export
    else:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    return export


def build_export(engine: str, data: ExportInput) -> EngineExport:
    return _builder(engine)(data)


def export_plan(engine: str, data: ExportInput, out_dir: str | Path | None = None) -> tuple[EngineExport, list[Path]]:
    """Build the engine's launch for the plan and, with ``out_dir``, write its files."""
    result = build_export(engine, data)
    paths = write_export(result, data, out_dir) if out_dir is not None else []
    return result, paths
