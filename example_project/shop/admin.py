from django.contrib import admin

from .models import Order


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "customer_email", "total", "status", "placed_at", "synced_at")
    list_filter = ("status",)
    search_fields = ("customer_email",)
