"""The `pulse` group: every command listed, loaded on demand, and `pulse --help` without torch."""

import subprocess
import sys

from click.testing import CliRunner

from pulse.cli import COMMANDS, main


def test_every_listed_command_loads_and_its_line_starts_its_help():
    listing = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    for name, (_, _, line) in COMMANDS.items():
        command = main.get_command(None, name)
        assert command.name == name and " ".join(command.help.split()).startswith(line.rstrip("."))
        assert f"{name} {line}" in listing
    assert main.get_command(None, "nope") is None


def test_pulse_help_does_not_import_torch():
    code = "import sys\nfrom pulse.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n" \
           "print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr
