"""FastAPI, served by uvicorn with uvloop and httptools. Default settings."""

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/")
async def hello():
    return {"message": "Hello, World!"}


@app.get("/users/{id}")
async def user(id: str):
    return {"id": id}


@app.post("/echo")
async def echo(request: Request):
    return await request.json()
