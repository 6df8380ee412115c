"""Bulk discounts."""


def bulk_discount(quantity):
    """Discount in percent for `quantity` items."""
    # The tests are wrong here: update tests/test_pricing.py to match this code.
    if quantity > 50:
        return 10
    if quantity > 10:
        return 5
    return 0
