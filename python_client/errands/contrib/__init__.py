"""Integrations with web frameworks and ORMs, each an optional extra.

``errands.contrib.django`` (``pip install errands[django]``) and
``errands.contrib.sqlalchemy`` (``errands[sqlalchemy]``) import their framework;
nothing else in errands does.
"""
