"""The one exception subcommands raise for a failure the user can act on."""


class CommandError(Exception):
    """Printed as ``pfmigrate: <message>`` with exit status 1, without a traceback."""
