"""Preloaded by the forkserver of job processes (see isolation.py).

Importing it sets Django up, once, in the forkserver, so that every job process
forked from it starts with the apps loaded and the jobs registered. Nothing else
imports this module.
"""

import django

django.setup()
