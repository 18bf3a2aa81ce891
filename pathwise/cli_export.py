"""``pathwise export RUN --format onnx|npz|safetensors --out FILE``: a trained policy as a file that runs without
pathwise (``pathwise.export``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import tyro


@dataclasses.dataclass(frozen=True)
class ExportArgs:
    """Write a run's deterministic policy (what agent.predict returns) to a file that runs without pathwise."""

    run: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="RUN")]
    """Run directory written by `pathwise train` (or an agent .npz file saved with agent.save())."""
    out: str
    """File to write (.onnx, .npz or .safetensors)."""
    format: Literal["onnx", "npz", "safetensors"] | None = None
    """onnx (run it with onnxruntime), npz or safetensors (parameters by name plus a JSON record; run them with
    pathwise/policy_file.py and NumPy). Default: from the suffix of --out."""
    checkpoint: Literal["best", "last"] = "best"
    """Which checkpoint of a run directory to export."""


def main(argv: list[str]) -> int:
    from pathwise import export
    from pathwise.checkpoint import check_writable

    args = tyro.cli(ExportArgs, args=argv, prog="pathwise export")
    fmt = args.format
    if fmt is None:
        fmt = next((f for f, s in export.SUFFIXES.items() if Path(args.out).suffix == s), None)
        if fmt is None:
            raise ValueError(f"--out {args.out}: cannot tell the format from the suffix; pass --format onnx, npz or "
                             "safetensors, or name the file .onnx, .npz or .safetensors.")
    check_writable(args.out, "--out")
    if fmt in ("onnx", "safetensors"):  # refuse a missing extra before loading the run
        export.require(fmt)
    agent = _open(Path(args.run), args.checkpoint)
    written = export.export(agent.run, args.out, fmt)
    print(f"{agent.run.name} on {agent.env_id}: policy written to {written} ({fmt}, {written.stat().st_size:,} bytes)")
    return 0


def _open(path: Path, which: str):
    from pathwise.agent import Agent, load
    from pathwise.train import open_run

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass a run directory written by `pathwise train` (its --out) "
                                "or an agent .npz file saved with agent.save().")
    if path.is_dir():
        if not (path / "checkpoints" / f"{which}.npz").is_file() and (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no checkpoints/{which}.npz; is it a finished `pathwise train` run? "
                                    "(--checkpoint last exports the latest one).")
        return Agent(open_run(path, which=which, quiet=True))
    return load(path, quiet=True)


__all__ = ["ExportArgs", "main"]
