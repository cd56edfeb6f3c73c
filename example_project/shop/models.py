from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        UNPAID = "unpaid", "Unpaid"
        PAID = "paid", "Paid"
        REFUNDED = "refunded", "Refunded"
        CANCELLED = "cancelled", "Cancelled"

    customer_email = models.EmailField("customer email")
    total = models.DecimalField("total", max_digits=10, decimal_places=2)
    status = models.CharField("status", max_length=16, choices=Status.choices, default=Status.UNPAID)
    placed_at = models.DateTimeField("placed at")
    synced_at = models.DateTimeField(
        "synced at", null=True, blank=True, help_text="When the warehouse last acknowledged the order."
    )

    class Meta:
        ordering = ("-placed_at",)

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.customer_email}, {self.total}, {self.status})"
