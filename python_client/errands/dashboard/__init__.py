"""The web dashboard: ``errands dashboard``, or an ASGI app to mount.

Optional (``pip install errands[dashboard]``: Starlette, Jinja2, uvicorn,
python-multipart); the core never imports this package. Every action is one call
of the public SQL API: the dashboard decides no job state itself.
"""

from errands.dashboard._app import create_app
from errands.dashboard._options import DashboardOptions

__all__ = ["DashboardOptions", "create_app"]
