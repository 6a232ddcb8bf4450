"""``bedrock-chat models``: the model registry as a table."""

from __future__ import annotations

from typing import TextIO

from .._core.models import MODELS
from .shared import EXIT_OK

__all__ = ["run_models"]


def run_models(out: TextIO) -> int:
    """Run ``bedrock-chat models``: print the known models as a table."""
    rows = [("MODEL ID", "NAME", "API", "SURFACES", "MAX OUTPUT", "CONTEXT")]
    for info in MODELS:
        # The surface create() uses by default is marked with a star.
        surfaces = ",".join(
            surface.value + ("*" if surface is info.default_surface and len(info.surfaces) > 1 else "")
            for surface in sorted(info.surfaces, key=lambda surface: surface.value)
        )
        rows.append(
            (info.id, info.name, info.api.value, surfaces, f"{info.max_output_tokens:,}", f"{info.context_window:,}")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.ljust(width) if i < 4 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")
    out.write("\n* the surface used by default where a model has two (force one with --surface).")
    out.write("\nCross-region profile ids (us., eu., apac., global., ...) and ARNs resolve to these models.\n")
    return EXIT_OK
