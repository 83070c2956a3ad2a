"""`pulse demo`: loopback by default, a warning for any other host, one-line errors when it cannot serve."""

import socket
import sys

import pytest
from click.testing import CliRunner

import pulse.demo
from pulse.cli import main
from pulse.demo import Limits
from pulse.errors import EXIT_USAGE


@pytest.fixture()
def served(monkeypatch):
    """What `pulse demo` asked ``serve`` for, instead of serving."""
    calls = []
    monkeypatch.setattr(pulse.demo, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def test_the_default_host_is_loopback_and_says_nothing(served):
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    (args, kwargs), = served
    assert args == ("127.0.0.1", 7860, None, "auto", Limits()) and result.stderr == ""


def test_localhost_needs_no_warning_and_options_reach_serve(served):
    result = CliRunner().invoke(main, ["demo", "--host", "localhost", "--port", "8123", "--device", "cpu",
                                       "--generator", "pulse-faces-128", "--time-limit", "30", "--queue-size", "2",
                                       "--max-upload", "5"])
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert served[0][0] == ("localhost", 8123, "pulse-faces-128", "cpu", Limits(30.0, 2, 5.0))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_any_other_host_serves_with_a_warning(served, host):
    result = CliRunner().invoke(main, ["demo", "--host", host])
    assert result.exit_code == 0, result.output
    assert served and served[0][0][0] == host
    assert result.stderr.startswith(f"warning: --host {host} serves the demo beyond this machine: anyone who can reach")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("option", [["--port", "0"], ["--port", "70000"], ["--time-limit", "0"],
                                    ["--queue-size", "0"], ["--max-upload", "0"], ["--device", "tpu"]])
def test_bad_options_are_usage_errors(served, option):
    result = CliRunner().invoke(main, ["demo", *option])
    assert result.exit_code == EXIT_USAGE and not served


def test_without_gradio_it_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: the demo needs Gradio") and 'pip install "pulse[demo]"' in result.stderr


def test_a_port_in_use_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("gradio", reason='the demo extra is not installed (pip install -e ".[demo]")')
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["demo", "--port", str(port), "--device", "cpu"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stderr == (f"error: cannot serve on 127.0.0.1:{port}: the port is taken or privileged, or the "
                             "address is not this machine's; choose another --port or --host\n")
