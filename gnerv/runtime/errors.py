"""The one exception type for expected mistakes (bad input, bad config, corrupt files).

The CLI prints its message as a single line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class GnervError(Exception):
    """An expected failure with a message that says what is wrong and what to do."""
