"""Human-readable durations."""


def format_duration(seconds):
    """'H:MM:SS' for a whole number of seconds."""
    raise NotImplementedError("format_duration")
