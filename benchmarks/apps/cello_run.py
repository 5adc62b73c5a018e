"""Serve cello_app through the framework's own ``app.run()``."""

import os

from cello_app import app

if __name__ == "__main__":
    app.run(
        host=os.environ.get("BENCH_HOST", "127.0.0.1"),
        port=int(os.environ["BENCH_PORT"]),
        workers=1,
        access_log=False,
    )
