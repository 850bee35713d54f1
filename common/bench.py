"""What the throughput benchmarks in scripts/ share (they are scripts, not timed tests): the markdown table of
a method's cost per env step against its baseline, and printing a table while appending it to a results file."""

from __future__ import annotations

import platform


def cost_table(title: str, first_col: str, rates: dict[str, float]) -> str:
    """A markdown section '### <title>, <machine> (torch <version>)' with one row per run: env steps/s and the cost
    per env step relative to the first run (the baseline: 1.00x)."""
    import torch

    base = next(iter(rates.values()))
    lines = [f"### {title}, {platform.machine()} (torch {torch.__version__})", "",
             f"| {first_col} | steps/s | cost vs baseline |", "|---|---:|---:|"]
    lines += [f"| {name} | {r:,.0f} | {base / r:.2f}x |" for name, r in rates.items()]
    return "\n".join(lines) + "\n"


def publish(text: str, out: str | None) -> None:
    """Print `text`; also append it, after a blank line, to the markdown file `out` if given."""
    print(text)
    if out:
        with open(out, "a") as f:
            f.write("\n" + text)


def device_label(device: str) -> str:
    """The device part of a table title: '' on the CPU (the recorded tables' titles stay as they were);
    ', device cuda (<GPU name>)' elsewhere, so that CPU and GPU figures are never read as one table. Resolving the
    device here also makes an unusable one fail before any run starts."""
    import torch

    from common.io import resolve_device

    d = resolve_device(device)
    if d.type == "cpu":
        return ""
    return f", device {d} ({torch.cuda.get_device_name(d) if d.type == 'cuda' else d.type})"
