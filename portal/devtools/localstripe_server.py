"""Run localstripe (the Stripe stand-in) on loopback with a store of its own.

localstripe's own entry point listens on every interface and always keeps its
store in /tmp/localstripe.pickle, shared by every run on the machine. This
wrapper binds to 127.0.0.1 only and keeps the store in memory, or in the file
given with --store, so concurrent runs (make run, the test suite) never see
each other's objects.

    python -m portal.devtools.localstripe_server --port 8420 [--store PATH]

Besides localstripe's own routes it answers DELETE /_config/webhooks, which
unregisters every webhook (tests reset with it).

Development and test tool only; never imported by the portal itself.
"""

from __future__ import annotations

import argparse
import pickle  # development tool: only its own store file is unpickled # nosec B403
from pathlib import Path


def _use_store_file(path: Path | None) -> None:
    from localstripe import resources

    def load(self: dict) -> None:  # type: ignore[type-arg]
        if path is not None and path.exists():
            with path.open("rb") as handle:
                self.clear()
                self.update(pickle.load(handle))  # noqa: S301 - our own file, written below # nosec B301

    def dump(self: dict) -> None:  # type: ignore[type-arg]
        if path is not None:
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as handle:
                pickle.dump(dict(self), handle, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)

    resources.Store.try_load_from_disk = load  # type: ignore[method-assign]
    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--store", type=Path, default=None, help="pickle file for the store (default: memory only)")
    args = parser.parse_args()

    _use_store_file(args.store)
    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app

    store.try_load_from_disk()
    app.router.add_delete("/_config/webhooks", _forget_webhooks)
    web.run_app(app, host=args.host, port=args.port, print=None)


async def _forget_webhooks(request: object) -> object:
    """DELETE /_config/webhooks: unregister every webhook.

    localstripe has no way to do this, and `DELETE /_config/data` keeps them,
    so events of one test's intents would otherwise be delivered (a second
    later) to the next test's server.
    """
    from aiohttp import web
    from localstripe import webhooks

    webhooks._webhooks.clear()
    return web.Response()


if __name__ == "__main__":
    main()
