"""Splitting lists into pages."""


def paginate(items, page, per_page):
    """Items of page `page` (numbered from 1), `per_page` items per page."""
    start = page * per_page
    return items[start:start + per_page]
