"""A one-line order report."""

from orders import calc


def report(lines):
    return f"{len(lines)} lines, total {calc(lines):.2f}"
