from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from .jobs import send_welcome_email


@require_http_methods(["GET", "POST"])
def signup(request):
    """Create an account and queue its welcome email in the same transaction.

    Had creating the user failed, the task would be rolled back with it: no email
    for an account that does not exist, and no account without its email.
    """
    context = {}
    if request.method == "POST":
        email = request.POST.get("email", "").strip()
        name = request.POST.get("name", "").strip() or email
        if not email:
            context["error"] = "Please give an email address."
        else:
            try:
                with transaction.atomic():
                    user = get_user_model().objects.create_user(username=email, email=email, first_name=name)
                    context["task"] = send_welcome_email.enqueue(email, name=name)
                    context["user"] = user
            except IntegrityError:
                context["error"] = f"{email} already has an account."
    return render(request, "shop/signup.html", context, status=400 if "error" in context else 200)
