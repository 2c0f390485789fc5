"""The one exception type users see: its message is printed as a single line."""


class VocoderError(Exception):
    """A problem with the user's input, files or settings (not a bug in the toolkit).

    The CLI prints ``error: <message>`` and exits non-zero; the message names the file
    or key at fault so the line alone tells the user what to fix.
    """
