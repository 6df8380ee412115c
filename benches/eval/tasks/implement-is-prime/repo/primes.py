"""Prime numbers."""


def is_prime(n):
    """True when n is prime."""
    raise NotImplementedError("is_prime")
