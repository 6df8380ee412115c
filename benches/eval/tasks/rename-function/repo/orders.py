"""Order arithmetic."""


def calc(lines):
    """Total price of an order: the sum of quantity * unit price over its lines."""
    return sum(quantity * price for quantity, price in lines)
