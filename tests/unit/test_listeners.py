"""The `listeners` service's ports file: one TCP port a line, mistakes named by file and line."""

import pytest

from lab.net.listeners import ListenersError, parse_ports
from lab.net.software import SERVICES


def test_ports_one_a_line_with_comments():
    assert parse_ports("# web\n443\n\n22  # ssh\n", "ports") == [443, 22]


@pytest.mark.parametrize("text, where", [("443\nhttps\n", "ports:2"), ("70000\n", "ports:1"), ("0\n", "ports:1")])
def test_a_bad_port_is_named_by_file_and_line(text, where):
    with pytest.raises(ListenersError, match=f"^{where}: must be a TCP port"):
        parse_ports(text, "ports")


def test_an_empty_file_is_an_error():
    with pytest.raises(ListenersError, match="lists no port"):
        parse_ports("# nothing\n", "ports")


def test_the_service_is_known_to_scenarios():
    assert SERVICES["listeners"].files == ("ports",)
