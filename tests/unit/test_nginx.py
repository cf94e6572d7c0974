"""The `nginx` service: its server blocks are checked by `nginx -t` as the lab will run them,
and nginx's complaint comes back as hosts/<node>/nginx.conf:LINE (no root, no socket opened)."""
import shutil
from pathlib import Path

import pytest

from lab.net import scenario as sc
from lab.net.nginx import NGINX, NginxError, check_config, main_config
from lab.net.software import SERVICES

PROXY = Path(__file__).resolve().parents[2] / "scenarios" / "lateral-movement" / "hosts" / "proxy"
needs_nginx = pytest.mark.skipif(shutil.which(NGINX) is None and not Path(NGINX).exists(),
                                 reason="nginx is not installed (scripts/setup.sh installs it)")


@pytest.fixture
def proxy(tmp_path):
    folder = tmp_path / "proxy"
    shutil.copytree(PROXY, folder)
    return folder


def test_everything_nginx_writes_stays_in_the_run_folder(tmp_path):
    text = main_config(tmp_path)
    for line in ("daemon off;", f"pid {tmp_path / 'nginx.pid'};", f"error_log {tmp_path / 'error.log'} info;",
                 f"access_log {tmp_path / 'access.log'};", f"include {tmp_path / 'conf' / 'nginx.conf'};"):
        assert line in text
    assert text.count("_temp_path") == 5 and "/var/" not in text


@needs_nginx
def test_the_library_proxy_passes(proxy):
    check_config(proxy)


@needs_nginx
@pytest.mark.parametrize("old, new, line, words", [
    ("proxy_pass http", "proxy_passs http", 14, 'unknown directive "proxy_passs"'),
    ("x509/app.pem", "x509/missing.pem", 7, 'cannot load certificate "'),
    ("listen 443 ssl;", "listen 443 ssl", 6, 'invalid parameter "server_name"'),
])
def test_a_mistake_is_named_by_file_and_line(proxy, old, new, line, words):
    conf = proxy / "nginx.conf"
    assert old in conf.read_text()
    conf.write_text(conf.read_text().replace(old, new, 1))
    with pytest.raises(NginxError) as caught:
        check_config(proxy)
    assert (caught.value.file, caught.value.line) == (str(conf), line), str(caught.value)
    assert words in caught.value.message and "ipsec-lab-nginx-" not in str(caught.value)


@needs_nginx
def test_the_scenario_reader_refuses_a_bad_proxy_before_anything_starts(tmp_path):
    folder = tmp_path / "lateral-movement"
    shutil.copytree(PROXY.parents[1], folder)
    conf = folder / "hosts" / "proxy" / "nginx.conf"
    conf.write_text(conf.read_text().replace("proxy_pass http", "proxy_passs http"))
    with pytest.raises(sc.ScenarioError) as caught:
        sc.load(folder)
    assert str(caught.value).startswith(f"{conf}:14: unknown directive")


def test_the_service_is_known_to_scenarios():
    assert SERVICES["nginx"].files == ("nginx.conf",) and SERVICES["nginx"].check_config is not None
