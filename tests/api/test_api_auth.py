"""Who may call the JSON API: bearer tokens (hashed, revocable, expiring), Django
sessions with CSRF, and a Django model permission per operation. Also the token
command and the token admin."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from django_jobs.api.routes import OPERATIONS
from django_jobs.models import ApiToken, ScheduledTask, hash_token
from tests.api_support import ApiClient, errors, make_user
from tests.factories import ApiTokenFactory

pytestmark = pytest.mark.django_db

GUARDED = [operation for operation in OPERATIONS if not operation.public]


def concrete(path: str) -> str:
    return path.replace("{id}", "1").replace("{name}", "mail")


def call(api: ApiClient, operation) -> object:
    body = {} if operation.body is not None else None
    if body is None:
        return api.request(operation.method, concrete(operation.path))
    return api.request(operation.method, concrete(operation.path), body)


# -- authentication -------------------------------------------------------------------------
@pytest.mark.parametrize("operation", GUARDED, ids=lambda operation: f"{operation.method} {operation.path}")
def test_every_operation_but_the_document_needs_authentication(operation):
    response = call(ApiClient(), operation)

    assert response.status_code == 401
    assert list(errors(response)) == ["authorization"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_openapi_document_is_public():
    assert ApiClient().get("/openapi.json").status_code == 200


@pytest.mark.parametrize("header", ["Bearer djj_not-a-real-token", "Bearer ", "bearer djj_nope"])
def test_an_unknown_token_is_401(header):
    response = ApiClient().get("/tasks", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401 and "invalid_token" in response["WWW-Authenticate"]


def test_a_revoked_token_stops_working():
    token = "djj_to-be-revoked"
    row = ApiTokenFactory(user=make_user("root", superuser=True), token=token)
    api = ApiClient()
    header = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert api.get("/tasks", **header).status_code == 200

    assert row.revoke() is True

    assert api.get("/tasks", **header).status_code == 401
    assert row.revoke() is False


def test_an_expired_token_and_a_token_of_an_inactive_user_are_401():
    expired, orphan = "djj_expired", "djj_orphan"
    ApiTokenFactory(user=make_user("root", superuser=True), token=expired,
                    expires_at=timezone.now() - timedelta(seconds=1))
    inactive = make_user("gone", superuser=True)
    ApiTokenFactory(user=inactive, token=orphan)
    inactive.is_active = False
    inactive.save()

    for token in (expired, orphan):
        assert ApiClient().get("/tasks", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_only_a_hash_of_the_token_is_stored_and_use_is_recorded():
    row, token = ApiToken.issue(make_user("root", superuser=True), name="ci")

    stored = ApiToken.objects.filter(pk=row.pk).values().get()
    assert token not in {str(value) for value in stored.values()}
    assert stored["key_hash"] == hash_token(token) and token.startswith(stored["hint"])
    assert stored["last_used_at"] is None
    ApiClient().get("/tasks", HTTP_AUTHORIZATION=f"Bearer {token}")
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_other_authorization_schemes_are_left_to_the_session():
    """A site behind a proxy's Basic authentication still works from the browser."""
    api = ApiClient(make_user("root", superuser=True), via="session")

    assert api.get("/tasks", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz").status_code == 200


# -- sessions and CSRF -----------------------------------------------------------------------
def test_a_session_may_read_without_a_csrf_token_but_not_write():
    api = ApiClient(make_user("root", superuser=True), via="session", enforce_csrf=True)

    assert api.get("/tasks").status_code == 200
    refused = api.post("/tasks", {"job": "tests.noop"})

    assert refused.status_code == 403 and list(errors(refused)) == ["csrf"]
    assert not ScheduledTask.objects.exists()


def test_a_session_writes_with_the_csrf_token():
    api = ApiClient(make_user("root", superuser=True), via="session", enforce_csrf=True)
    api.client.get(reverse("admin:index"))  # any page with a form sets the CSRF cookie
    csrf = api.client.cookies["csrftoken"].value

    response = api.post("/tasks", {"job": "tests.noop"}, HTTP_X_CSRFTOKEN=csrf)

    assert response.status_code == 201


def test_token_requests_need_no_csrf_token():
    api = ApiClient(make_user("root", superuser=True), enforce_csrf=True)

    assert api.post("/tasks", {"job": "tests.noop"}).status_code == 201


# -- permissions --------------------------------------------------------------------------------
@pytest.mark.parametrize("operation", GUARDED, ids=lambda operation: f"{operation.method} {operation.path}")
def test_every_operation_is_403_without_its_permission(operation):
    others = {codename for other in GUARDED for codename in other.permissions} - set(operation.permissions)
    api = ApiClient(make_user("clerk", *(name.split(".")[1] for name in others)))

    response = call(api, operation)

    assert response.status_code == 403 and list(errors(response)) == ["permission"]
    assert " or ".join(operation.permissions) in errors(response)["permission"][0]


@pytest.mark.parametrize("operation", GUARDED, ids=lambda operation: f"{operation.method} {operation.path}")
def test_every_operation_is_allowed_with_any_one_of_its_permissions(operation):
    for index, permission in enumerate(operation.permissions):
        api = ApiClient(make_user(f"holder{index}", permission.split(".")[1]))

        assert call(api, operation).status_code not in (401, 403), permission


# -- the token command ------------------------------------------------------------------------
def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("jobs_api_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_command_creates_lists_and_revokes_a_token():
    make_user("root", superuser=True)

    token, notice = run_command("create", "root", "--name", "deploy bot", "--days", "30")
    token = token.strip()
    assert ApiClient().get("/tasks", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert "cannot be shown again" in notice
    row = ApiToken.objects.get()
    assert row.name == "deploy bot" and row.expires_at > timezone.now() + timedelta(days=29)

    listing, _ = run_command("list")
    assert "deploy bot" in listing and row.hint in listing and token not in listing and "active until" in listing

    revoked, _ = run_command("revoke", str(row.pk))
    assert "revoked" in revoked
    assert ApiClient().get("/tasks", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert "revoked" in run_command("list", "--user", "root")[0]


@pytest.mark.parametrize("args", [("create", "nobody"), ("revoke", "12345"), ("create", "root", "--days", "0")])
def test_command_errors_are_clear(args):
    make_user("root", superuser=True)

    with pytest.raises(CommandError):
        run_command(*args)


# -- the token admin ----------------------------------------------------------------------------
def test_admin_lists_tokens_and_revokes_them(client):
    root = make_user("root", superuser=True)
    row = ApiTokenFactory(user=root, name="ci")
    client.force_login(root)
    changelist = reverse("admin:django_jobs_apitoken_changelist")

    page = client.get(changelist)
    response = client.post(changelist, {"action": "revoke_tokens", "_selected_action": [row.pk]}, follow=True)

    assert page.status_code == 200 and row.hint in page.content.decode()
    assert "1 token revoked" in response.content.decode()
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert client.get(reverse("admin:django_jobs_apitoken_add")).status_code == 403


def test_admin_shows_a_staff_user_only_their_own_tokens(client):
    staff = make_user("staff", "view_apitoken", is_staff=True)
    mine = ApiTokenFactory(user=staff, name="mine")
    theirs = ApiTokenFactory(user=make_user("other"), name="theirs")
    client.force_login(staff)

    page = client.get(reverse("admin:django_jobs_apitoken_changelist")).content.decode()

    assert mine.hint in page and theirs.hint not in page
