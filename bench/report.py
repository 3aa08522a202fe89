"""Figures side by side with their baselines: a table on the console and a JSON file."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Figure:
    """One figure of Mailroom next to a baseline measured in the same run.

    ``None`` stands for a figure that could not be taken (the run failed); the notes say why.
    """

    what: str
    baseline_what: str
    unit: str
    mailroom: float | None
    baseline: float | None

    @property
    def ratio(self) -> float | None:
        return self.mailroom / self.baseline if self.mailroom and self.baseline else None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio}


@dataclass
class Results:
    machine: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    stage_memory: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "figures": [f.as_json() for f in self.figures],
            "stage_memory": [f.as_json() for f in self.stage_memory],
            "notes": self.notes,
            "details": self.details,
        }


def machine(mails: int) -> dict[str, Any]:
    """What the figures depend on besides the code: cores, CPU, Python, and the load."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "mails": mails,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def render(results: Results, console: Console) -> None:
    m = results.machine
    console.print(
        f"[bold]Mailroom bench[/bold]: {m['mails']} mails; {m['nproc']} cores ({m['cpu']}); "
        f"Python {m['python']}; {m['system']}"
    )
    console.print(_table("Speed and size", results.figures))
    console.print(_table("Peak memory per stage (scaled mode, VmHWM)", results.stage_memory))
    for note in results.notes:
        console.print(f"- {note}", highlight=False)


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.as_json(), indent=2) + "\n")


def _table(title: str, figures: list[Figure]) -> Table:
    """One row per figure; a baseline shared by every row is said once, under the table."""
    shared = {f.baseline_what for f in figures}
    caption = f"baseline: {shared.pop()}" if len(shared) == 1 and len(figures) > 1 else None
    # min_width: a caption is wrapped to the table's width, and these are long.
    table = Table(title=title, caption=caption, min_width=64)
    table.title_justify = table.caption_justify = "left"
    table.add_column("what")
    for name in ("mailroom", "baseline", "ratio"):
        table.add_column(name, justify="right")
    for f in figures:
        what = f.what if caption else f"{f.what}\n[dim]baseline: {f.baseline_what}[/dim]"
        table.add_row(what, _value(f.mailroom, f.unit), _value(f.baseline, f.unit), _ratio(f))
    return table


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value:,.0f} B" if value < 2**20 else f"{value / 2**20:,.2f} MiB"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def _ratio(figure: Figure) -> str:
    ratio = figure.ratio
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" if ratio >= 0.01 else f"1/{1 / ratio:,.0f}"


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"
