from django.db import models


class Execution(models.Model):
    """One call of a test job, written by the job itself: the evidence that each
    task ran exactly once, and never in two places at the same time."""

    task_id = models.BigIntegerField(db_index=True)
    label = models.CharField(max_length=100, blank=True, default="")
    pid = models.IntegerField()
    started = models.FloatField()
    ended = models.FloatField(null=True)
