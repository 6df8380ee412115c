"""A one-line order report."""

from orders import order_total


def report(lines):
    return f"{len(lines)} lines, total {order_total(lines):.2f}"
