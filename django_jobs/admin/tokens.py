"""Admin for API tokens: see who has one, when it was used, and revoke it.

Tokens are created with ``manage.py jobs_api_token create``, which prints the token
once: admin never sees a token, only the first characters kept to recognise it.
"""

from __future__ import annotations

from django.contrib import admin, messages

from .. import users
from ..models import ApiToken
from .user_columns import UserColumns


@admin.register(ApiToken)
class ApiTokenAdmin(UserColumns, admin.ModelAdmin):
    list_display = ("hint_shown", "name", "user", "created_at", "last_used_at", "expires_at", "state")
    list_filter = ("revoked_at",)
    list_select_related = user_columns = ("user",)
    search_fields = ("name", "hint", "user__username")
    actions = ("revoke_tokens",)
    fields = ("user", "name", "hint", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # a token is shown once, by the management command

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def get_search_fields(self, request):
        # The user model on another database (DJANGO_JOBS["DATABASE"]): no join, the
        # usernames are matched in get_search_results.
        return ("name", "hint") if users.apart() else self.search_fields

    def get_search_results(self, request, queryset, search_term):
        rows, duplicates = super().get_search_results(request, queryset, search_term)
        if search_term and users.apart():
            rows |= queryset.filter(users.user_is("user", username__icontains=search_term))
        return rows, duplicates

    @admin.display(description="token", ordering="hint")
    def hint_shown(self, token: ApiToken) -> str:
        return f"{token.hint}…"

    @admin.display(description="state")
    def state(self, token: ApiToken) -> str:
        if token.revoked_at:
            return "revoked"
        return "active" if token.is_usable else "expired"

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request, queryset) -> None:
        revoked = sum(token.revoke() for token in queryset)
        self.message_user(request, f"{revoked} token{'' if revoked == 1 else 's'} revoked.",
                          messages.SUCCESS if revoked else messages.WARNING)
