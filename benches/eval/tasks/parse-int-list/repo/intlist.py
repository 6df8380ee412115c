"""Parsing numbers out of text."""


def parse_int_list(text):
    """'1, -2,3' -> [1, -2, 3]."""
    raise NotImplementedError("parse_int_list")
