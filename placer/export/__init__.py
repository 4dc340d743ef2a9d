"""Launch configurations for serving engines from a plan: vLLM, SGLang, TensorRT-LLM, Megatron-Core.

Each engine module maps the plan's degrees onto that engine's arguments (each flag with the place
its name was checked), writes the files the engine loads, and warns about every part of the plan
the engine cannot express. A disaggregated plan (``placer.plan/2``) goes through
:class:`DisaggInput` to each engine's ``*_disagg`` module: prefill and decode instances with a
line per node, and the router in front of them (:mod:`placer.export.disagg`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import overload

from placer.errors import InputError
from placer.export.common import EngineExport, ExportInput, write_export
from placer.export.disagg import DisaggExport, DisaggInput, write_disagg_export

ENGINES = ("vllm", "sglang", "trtllm", "megatron")

__all__ = [
    "ENGINES",
    "DisaggExport",
    "DisaggInput",
    "EngineExport",
    "ExportInput",
    "build_export",
    "write_export",
    "export_plan",
]

#: why a disaggregated plan has no Megatron-Core export
MEGATRON_DISAGG = (
    "megatron: Megatron-Core is a training framework; it has no serving mode that runs prefill and decode as two "
    "pools and sends the KV cache between them, so a disaggregated plan cannot be written for it (export it for "
    "sglang, vllm or trtllm)"
)


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


def _disagg_builder(engine: str) -> Callable[[DisaggInput], DisaggExport]:
    if engine == "vllm":
        from placer.export.vllm_disagg import export_disaggregated
    elif engine == "sglang":
        from placer.export.sglang_disagg import export_disaggregated
    elif engine == "trtllm":
        from placer.export.trtllm_disagg import export_disaggregated
    elif engine == "megatron":
        raise InputError.single("--engine", MEGATRON_DISAGG)
    else:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    return export_disaggregated


@overload
def build_export(engine: str, data: ExportInput) -> EngineExport: ...
@overload
def build_export(engine: str, data: DisaggInput) -> DisaggExport: ...
def build_export(engine: str, data: ExportInput | DisaggInput) -> EngineExport | DisaggExport:
    """The engine's launch for an aggregated plan, or for a disaggregated one (pools and router)."""
    if isinstance(data, DisaggInput):
        return _disagg_builder(engine)(data)
    return _builder(engine)(data)


def export_plan(
    engine: str, data: ExportInput | DisaggInput, out_dir: str | Path | None = None
) -> tuple[EngineExport | DisaggExport, list[Path]]:
    """Build the engine's launch for the plan and, with ``out_dir``, write its files."""
    if isinstance(data, DisaggInput):
        disagg = _disagg_builder(engine)(data)
        return disagg, write_disagg_export(disagg, data, out_dir) if out_dir is not None else []
    result = _builder(engine)(data)
    paths = write_export(result, data, out_dir) if out_dir is not None else []
    return result, paths
