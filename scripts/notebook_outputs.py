"""Run notebooks top to bottom and store them with their outputs, as the repository keeps them.

    .venv/bin/python scripts/notebook_outputs.py notebooks/06-policies.ipynb [...]   (root: labs run)

Each notebook is executed from the repository's root (nbclient), then cleaned before it is
written back in place: spinner frames, escape codes and "waiting for a lab slot" lines out,
consecutive stream outputs merged, the repository's absolute path made relative, PNG figures
re-encoded with a 256-colour palette when that makes them smaller (flat plots keep their
pixels). A notebook that fails is not written; the error is printed and the exit status is 1.
"""
from __future__ import annotations

import base64
import io
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SPIN = re.compile(r"^\s*[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]")


def small_png(data: str) -> str:
    from PIL import Image
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, "white")
        white.paste(image, mask=image.split()[3])
        image = white
    palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, "PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode() if len(out.getvalue()) * 4 / 3 < len(data) else data


def clean_text(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        plain = ANSI.sub("", line)
        if SPIN.match(plain):
            continue
        if plain.startswith("ipsec-lab: ") and ("labs are running" in plain or "lab slot is free" in plain):
            continue  # waiting for a lab slot: other people's runs on this machine, nothing of the notebook's
        if plain.strip() == "" and line != plain:
            continue
        lines.append(plain.replace(f"{ROOT}/", ""))
    return "\n".join(lines)


def clean(notebook) -> None:
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for output in cell.outputs:
            if output.output_type == "stream":
                output.text = clean_text(output.text)
                if merged and merged[-1].output_type == "stream" and merged[-1].name == output.name:
                    merged[-1].text += output.text
                    continue
            elif output.output_type in ("execute_result", "display_data"):
                if "image/png" in output.get("data", {}):
                    output.data["image/png"] = small_png(output.data["image/png"])
                if "text/plain" in output.get("data", {}):
                    output.data["text/plain"] = output.data["text/plain"].replace(f"{ROOT}/", "")
            merged.append(output)
        for output in merged:
            if output.output_type == "stream":
                output.text = re.sub(r"\n{3,}", "\n\n", output.text)
        cell.outputs = [o for o in merged if not (o.output_type == "stream" and not o.text.strip())]
        cell.metadata.pop("execution", None)
    notebook.metadata.pop("widgets", None)


def main(paths: list[str]) -> int:
    import nbclient
    import nbformat
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    for name in paths:
        path = Path(name).resolve()
        notebook = nbformat.read(str(path), as_version=4)
        started = time.monotonic()
        print(f"{path.name}: running ...", flush=True)
        try:
            nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                    resources={"metadata": {"path": str(ROOT)}}).execute()
        except Exception as err:  # nbclient's CellExecutionError and timeouts: say which and go on
            failed += 1
            print(f"{path.name}: FAILED after {time.monotonic() - started:.0f} s, not written: "
                  f"{type(err).__name__}: {str(err)[-1500:]}", flush=True)
            continue
        clean(notebook)
        nbformat.write(notebook, str(path))
        print(f"{path.name}: written with its outputs ({time.monotonic() - started:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
