"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a missing folder, a malformed checkpoint, a bad argument.

    The message is one line naming the problem; the CLI prints it and exits with 2.
    """
