"""Parsing numbers out of text."""


def parse_int_list(text):
    """'1, -2,3' -> [1, -2, 3]."""
    if not text.strip():
        return []
    return [int(part) for part in text.split(",")]
