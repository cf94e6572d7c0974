"""Wireshark key tables: `ikev2_decryption_table` and `esp_sa`, in the column formats that
Wireshark 4.0 reads, kept current as SAs come and go (old entries stay, so older captures
still open)."""
from __future__ import annotations

import os
from pathlib import Path

from lab.ike.const import IntegId
from lab.ike.events import ChildSaUp
from lab.ike.wireshark import ESP_ENCR_NAMES, ESP_INTEG_NAMES, IKE_ENCR_NAMES, IKE_INTEG_NAMES


def ike_table_line(entry: dict) -> str | None:
    algorithms, keys = entry["algorithms"], entry["keys"]
    encr = IKE_ENCR_NAMES.get((algorithms.encr, algorithms.encr_key_length or 0))
    integ = IKE_INTEG_NAMES.get(algorithms.integ or IntegId.NONE)
    if encr is None or integ is None:
        return None
    return ",".join([entry["spi_i"].hex(), entry["spi_r"].hex(), keys.sk_ei.hex(), keys.sk_er.hex(), f'"{encr}"',
                     keys.sk_ai.hex(), keys.sk_ar.hex(), f'"{integ}"'])


def esp_sa_lines(event: ChildSaUp) -> list[str]:
    encr = ESP_ENCR_NAMES.get(event.encr_id) if event.encr_id is not None else None
    integ = ESP_INTEG_NAMES.get(event.integ_id or IntegId.NONE)
    if encr is None or integ is None:
        return []
    family = "IPv6" if ":" in event.local[0] else "IPv4"
    lines = []
    # addresses are wildcards: a NAT box rewrites them, and captures are taken on both sides of it
    for src, dst, spi, keys in (("*", "*", event.spi_out, event.keys_out), ("*", "*", event.spi_in, event.keys_in)):
        lines.append(",".join(f'"{v}"' for v in (family, src, dst, f"0x{spi.hex()}", encr, f"0x{keys.encr.hex()}",
                                                   integ, f"0x{keys.integ.hex()}" if keys.integ else "")))
    return lines


class KeyExport:
    """Writes DIR/ikev2_decryption_table and DIR/esp_sa (and DIR/wireshark/ copies, the
    folder Wireshark reads with XDG_CONFIG_HOME=DIR)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # a restarted daemon (a scenario's restart or load step) keeps the tables it wrote before
        self.ike_lines: list[str] = self._read("ikev2_decryption_table")
        self.esp_lines: list[str] = self._read("esp_sa")

    def _read(self, name: str) -> list[str]:
        try:
            return [line for line in (self.directory / name).read_text().splitlines() if line.strip()]
        except OSError:
            return []

    def update_ike(self, endpoint) -> None:
        """Takes the endpoint's new IKE SA keys (it hands them out once, with settings.export_keys)."""
        entries = endpoint.pop_ike_keys()
        if not entries:
            return
        for entry in entries:
            line = ike_table_line(entry)
            if line is not None and line not in self.ike_lines:
                self.ike_lines.append(line)
        self._write("ikev2_decryption_table", self.ike_lines)

    def add_child(self, event: ChildSaUp) -> None:
        self.esp_lines += [line for line in esp_sa_lines(event) if line not in self.esp_lines]
        self._write("esp_sa", self.esp_lines)

    def _write(self, name: str, lines: list[str]) -> None:
        for folder in (self.directory, self.directory / "wireshark"):
            folder.mkdir(exist_ok=True)
            tmp = folder / f".{name}.tmp"
            tmp.write_text("".join(line + "\n" for line in lines))
            os.replace(tmp, folder / name)
