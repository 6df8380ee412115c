"""Human-readable durations."""


def format_duration(seconds):
    """'H:MM:SS' for a whole number of seconds."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
