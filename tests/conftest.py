"""Test-wide settings: Hypothesis runs derandomized and without deadlines, so CI is stable."""

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          print_blob=True)
settings.load_profile("ci")
