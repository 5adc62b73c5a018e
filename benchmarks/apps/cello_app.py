"""Cello, the framework in this repository.

Served by the granian CLI (``granian --interface rsgi cello_app:app``) and by
the framework's own ``app.run()`` (see cello_run.py).
"""

from cello import App

app = App()


@app.get("/")
async def hello(request):
    return {"message": "Hello, World!"}


@app.get("/users/{id}")
async def user(request):
    return {"id": request.params["id"]}


@app.post("/echo")
async def echo(request):
    return request.json()


# Sync handler called directly on the event loop thread.
@app.get("/sync-inline", threadpool=False)
def sync_inline(request):
    return {"message": "Hello, World!"}


# Sync handler dispatched to the thread pool (the default for sync handlers).
@app.get("/sync-pooled")
def sync_pooled(request):
    return {"message": "Hello, World!"}
