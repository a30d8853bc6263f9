"""Settings of the test project: the database is $DATABASE_URL (a libpq connection
string, the test's fresh database); $ERRANDS_SETTINGS (JSON) adds keys to ERRANDS."""

import json
import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["DATABASE_URL"])

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "djproject.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "errands.contrib.django",  # manage.py errands_worker
    "shop",  # its tasks module holds the tasks
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", ""),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    },
}

ERRANDS = {
    "CONCURRENCY": 4,
    **json.loads(os.environ.get("ERRANDS_SETTINGS", "{}")),
}

# A view's traceback goes to the console (runserver's log, printed by the test).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
