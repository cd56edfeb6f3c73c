"""A paginator that never counts a whole big table.

Django's changelist counts every matching row to number its pages; on a task
table of millions of rows that COUNT(*) is the slowest query of the page. This
one counts at most ``limit + 1`` rows (``COUNT(*)`` over a ``LIMIT`` subquery),
so the cost is bounded whatever the table size, filtered or not. Past the limit
the list says "more than 10,000" and pages on without a last-page link.
"""

from __future__ import annotations

from typing import cast

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

COUNT_LIMIT = 10_000


class CappedCountPaginator(Paginator):
    # Keep it above the changelist's list_max_show_all (200), which decides on the
    # count whether to paginate at all.
    limit = COUNT_LIMIT

    @cached_property
    def count(self) -> int:
        """The number of rows, or ``limit + 1`` when there are more than ``limit``."""
        rows = cast(QuerySet, self.object_list)  # the changelist always pages a queryset
        return rows.order_by().values("pk")[: self.limit + 1].count()

    @property
    def is_capped(self) -> bool:
        return self.count > self.limit

    @property
    def limit_text(self) -> str:
        return f"{self.limit:,}"

    def validate_number(self, number):
        if not self.is_capped:
            return super().validate_number(number)
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def page(self, number):
        if not self.is_capped:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return Page(self.object_list[bottom : bottom + self.per_page], number, self)

    def get_elided_page_range(self, number=1, *, on_each_side=3, on_ends=2):
        """Past the limit there is no known last page: first pages, the current one, then '…'."""
        if not self.is_capped:
            yield from super().get_elided_page_range(number, on_each_side=on_each_side, on_ends=on_ends)
            return
        number = self.validate_number(number)
        start = max(1, number - on_each_side)
        if start > on_ends + 2:
            yield from range(1, on_ends + 1)
            yield self.ELLIPSIS
        else:
            start = 1
        yield from range(start, number + on_each_side + 1)
        yield self.ELLIPSIS
