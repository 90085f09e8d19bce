"""Errors genbench reports to users: one line that names the file or argument and says what
to do. The CLI prints them without a traceback and exits with status 2."""


class GenbenchError(Exception):
    """A user-facing error (bad input, missing weights, ...)."""


class BadImageError(GenbenchError):
    """An image file that cannot be decoded; ``--skip-bad`` skips and counts these."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: cannot decode image ({reason}); "
                         "fix or remove the file, or pass --skip-bad to skip such files")
        self.location = location
