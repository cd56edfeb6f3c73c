"""Background jobs of the shop. django_jobs imports this module at start-up.

Run them with ``python manage.py run_jobworker``, or see them all at work with
``python manage.py demo_jobs``.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.mail import send_mail
from django.db.models import Count, Sum
from django.db.models.functions import ExtractMonth
from django.utils import timezone

from django_jobs import JobContext, job

from .models import Order

CENT = Decimal("0.01")


class WarehouseUnavailable(ConnectionError):
    """The warehouse API did not answer; worth trying again."""


class PaymentDeclined(Exception):
    """The payment provider refused the charge; retrying will not help for long."""


@job(name="shop.send_welcome_email", queue="mail")
def send_welcome_email(email: str, name: str) -> None:
    """Greet a new customer (printed by the console email backend)."""
    send_mail(
        subject=f"Welcome to the shop, {name}!",
        message=f"Hi {name},\n\nThanks for signing up. Your first order ships free.\n\n-- The shop",
        from_email=None,
        recipient_list=[email],
    )


@job(name="shop.generate_report", queue="reports", priority="high", max_retries=2, timeout=timedelta(minutes=5))
def generate_report(report_type: str, year: int) -> dict[str, Any]:
    """Summarise a year of orders: ``sales`` (revenue by month) or ``customers``."""
    orders = Order.objects.filter(placed_at__year=year)
    if report_type == "sales":
        return sales_report(orders, year)
    if report_type == "customers":
        return customers_report(orders, year)
    raise ValueError(f"Unknown report type {report_type!r}; use 'sales' or 'customers'.")


def sales_report(orders, year: int) -> dict[str, Any]:
    paid = orders.filter(status=Order.Status.PAID)
    totals = paid.aggregate(orders=Count("id"), revenue=Sum("total"))
    # SQLite sums decimals as floats: round back to cents.
    revenue = (totals["revenue"] or Decimal("0")).quantize(CENT)
    by_month = paid.annotate(month=ExtractMonth("placed_at")).values("month").annotate(revenue=Sum("total"))
    best = max(by_month, key=lambda row: row["revenue"], default=None)
    return {
        "report": "sales",
        "year": year,
        "paid_orders": totals["orders"],
        "revenue": str(revenue),
        "average_order": str((revenue / totals["orders"]).quantize(CENT)) if totals["orders"] else None,
        "best_month": best["month"] if best else None,
    }


def customers_report(orders, year: int) -> dict[str, Any]:
    spend = orders.filter(status=Order.Status.PAID).values("customer_email").annotate(spent=Sum("total"))
    top = max(spend, key=lambda row: row["spent"], default=None)
    return {
        "report": "customers",
        "year": year,
        "customers": orders.values("customer_email").distinct().count(),
        "top_customer": top["customer_email"] if top else None,
    }


@job(name="shop.cancel_unpaid_order")
def cancel_unpaid_order(order_id: int) -> str:
    """Enqueued with a delay when an order is placed: cancel it if still unpaid by then."""
    cancelled = Order.objects.filter(pk=order_id, status=Order.Status.UNPAID).update(status=Order.Status.CANCELLED)
    return "cancelled" if cancelled else "already paid"


@job(name="shop.flaky_sync", takes_context=True, max_retries=3, retry_delay=timedelta(seconds=1), backoff="fixed")
def flaky_sync(context: JobContext, order_id: int) -> dict[str, Any]:
    """Push an order to the warehouse, whose API times out twice before it answers.

    (Simulated from the attempt number, so the demo is deterministic.)
    """
    if context.attempt < 3:
        raise WarehouseUnavailable(f"warehouse API timed out on attempt {context.attempt}")
    Order.objects.filter(pk=order_id).update(synced_at=timezone.now())
    return {"order_id": order_id, "synced_on_attempt": context.attempt}


@job(name="shop.charge_expired_card", max_retries=1, retry_delay=timedelta(seconds=1), backoff="fixed")
def charge_expired_card(order_id: int) -> None:
    """Charge an order whose card has expired: fails every time, ends up ``failed``."""
    raise PaymentDeclined(f"card for order {order_id} expired 2024-12")
