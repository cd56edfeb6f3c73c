"""Keyset pagination: ``?limit=N&cursor=<id>``. Pages are read by id from an index,
so page 1,000 costs what page 1 costs, and no page counts the whole table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse

from .fields import Integer
from .http import Call, json_response

MAX_ID = 2**63 - 1
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
PAGE_QUERY = {
    "cursor": Integer(minimum=1, maximum=MAX_ID, description="The next_cursor of the previous page."),
    "limit": Integer(minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT, description="Items per page."),
}


def page(call: Call, rows: QuerySet[Any], serialize: Callable[[list[Any]], list[dict[str, Any]]], *,
         newest_first: bool) -> HttpResponse:
    """One page of ``rows`` by id (descending when ``newest_first``), with the next page's URL.

    ``serialize`` takes the page's rows together, so that what they need beyond their
    own columns is read once for the page (``each`` for rows that need nothing more)."""
    limit, cursor = call.query["limit"], call.query.get("cursor")
    if cursor is not None:
        rows = rows.filter(pk__lt=cursor) if newest_first else rows.filter(pk__gt=cursor)
    items = list(rows.order_by("-pk" if newest_first else "pk")[: limit + 1])
    next_cursor = items[limit - 1].pk if len(items) > limit else None
    return json_response({
        "results": serialize(items[:limit]),
        "next_cursor": next_cursor,
        "next": None if next_cursor is None else next_url(call, next_cursor),
    })


def each(serialize: Callable[[Any], dict[str, Any]]) -> Callable[[list[Any]], list[dict[str, Any]]]:
    """A page's ``serialize`` from a function of one row."""
    return lambda rows: [serialize(row) for row in rows]


def next_url(call: Call, cursor: int) -> str:
    query = call.request.GET.copy()
    query["cursor"] = str(cursor)
    return f"{call.request.path}?{query.urlencode()}"
