import os

from django.apps import AppConfig


class ThreadKilledByTest(BaseException):
    """Planted in a worker process by ``TESTAPP_KILL_THREAD``: a bug that kills a worker thread."""


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if thread := os.environ.get("TESTAPP_KILL_THREAD"):
            plant_thread_killer(thread)


def plant_thread_killer(thread: str) -> None:
    """Make the first call of the job threads' ``attempt`` ("job") or the recorder's
    ``record`` ("recorder") raise an exception nothing in the worker catches, as a bug would."""
    from django_jobs.worker import job_threads, recorder

    def killer(original):
        def first_call_dies(*args, **kwargs):
            if not fired:
                fired.append(True)
                raise ThreadKilledByTest(f"the {thread} thread is killed on purpose by the test")
            return original(*args, **kwargs)

        return first_call_dies

    fired: list[bool] = []
    if thread == "job":
        job_threads.attempt = killer(job_threads.attempt)
    elif thread == "recorder":
        recorder.Recorder.record = killer(recorder.Recorder.record)
    else:
        raise ValueError(f"TESTAPP_KILL_THREAD must be job or recorder, not {thread!r}")
