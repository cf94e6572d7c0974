"""Reading Wireshark's key tables (`ikev2_decryption_table`, `esp_sa`) back into keys that
lab.ike and lab.esp can decrypt with. Bad lines are reported as `file:line: reason` and
skipped; a missing folder or file is a note, not an error."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from lab.esp import InboundSA, Mode
from lab.ike.const import IntegId
from lab.ike.crypto import SkCipher
from lab.ike.errors import CryptoError
from lab.ike.protect import DirectionKeys
from lab.ike.wireshark import ESP_ENCR_NAMES, ESP_INTEG_NAMES, IKE_ENCR_NAMES, IKE_INTEG_NAMES

IKE_TABLE, ESP_TABLE = "ikev2_decryption_table", "esp_sa"
_IKE_ENCR = {name: key for key, name in IKE_ENCR_NAMES.items()}
_IKE_INTEG = {name: key for key, name in IKE_INTEG_NAMES.items()}
_ESP_ENCR = {name: key for key, name in ESP_ENCR_NAMES.items()}
_ESP_INTEG = {name: key for key, name in ESP_INTEG_NAMES.items()}


@dataclass(frozen=True)
class IkeKeyRow:
    """One line of ikev2_decryption_table: the SK_e/SK_a keys of one IKE SA."""

    spi_i: bytes
    spi_r: bytes
    encr_id: int
    key_length: int
    integ_id: int
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    where: str = ""

    def cipher(self) -> SkCipher:
        return SkCipher(self.encr_id, self.key_length, self.integ_id)

    def direction(self, from_initiator: bool) -> DirectionKeys:
        """RFC 7296 §2.14: SK_ei/SK_ai protect what the original initiator sends."""
        return DirectionKeys(self.sk_ei, self.sk_ai) if from_initiator else DirectionKeys(self.sk_er, self.sk_ar)


@dataclass(frozen=True)
class EspSaKeys:
    """One line of esp_sa: the keys of one ESP SA (one direction)."""

    spi: int
    family: str
    src: str
    dst: str
    encr_id: int
    integ_id: int
    encr_key: bytes = field(repr=False)
    integ_key: bytes = field(repr=False)
    where: str = ""

    def matches(self, src: str, dst: str) -> bool:
        return self.src in ("*", src) and self.dst in ("*", dst)

    def inbound_sa(self) -> InboundSA:
        """An SA that opens this SPI's packets (`open_payload`: the mode is read from the
        next header); anti-replay off, a capture may repeat packets."""
        return InboundSA(self.spi, mode=Mode.TRANSPORT, encr_id=self.encr_id, encr_key=self.encr_key, integ_id=self.integ_id,
                         integ_key=self.integ_key, replay_window=0)


@dataclass
class KeyTables:
    ike: dict[tuple[bytes, bytes], IkeKeyRow] = field(default_factory=dict)
    # RFC 9370 §2.2.2: an IKE SA with IKE_INTERMEDIATE key exchanges has one key set per exchange, in order
    # (Wireshark uses the last line of an SPI pair; the analysis tries each and takes the one whose ICV verifies)
    ike_generations: dict[tuple[bytes, bytes], list[IkeKeyRow]] = field(default_factory=dict)
    esp: dict[int, list[EspSaKeys]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    folder: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.ike or self.esp)

    def ike_sa(self, spi_i: bytes, spi_r: bytes) -> IkeKeyRow | None:
        return self.ike.get((spi_i, spi_r))

    def ike_sa_generations(self, spi_i: bytes, spi_r: bytes) -> list[IkeKeyRow]:
        """Every key set of an IKE SA, oldest first (one unless IKE_INTERMEDIATE updated them)."""
        found = self.ike_generations.get((spi_i, spi_r))
        if found:
            return found
        last = self.ike.get((spi_i, spi_r))
        return [last] if last is not None else []

    def add_ike(self, keys: IkeKeyRow) -> None:
        self.ike[(keys.spi_i, keys.spi_r)] = keys
        rows = self.ike_generations.setdefault((keys.spi_i, keys.spi_r), [])
        if keys not in rows:
            rows.append(keys)

    def esp_sa(self, spi: int, src: str, dst: str) -> EspSaKeys | None:
        return next((k for k in self.esp.get(spi, ()) if k.matches(src, dst)), None)


def _hex(text: str, what: str) -> bytes:
    text = text.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} is not hex: {text[:20]!r}") from None


def _rows(path: Path):
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            yield number, [cell.strip() for cell in row]


def _ike_line(row: list[str], where: str) -> IkeKeyRow:
    if len(row) < 8:
        raise ValueError(f"{len(row)} columns, ikev2_decryption_table has 8")
    spi_i, spi_r = _hex(row[0], "SPIi"), _hex(row[1], "SPIr")
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise ValueError("SPIs are 16 hex digits")
    if row[4] not in _IKE_ENCR:
        raise ValueError(f"encryption {row[4]!r} is not one lab.ike decrypts")
    if row[7] not in _IKE_INTEG:
        raise ValueError(f"integrity {row[7]!r} is not one lab.ike checks")
    encr_id, key_length = _IKE_ENCR[row[4]]
    keys = IkeKeyRow(spi_i, spi_r, int(encr_id), key_length, int(_IKE_INTEG[row[7]]), _hex(row[2], "SK_ei"),
                     _hex(row[3], "SK_er"), _hex(row[5], "SK_ai"), _hex(row[6], "SK_ar"), where)
    try:
        cipher = keys.cipher()
        if len(keys.sk_ei) != cipher.encr_key_size or len(keys.sk_er) != cipher.encr_key_size:
            raise ValueError(f"SK_e keys must be {cipher.encr_key_size} octets for {row[4]}")
        if len(keys.sk_ai) != cipher.integ_key_size or len(keys.sk_ar) != cipher.integ_key_size:
            raise ValueError(f"SK_a keys must be {cipher.integ_key_size} octets for {row[7]}")
    except CryptoError as err:
        raise ValueError(str(err)) from None
    return keys


def _esp_line(row: list[str], where: str) -> EspSaKeys:
    if len(row) < 8:
        raise ValueError(f"{len(row)} columns, esp_sa has at least 8")
    family, src, dst = row[0], row[1], row[2]
    spi_text = row[3][2:] if row[3].lower().startswith("0x") else row[3]
    try:
        spi = int(spi_text, 16)
    except ValueError:
        raise ValueError(f"SPI {row[3]!r} is not hex") from None
    if row[4] not in _ESP_ENCR:
        raise ValueError(f"encryption {row[4]!r} is not one lab.esp decrypts")
    if row[6] not in _ESP_INTEG:
        raise ValueError(f"integrity {row[6]!r} is not one lab.esp checks")
    keys = EspSaKeys(spi, family, src, dst, int(_ESP_ENCR[row[4]]), int(_ESP_INTEG[row[6]]),
                     _hex(row[5], "encryption key"), _hex(row[7], "authentication key") if row[7] else b"", where)
    try:
        keys.inbound_sa()
    except Exception as err:  # EspConfigError and key-size errors from lab.esp
        raise ValueError(f"lab.esp refuses these keys: {err}") from None
    return keys


def load_keys(folder: str | Path | None) -> KeyTables:
    """The key tables in `folder` (or its wireshark/ subfolder, as XDG_CONFIG_HOME uses)."""
    tables = KeyTables()
    if folder is None:
        return tables
    folder = Path(folder)
    tables.folder = folder
    if not folder.is_dir():
        tables.problems.append(f"{folder}: no such folder (no keys: SK payloads and ESP stay encrypted)")
        return tables
    for name, parse in ((IKE_TABLE, _ike_line), (ESP_TABLE, _esp_line)):
        path = next((p for p in (folder / name, folder / "wireshark" / name) if p.is_file()), None)
        if path is None:
            tables.problems.append(f"{folder}: no {name}")
            continue
        for number, row in _rows(path):
            where = f"{path}:{number}"
            try:
                keys = parse(row, where)
            except ValueError as err:
                tables.problems.append(f"{where}: {err}")
                continue
            if isinstance(keys, IkeKeyRow):
                tables.add_ike(keys)
            else:
                tables.esp.setdefault(keys.spi, []).append(keys)
    return tables





# ---------------------------------------------------------------- keys known in memory, and writing the tables


def keys_from_memory(endpoints, child_events=()) -> KeyTables:
    """Key tables of IKE endpoints stepped in memory (lab.ike.memnet): their IKE SA key log
    and the ChildSaUp events they handed out."""
    from lab.ike.events import ChildSaUp

    tables = KeyTables()
    for endpoint in endpoints:
        for entry in endpoint.ike_key_log:
            algorithms, keys = entry["algorithms"], entry["keys"]
            tables.add_ike(IkeKeyRow(
                entry["spi_i"], entry["spi_r"], int(algorithms.encr), algorithms.encr_key_length or 0,
                int(algorithms.integ or IntegId.NONE), keys.sk_ei, keys.sk_er, keys.sk_ai, keys.sk_ar, "memory"))
    for event in child_events:
        if not isinstance(event, ChildSaUp) or event.encr_id is None:
            continue
        for spi, keys in ((event.spi_out, event.keys_out), (event.spi_in, event.keys_in)):
            entry = EspSaKeys(int.from_bytes(spi, "big"), "IPv6" if ":" in event.local[0] else "IPv4", "*", "*",
                              int(event.encr_id), int(event.integ_id or IntegId.NONE), keys.encr, keys.integ or b"",
                              "memory")
            if entry not in tables.esp.get(entry.spi, []):
                tables.esp.setdefault(entry.spi, []).append(entry)
    return tables


def write_key_tables(tables: KeyTables, folder: str | Path) -> Path:
    """Write `ikev2_decryption_table` and `esp_sa` (and the wireshark/ copies) so that
    `XDG_CONFIG_HOME=folder wireshark` opens a capture decrypted."""
    folder = Path(folder)
    ike_lines, esp_lines = [], []
    for keys in [k for rows in tables.ike_generations.values() for k in rows] or tables.ike.values():
        encr = IKE_ENCR_NAMES.get((keys.encr_id, keys.key_length))
        integ = IKE_INTEG_NAMES.get(keys.integ_id)
        if encr and integ:
            ike_lines.append(",".join([keys.spi_i.hex(), keys.spi_r.hex(), keys.sk_ei.hex(), keys.sk_er.hex(),
                                       f'"{encr}"', keys.sk_ai.hex(), keys.sk_ar.hex(), f'"{integ}"']))
    for entries in tables.esp.values():
        for sa in entries:
            encr, integ = ESP_ENCR_NAMES.get(sa.encr_id), ESP_INTEG_NAMES.get(sa.integ_id)
            if encr and integ:
                esp_lines.append(",".join(f'"{v}"' for v in (
                    sa.family, sa.src, sa.dst, f"0x{sa.spi:08x}", encr, f"0x{sa.encr_key.hex()}", integ,
                    f"0x{sa.integ_key.hex()}" if sa.integ_key else "")))
    for where in (folder, folder / "wireshark"):
        where.mkdir(parents=True, exist_ok=True)
        (where / IKE_TABLE).write_text("".join(line + "\n" for line in ike_lines))
        (where / ESP_TABLE).write_text("".join(line + "\n" for line in esp_lines))
    return folder
__all__ = ["EspSaKeys", "IkeKeyRow", "KeyTables", "keys_from_memory", "load_keys", "write_key_tables"]
