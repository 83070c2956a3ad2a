"""The one exception users see: a short sentence naming the input and the problem."""


class PulseError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and carries on with other inputs."""
