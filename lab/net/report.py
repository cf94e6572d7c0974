"""report.md of a run folder: what ran, what each step and check saw, where the files are.

The "Figures" section lists what lab.viz drew into figures/ (it calls `set_figures`)."""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.runfolder import tap_losses

from .software import label

if TYPE_CHECKING:
    from lab.runfolder import RunResult

    from .scenario import Scenario

FIGURES_START = "<!-- figures -->"
FIGURES_END = "<!-- /figures -->"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(scenario: Scenario, result: RunResult, figures: list[tuple[str, str]] | None = None) -> str:
    when = datetime.datetime.fromtimestamp(result.started).strftime("%Y-%m-%d %H:%M:%S")
    verdict = result.verdict
    steps_ok = sum(s.ok for s in result.steps)
    checks_ok = sum(c.ok for c in result.checks)
    lines = [
        f"# {scenario.name}: {scenario.title}",
        "",
        f"**{verdict}** in {result.duration:g} s ({when}): {steps_ok}/{len(result.steps)} steps as expected, "
        f"{checks_ok}/{len(result.checks)} checks held.",
        "",
    ]
    if scenario.description:
        lines += [scenario.description, ""]
    if result.error:
        lines += ["```", result.error, "```", ""]
    gateways = ", ".join(f"{node} runs {label(sw)}"
                         for node, sw in scenario.gateways.items())
    params = ", ".join(f"{k}={v}" for k, v in scenario.params.items())
    lines += [f"Topology `{scenario.topology_name}`" + (f" ({params})" if params else "") + f"; {gateways}.",
              f"Scenario folder: `{scenario.folder}`; its README explains what to look for.", ""]
    lines += ["## Steps", "", "| # | step | expected | result | what it saw |", "|---|---|---|---|---|"]
    for step in result.steps:
        mark = "skipped" if step.skipped else ("ok" if step.ok else "**FAILED**")
        lines.append(f"| {step.index} | {_cell(step.text)} | {step.expect} | {mark} | {_cell(step.detail)} |")
    if result.checks:
        lines += ["", "## Checks", "", "| # | check | result | what it saw | tries |", "|---|---|---|---|---|"]
        for check in result.checks:
            mark = "ok" if check.ok else "**FAILED**"
            lines.append(f"| {check.index} | {_cell(check.text)} | {mark} | {_cell(check.saw)} | "
                         f"{check.tries} in {check.seconds:g} s |")
    if result.teardown:
        lines += ["", "## Teardown", ""] + [f"- {_cell(p)}" for p in result.teardown]
    lines += ["", "## Files", ""]
    captures = result.files.get("captures", [])
    if captures:
        lines.append("- captures: " + ", ".join(f"[{Path(c).name}]({c})" for c in captures))
    logs = result.files.get("logs", [])
    if logs:
        lines.append("- logs: " + ", ".join(f"[{Path(c).name}]({c})" for c in logs))
    for loss in tap_losses(Path(result.out)):
        lines.append(f"- the tap {loss.tap} missed {loss.dropped} of the {loss.received} packets it saw "
                     f"(tcpdump: dropped by kernel, see logs/tap-{loss.tap}.txt): its capture, and the counts "
                     "and figures drawn from it, lack them")
    lines.append("- [trace.jsonl](trace.jsonl) (our gateways' messages and state changes), "
                 "[topology.json](topology.json), [result.json](result.json)")
    if any("ikev2_decryption_table" in k or "esp_sa" in k for k in result.files.get("keys", [])):
        lines.append(f"- keys/: open a capture decrypted with `XDG_CONFIG_HOME={result.out}/keys wireshark -o "
                     f"esp.enable_encryption_decode:TRUE {result.out}/captures/<tap>.pcap`")
    lines += ["", "## Figures", "", FIGURES_START]
    lines += _figure_lines(figures)
    lines += [FIGURES_END, ""]
    return "\n".join(lines)


def _figure_lines(figures: list[tuple[str, str]] | None) -> list[str]:
    if not figures:
        return ["(none drawn yet: `ipsec-lab figures` draws them from this folder)"]
    out = []
    for path, caption in figures:
        out += [f"### {caption}", "", f"![{caption}]({path})", ""]
    return out


def set_figures(report_path: Path, figures: list[tuple[str, str]]) -> None:
    """Replace the figures section of an existing report.md (paths relative to its folder)."""
    text = report_path.read_text()
    start, end = text.find(FIGURES_START), text.find(FIGURES_END)
    block = "\n".join([FIGURES_START, *_figure_lines(figures), FIGURES_END])
    if start == -1 or end == -1:
        text = text.rstrip("\n") + "\n\n## Figures\n\n" + block + "\n"
    else:
        text = text[:start] + block + text[end + len(FIGURES_END):]
    report_path.write_text(text)
