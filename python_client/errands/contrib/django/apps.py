"""The Django app of errands: ``"errands.contrib.django"`` in ``INSTALLED_APPS``
brings the ``errands_worker`` management command."""

from __future__ import annotations

from django.apps import AppConfig


class ErrandsConfig(AppConfig):  # type: ignore[misc]  # Django is untyped here
    name = "errands.contrib.django"
    label = "errands"
    verbose_name = "Errands"
