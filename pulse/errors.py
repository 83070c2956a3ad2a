"""How things go wrong for users: one exception with a one-line message, and the commands' exit codes."""


class PulseError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and carries on with other inputs."""


class Interrupted(PulseError):
    """Stopped by the user (Ctrl-C / SIGTERM) after saving what was finished; the message says how to go on."""


# Exit codes shared by every command that works through a batch of inputs (documented in README).
EXIT_OK = 0  # every input processed, every result within eps
EXIT_INPUT_ERRORS = 1  # some inputs could not be processed (named on stderr and in the report)
EXIT_USAGE = 2  # bad options, no inputs, no generator: nothing processed
EXIT_NOT_CONSISTENT = 3  # every input processed, but some results did not get within eps
EXIT_INTERRUPTED = 130  # Ctrl-C: what was finished is kept (the shell's code for SIGINT)

