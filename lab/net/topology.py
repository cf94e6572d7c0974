"""Topologies: Mininet `Topo` classes with the lab's node kinds, addresses and knobs.

A topology file in topologies/ defines `LabTopo` subclasses and a `topos` dict, so that it
serves both the lab (`topology: site-to-site` in a scenario.yaml) and Mininet itself:

    sudo mn --custom topologies/site_to_site.py --topo site-to-site,nat=both --controller none

A LabTopo declares its parameters (`params`, each a Param with a default, a help line and the
values it takes); `LabTopo(**values)` checks them and raises TopologyError naming the one that
is wrong. Needs only Mininet and the standard library.
"""
from __future__ import annotations

import importlib.util
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mininet.topo import Topo

from .nodes import KINDS, NAT_DEFAULTS, NatBox

TOPOLOGY_DIR = Path(__file__).resolve().parents[2] / "topologies"
IFNAMSIZ = 15  # Linux interface names are at most 15 characters
MAX_NODE_NAME = 10


class TopologyError(ValueError):
    """A topology or one of its parameters is wrong; the message names which."""


@dataclass(frozen=True)
class Param:
    default: Any
    help: str
    choices: tuple | None = None
    minimum: int | None = None
    maximum: int | None = None

    def check(self, name: str, value: Any) -> Any:
        if self.choices is not None:
            if value not in self.choices:
                raise TopologyError(f"{name}: must be one of {', '.join(map(str, self.choices))}, not {value!r}")
            return value
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise TopologyError(f"{name}: must be true or false, not {value!r}")
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TopologyError(f"{name}: must be a whole number, not {value!r}")
            if self.minimum is not None and value < self.minimum:
                raise TopologyError(f"{name}: must be at least {self.minimum}, not {value}")
            if self.maximum is not None and value > self.maximum:
                raise TopologyError(f"{name}: must be at most {self.maximum}, not {value}")
            return value
        if kind is str and not isinstance(value, str):
            raise TopologyError(f"{name}: must be text, not {value!r}")
        return value


class LabTopo(Topo):
    """A topology of the lab. Subclasses set `name`, `description`, `params` and write
    `build(**params)` with node(), link(), route() and nat()."""

    name = ""
    description = ""
    params: dict[str, Param] = {}

    def __init__(self, *args: Any, **values: Any) -> None:
        if args:
            raise TopologyError(f"topology {self.name}: give parameters by name (e.g. nat=one)")
        self.values = self.check_params(values)
        super().__init__(**self.values)

    @classmethod
    def check_params(cls, values: dict[str, Any]) -> dict[str, Any]:
        checked = {}
        for key, value in values.items():
            if key not in cls.params:
                known = ", ".join(cls.params) or "none"
                raise TopologyError(f"{key}: topology {cls.name} has no parameter {key!r} (it has: {known})")
            checked[key] = cls.params[key].check(key, value)
        for key, param in cls.params.items():
            checked.setdefault(key, param.default)
        return checked

    # ------------------------------------------------------------ building blocks

    def node(self, name: str, kind: str, **opts: Any) -> str:
        if kind not in KINDS:
            raise TopologyError(f"node {name}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if not name.isidentifier() or len(name) > MAX_NODE_NAME:
            raise TopologyError(f"node name {name!r}: letters, digits and _ only, at most {MAX_NODE_NAME} long")
        if kind != "switch" and self.values.get("ipv6"):
            opts.setdefault("ipv6", True)  # a topology with an `ipv6` parameter, set: IPv6 on its nodes
        return self.addHost(name, cls=KINDS[kind], ip=None, kind=kind, intfs={}, routes=[], **opts)

    def link(self, a: str, a_intf: str, a_addr: str | None, b: str, b_intf: str, b_addr: str | None,
             mtu: int | None = None) -> None:
        for node, intf, address in ((a, a_intf, a_addr), (b, b_intf, b_addr)):
            if len(intf) > IFNAMSIZ:
                raise TopologyError(f"interface name {intf!r} is longer than {IFNAMSIZ} characters")
            if address is not None:
                ipaddress.ip_interface(address)
            spec = self.nodeInfo(node)["intfs"].setdefault(intf, {"addrs": []})
            if address:
                spec["addrs"].append(address)
            if mtu:
                spec["mtu"] = mtu
        self.addLink(a, b, intfName1=a_intf, intfName2=b_intf, mtu=mtu)

    def address(self, node: str, intf: str, address: str) -> None:
        """One more address on an interface link() made (an IPv6 one beside the IPv4 one)."""
        ipaddress.ip_interface(address)
        self.nodeInfo(node)["intfs"].setdefault(intf, {"addrs": []})["addrs"].append(address)

    def route(self, node: str, prefix: str, via: str) -> None:
        self.nodeInfo(node)["routes"].append((prefix, via))

    def nat(self, name: str, inside: list[str], outside: str, public: str, **knobs: Any) -> str:
        """A NAT box `name` (add its links afterwards) masquerading `inside` behind `outside`."""
        NatBox.check_knobs(knobs)
        return self.node(name, "nat", nat={**NAT_DEFAULTS, **knobs, "inside": list(inside), "outside": outside,
                                           "public": public})

    # ------------------------------------------------------------ describing

    def kind_of(self, name: str) -> str:
        return self.nodeInfo(name)["kind"]

    def nodes_of(self, kind: str) -> list[str]:
        return [n for n in self.hosts() if self.kind_of(n) == kind]

    def default_taps(self) -> list[dict[str, str]]:
        """Both sides of every NAT box: <box>-inside and <box>-outside (or <box>-<intf> when a
        box has several inside interfaces)."""
        taps = []
        for box in self.nodes_of("nat"):
            knobs = self.nodeInfo(box)["nat"]
            inside = knobs["inside"]
            for intf in inside:
                name = f"{box}-inside" if len(inside) == 1 else f"{box}-{intf.split('-', 1)[-1]}"
                taps.append({"name": name, "node": box, "intf": intf})
            taps.append({"name": f"{box}-outside", "node": box, "intf": knobs["outside"]})
        return taps

    def interfaces(self, node: str) -> dict[str, dict]:
        return self.nodeInfo(node)["intfs"]

    def link_names(self) -> list[str]:
        names = []
        for _a, _b, info in self.links(withInfo=True):
            names += [info["intfName1"], info["intfName2"]]
        return names

    def describe(self) -> dict[str, Any]:
        """The network as topology.json holds it (see lab.net.lab.Lab.describe)."""
        links: list[dict[str, Any]] = []
        index: dict[str, int] = {}
        for _a, _b, info in self.links(withInfo=True):
            index[info["intfName1"]] = index[info["intfName2"]] = len(links)
            links.append({"a": info["node1"], "a_intf": info["intfName1"], "b": info["node2"],
                          "b_intf": info["intfName2"],
                          "mtu": info.get("mtu") or 1500})
        nodes = []
        for name in self.hosts():
            info = self.nodeInfo(name)
            entry: dict[str, Any] = {"name": name, "kind": info["kind"], "software": None, "interfaces": [
                {"name": intf, "addresses": list(spec.get("addrs", [])), "mtu": spec.get("mtu") or 1500,
                 "link": index.get(intf)} for intf, spec in info["intfs"].items()]}
            if info.get("lo_addrs"):
                entry["interfaces"].append({"name": "lo", "addresses": list(info["lo_addrs"]), "mtu": 65536,
                                            "link": None})
            entry["routes"] = [{"prefix": p, "via": v} for p, v in info["routes"]]
            if info["kind"] == "nat":
                knobs = info["nat"]
                entry["nat"] = {k: knobs[k] for k in ("inside", "outside", "public", "mapping")}
            nodes.append(entry)
        return {"topology": self.name, "params": dict(self.values), "nodes": nodes, "links": links}


def topology_file(name: str, base: Path | None = None) -> Path:
    """topologies/<name>.py for a library name (site-to-site -> site_to_site.py), or a path to
    a .py file (relative to `base`, the scenario's folder)."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_absolute() and base is not None:
            path = base / path
        return path
    return TOPOLOGY_DIR / (name.replace("-", "_") + ".py")


def available() -> dict[str, type[LabTopo]]:
    """Every topology in topologies/, by name."""
    found: dict[str, type[LabTopo]] = {}
    for path in sorted(TOPOLOGY_DIR.glob("*.py")):
        try:
            found.update(_load_file(path))
        except TopologyError:
            continue
    return found


def _load_file(path: Path) -> dict[str, type[LabTopo]]:
    if not path.exists():
        raise TopologyError(f"no topology file {path}")
    spec = importlib.util.spec_from_file_location(f"ipsec_lab_topology_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise TopologyError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a trainer's file: report, do not crash
        raise TopologyError(f"{path}: cannot load it: {type(err).__name__}: {err}") from None
    topos = getattr(module, "topos", None)
    if not isinstance(topos, dict) or not topos:
        raise TopologyError(f"{path} has no `topos` dict (name -> LabTopo class), as `mn --custom` expects")
    return {k: v for k, v in topos.items() if isinstance(v, type) and issubclass(v, LabTopo)}


def load(name: str, base: Path | None = None) -> type[LabTopo]:
    """The LabTopo class of a topology name (site-to-site) or file (my_topo.py or my_topo.py:name)."""
    file_part, _, wanted = name.partition(":") if name.split(":")[0].endswith(".py") else (name, "", "")
    path = topology_file(file_part, base)
    if not path.exists():
        known = ", ".join(sorted(available())) or "none"
        raise TopologyError(f"unknown topology {name!r} (known: {known}; or give a .py file)")
    topos = _load_file(path)
    if wanted:
        if wanted not in topos:
            raise TopologyError(f"{path} has no topology {wanted!r} (it has: {', '.join(topos)})")
        return topos[wanted]
    if not file_part.endswith(".py") and file_part in topos:
        return topos[file_part]
    if len(topos) == 1:
        return next(iter(topos.values()))
    raise TopologyError(f"{path} has several topologies ({', '.join(topos)}): name one as {file_part}:NAME")
