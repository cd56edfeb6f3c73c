"""Admin for API tokens: see who has one, when it was used, and revoke it.

Tokens are created with ``manage.py jobs_api_token create``, which prints the token
once: admin never sees a token, only the first characters kept to recognise it.
"""

from __future__ import annotations

from django.contrib import admin, messages

from ..models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("hint_shown", "name", "user", "created_at", "last_used_at", "expires_at", "state")
    list_filter = ("revoked_at",)
    list_select_related = ("user",)
    search_fields = ("name", "hint", "user__username")
    actions = ("revoke_tokens",)
    fields = ("user", "name", "hint", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # a token is shown once, by the management command

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

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
