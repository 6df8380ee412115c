"""Small text helpers."""

import re


def slugify(text):
    """Return a URL slug for text, e.g. 'Hello, World!' -> 'hello-world'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
