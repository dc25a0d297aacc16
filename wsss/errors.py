"""One exception type for problems the user can fix (bad input, bad config, missing files).

The CLI prints these as a single line, without a traceback: the message must name the
file or setting at fault and say what to do about it.
"""


class WsssError(Exception):
    """A user-facing error: its message names the culprit and the fix."""
