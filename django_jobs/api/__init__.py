"""The opt-in JSON API: ``path("jobs/api/", include("django_jobs.api.urls"))``.

    routes.py      the one declaration of every endpoint: path, method, permission,
                   input fields, responses (urls.py and openapi.py are built from it)
    views.py       one view per path: method, authentication, permission, input, errors
    auth.py        bearer tokens (ApiToken) and Django sessions with CSRF
    body.py        reading a request body: size, content type, strict JSON
    fields.py      input fields: each validates a value and describes itself as JSON Schema
    tasks.py, schedules.py, queues.py   the operations (thin shells over the library)
    serializers.py rows -> JSON; schemas.py the JSON Schema of what they return
    paging.py      keyset pages (?limit=&cursor=) that never count a table
    http.py        JSON responses and ApiError, the one error shape
    openapi.py     the OpenAPI 3.1 document served at openapi.json

Importing this package has no side effects.
"""
