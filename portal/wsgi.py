from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# Production refuses to serve as a superuser, a BYPASSRLS role or the owner
# of the tables (portal.dbroles); a no-op elsewhere.
from portal.dbroles import refuse_unsafe_runtime_role  # noqa: E402

refuse_unsafe_runtime_role()
